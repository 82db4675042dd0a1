"""Export a causal language model to ONNX with a key/value cache, and quantise it to int8.

    folder = export_onnx(loaded, "runs/demo/export/onnx")                 # float32
    quantize_int8(folder, "runs/demo/export/onnx-int8")                   # 8-bit head and table

The graph takes input_ids (B, T), attention_mask (B, P+T), position_ids (B, T) and, per
layer, the past key and value (B, H_kv, P, D); it returns logits (B, T, V) and the present
keys and values (B, H_kv, P+T, D). One graph serves prefill (P = 0) and decoding (T = 1),
so the weights are stored once. Export goes through `torch.onnx.export` (torch.export
under the hood) around the model's own forward with a `DynamicCache`, so any decoder whose
attention keeps a plain key/value cache (Llama, Qwen2, Mistral, ...) exports the same way.
int8 (`quantize_int8`) puts the output head and the embedding table in 8-bit blocks
(onnxruntime's MatMulNBits with int8 activations, and GatherBlockQuantized over the same
bytes when the embedding is tied) and keeps the decoder layers in float32: the head is most
of a small student's bytes, and its error stays in the logits where a layer's is carried
through the rest of the model. `distil.export.onnx_int8` says why each choice;
benchmarks/bench_int8.py measures them; docs/export.md records the figures.
"""

import logging
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import DynamicCache

from distil import __version__
from distil.errors import ExportError
from distil.export_formats import VariantSpec
from distil.fsutil import atomic_directory, atomic_write_json
from distil.models import LoadedModel, count_parameters
from distil.models.cache import cache_argument, returned_cache
from distil.onnx_runtime import MANIFEST_FILE, ONNX_FILE

if TYPE_CHECKING:
    from distil.recipe import ExportSection

OPSET = 18
INT8_BLOCK, INT8_COARSE_BLOCK = 32, 128
"""Weights per int8 scale along a row (per_channel True / False); docs/export.md measures both."""
EXTERNAL_DATA_ABOVE = 1_800_000_000
"""Bytes of float32 weights above which the int8 file keeps its weights in model.onnx.data
(protobuf files stop at 2 GiB; the float32 export decides this by itself)."""


@dataclass(frozen=True)
class CacheLayout:
    """Shape of a model's key/value cache: `layers` pairs of (B, kv_heads, P, head_dim)."""

    layers: int
    kv_heads: int
    head_dim: int


class KeyValueGraph(torch.nn.Module):
    """The model as a function of flat tensors, the form ONNX needs.

    forward(input_ids, attention_mask, position_ids, k0, v0, k1, v1, ...) ->
    (logits, k0', v0', k1', v1', ...), where each present key/value is the past one with
    this call's tokens appended.
    """

    def __init__(self, model: torch.nn.Module, layers: int) -> None:
        super().__init__()
        self.model = model
        self.layers = layers
        self.cache_argument = cache_argument(model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        cache = DynamicCache([(past[2 * i], past[2 * i + 1]) for i in range(self.layers)])
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **{self.cache_argument: cache},
        )
        return (output.logits, *cache_tensors(returned_cache(output)))


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """[k0, v0, k1, v1, ...] of a layered key/value cache; ExportError for any other kind."""
    layers = getattr(cache, "layers", None)
    if not layers:
        raise ExportError(
            f"the model returned a {type(cache).__name__} cache, not a per-layer key/value cache"
        )
    flat = []
    for layer in layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not (
            isinstance(keys, torch.Tensor)
            and isinstance(values, torch.Tensor)
            and keys.dim() == 4
            and values.shape == keys.shape
        ):
            raise ExportError(
                f"a cache layer of kind {type(layer).__name__} holds no "
                "(batch, heads, tokens, head_dim) keys and values"
            )
        flat += [keys, values]
    return flat


@torch.no_grad()
def probe_cache_layout(model: torch.nn.Module) -> CacheLayout:
    """Run the model once on two tokens and read the shape of the cache it builds."""
    name = type(model).__name__
    ids = torch.tensor([[0, 1]])
    try:
        output = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
        flat = cache_tensors(returned_cache(output))
    except Exception as err:
        raise ExportError(
            f"cannot export {name} to ONNX: {_first_line(err)}; the ONNX export "
            "takes decoder-only models whose attention keeps a key/value cache "
            "(Llama, Qwen2, Mistral, ...)"
        ) from None
    _, kv_heads, _, head_dim = flat[0].shape
    return CacheLayout(layers=len(flat) // 2, kv_heads=kv_heads, head_dim=head_dim)


def export_onnx(loaded: LoadedModel, folder: str | Path, opset: int = OPSET) -> Path:
    """Write `folder/model.onnx` (float32, with cache), its tokenizer and `export.json`."""
    model = loaded.model.float().eval()
    layout = probe_cache_layout(model)
    past_names = [f"past_key_values.{i}.{kind}" for i in range(layout.layers) for kind in ("key", "value")]
    present_names = [name.replace("past_key_values", "present") for name in past_names]
    program = _torch_export(
        KeyValueGraph(model, layout.layers), layout, past_names, present_names, opset, type(model).__name__
    )
    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        _drop_node_metadata(program.model)
        program.save(tmp / ONNX_FILE)  # weights go to model.onnx.data above 2 GB
        loaded.tokenizer.save_pretrained(tmp)
        model.config.save_pretrained(tmp)
        atomic_write_json(
            tmp / MANIFEST_FILE,
            {
                "format": "onnx",
                "precision": "float32",
                "opset": opset,
                "source": str(loaded.source),
                "architecture": type(model).__name__,
                "params": count_parameters(model),
                "layers": layout.layers,
                "kv_heads": layout.kv_heads,
                "head_dim": layout.head_dim,
                "input_names": ["input_ids", "attention_mask", "position_ids", *past_names],
                "output_names": ["logits", *present_names],
                "past_names": past_names,
                "present_names": present_names,
                "eos_token_ids": eos_token_ids(loaded),
                "pad_token_id": loaded.tokenizer.pad_token_id,
                "distil_version": __version__,
            },
        )
    return folder


def _torch_export(
    graph: KeyValueGraph,
    layout: CacheLayout,
    past_names: list[str],
    present_names: list[str],
    opset: int,
    name: str,
) -> Any:
    """torch.onnx.export with dynamic batch, sequence and cache lengths."""
    batch, length, past = 2, 3, 4  # sizes above 1, so none is specialised to a constant
    ids = torch.zeros((batch, length), dtype=torch.long)
    mask = torch.ones((batch, past + length), dtype=torch.long)
    positions = torch.arange(past, past + length).expand(batch, length)
    cache = [torch.zeros(batch, layout.kv_heads, past, layout.head_dim) for _ in range(2 * layout.layers)]
    dims = {name: torch.export.Dim(name) for name in ("batch", "sequence", "past_sequence", "total_sequence")}
    shapes = {
        "input_ids": {0: dims["batch"], 1: dims["sequence"]},
        "attention_mask": {0: dims["batch"], 1: dims["total_sequence"]},
        "position_ids": {0: dims["batch"], 1: dims["sequence"]},
        "past": tuple({0: dims["batch"], 2: dims["past_sequence"]} for _ in cache),
    }
    try:
        with _quiet_exporter():
            return torch.onnx.export(
                graph,
                (ids, mask, positions, *cache),
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                output_names=["logits", *present_names],
                opset_version=opset,
                verbose=False,
            )
    except Exception as err:
        raise ExportError(
            f"cannot export {name} to ONNX: {_first_line(err)}; check that the "
            "architecture exports with torch.export, or use the safetensors "
            "export (--format hf)"
        ) from None


def quantize_int8(folder: str | Path, out: str | Path, per_channel: bool = True) -> Path:
    """int8 head and embedding table of an exported float32 folder, written to `out`.

    Scales per block of 32 inputs of each output row; `per_channel=False`: blocks of 128
    (fewer scales, less close to float32).
    """
    import onnx

    from distil.export.onnx_int8 import quantise_head

    folder, out = Path(folder), Path(out)
    block_size = INT8_BLOCK if per_channel else INT8_COARSE_BLOCK
    with atomic_directory(out) as tmp:
        for item in folder.iterdir():
            if item.is_file() and not item.name.startswith(ONNX_FILE):
                shutil.copy2(item, tmp / item.name)
        large = sum(p.stat().st_size for p in folder.glob(f"{ONNX_FILE}*")) > EXTERNAL_DATA_ABOVE
        with _quiet_exporter():
            model = quantise_head(onnx.load(str(folder / ONNX_FILE)), block_size)
            onnx.save_model(
                model, str(tmp / ONNX_FILE), save_as_external_data=large, location=f"{ONNX_FILE}.data"
            )
        manifest = _read_manifest(tmp)
        manifest.update(
            precision="int8",
            quantization={
                "method": "onnxruntime MatMulNBits (head) and GatherBlockQuantized (embedding)",
                "quantised": ["output head", "embedding table"],
                "decoder_layers": "float32",
                "weights": f"uint8 with a zero point, one scale per block of {block_size} inputs",
                "activations": f"int8 per block of {block_size}, quantised per call (head)",
            },
        )
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
    return out


def check_onnx_export(loaded: LoadedModel, config: "ExportSection") -> None:
    """The `onnx` format's pre-check: an architecture ONNX cannot take fails before any work."""
    probe_cache_layout(loaded.model)


def write_onnx_variant(
    loaded: LoadedModel, folder: Path, variant: VariantSpec, config: "ExportSection"
) -> None:
    """The `onnx` format's writer."""
    export_onnx(loaded, folder, config.opset)


def write_int8_variant(
    loaded: LoadedModel, folder: Path, variant: VariantSpec, config: "ExportSection"
) -> None:
    """The `onnx-int8` format's writer: quantises the `onnx` folder written beside it."""
    quantize_int8(folder.parent / "onnx", folder, config.per_channel)


def eos_token_ids(loaded: LoadedModel) -> list[int]:
    """Token ids that end a response: the generation config's, else the tokenizer's eos."""
    generation = getattr(loaded.model, "generation_config", None)
    found = getattr(generation, "eos_token_id", None)
    if found is None:
        found = loaded.tokenizer.eos_token_id
    ids = found if isinstance(found, list) else [found]
    return [int(i) for i in ids if i is not None]


def _read_manifest(folder: Path) -> dict[str, Any]:
    import json

    return json.loads((folder / MANIFEST_FILE).read_text())


def _drop_node_metadata(model: Any) -> None:
    """Drop the exporter's per-node stack traces and notes: they can outweigh a small model."""
    for function in (model.graph, *model.functions.values()):
        for node in function.all_nodes():
            node.metadata_props.clear()
            node.doc_string = None


@contextmanager
def _quiet_exporter():
    """Silence the exporter's and quantiser's progress chatter and advisory warnings."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _first_line(err: BaseException) -> str:
    """The first line of the innermost cause, without terminal colour codes."""
    import re

    while err.__cause__ is not None:
        err = err.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    return text.splitlines()[0] if text else type(err).__name__
