"""Export a model as GGUF, the single file llama.cpp, Ollama and LM Studio run.

    export_gguf(loaded, "runs/demo/export/gguf-q8_0", "q8_0", sample_texts)

Each variant is a folder holding `model-TYPE.gguf`, `gguf.json` (what was written and how)
and an Ollama `Modelfile`. The tensors carry llama.cpp's names (`blk.N.attn_q.weight`, from
the `gguf` package's own name map), the hyper-parameters its loader reads, and the
tokenizer (`distil.export.gguf_vocab`). Types:

- `f16`: every matrix in float16, norms in float32 (what llama.cpp's converter writes);
- `q8_0`: matrices in 8-bit blocks of 32 (one float16 scale per block), by the `gguf`
  package; a matrix whose rows do not split into blocks of 32 stays float16;
- `q4_k_m`: llama.cpp's 4-bit k-quant mix. The `gguf` package cannot write k-quants, so it
  is made by llama.cpp's own quantiser (`llama_model_quantize`, through llama-cpp-python)
  from a float32 GGUF; without llama-cpp-python it is refused with one line. llama.cpp keeps
  some tensors at 6 bits and falls back to 5- or 8-bit blocks for rows that do not split
  into its 256-wide super-blocks (all rows of a model as narrow as the demo's): `gguf.json`
  lists the types it chose.

Llama (and Mistral, which llama.cpp runs as Llama), Qwen2 and Qwen3 are supported. For Llama
the query and key rows are reordered per head from Hugging Face's rotate-half layout to the
adjacent pairs llama.cpp's rotary embedding turns; Qwen's use the rotate-half ("neox") form
as they are. Other architectures are refused with one line.
"""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distil.errors import ExportError
from distil.export.gguf_vocab import GgufVocabulary, gguf_vocabulary
from distil.fsutil import atomic_directory

FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_m": 15}
"""general.file_type of each type (llama.cpp's LLAMA_FTYPE_*)."""


@dataclass(frozen=True)
class GgufArchitecture:
    """How a Hugging Face architecture is written for llama.cpp."""

    name: str
    """llama.cpp's architecture name (general.architecture)."""
    permute_qk: bool
    """Reorder query/key rows from rotate-half to adjacent pairs (llama.cpp's Llama rope)."""


ARCHITECTURES = {
    "llama": GgufArchitecture("llama", True),
    "mistral": GgufArchitecture("llama", True),
    "qwen2": GgufArchitecture("qwen2", False),
    "qwen3": GgufArchitecture("qwen3", False),
}


def gguf_architecture(config: Any) -> GgufArchitecture:
    """The GGUF architecture of a model config; ExportError for one this exporter cannot write."""
    arch = ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise ExportError(
            f"GGUF export supports {', '.join(sorted(ARCHITECTURES))}; this model "
            f"is {config.model_type!r}; drop `gguf` from export.formats, or convert "
            "it with llama.cpp's own convert_hf_to_gguf.py"
        )
    rope = rope_parameters(config)
    if rope.get("rope_type", "default") != "default":
        raise ExportError(
            f"GGUF export writes plain rotary embeddings; this model uses "
            f"{rope['rope_type']!r} rope scaling; drop `gguf` from export.formats"
        )
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True) and window < config.max_position_embeddings:
        raise ExportError(
            f"this model attends through a sliding window of {window} tokens, "
            "which llama.cpp's llama architecture does not apply; drop `gguf` "
            "from export.formats"
        )
    return arch


def rope_parameters(config: Any) -> dict[str, Any]:
    """rope_theta and rope_type, from transformers 5's rope_parameters or the older fields."""
    given = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    theta = given.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    return {"rope_theta": float(theta), "rope_type": given.get("rope_type", "default")}


def head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def to_adjacent_pairs(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a query/key projection (H*D, in) from rotate-half order (within each head:
    the D/2 first halves, then the D/2 second halves) to pairs (first_i, second_i) side by side."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, -1).transpose(0, 2, 1, 3).reshape(weight.shape)


def to_rotate_half(weight: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of `to_adjacent_pairs`."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, half, 2, -1).transpose(0, 2, 1, 3).reshape(weight.shape)


def gguf_tensors(model: Any) -> dict[str, tuple[str, np.ndarray]]:
    """GGUF tensor name -> (Hugging Face name, float32 array as llama.cpp wants it)."""
    import gguf

    config = model.config
    arch = gguf_architecture(config)
    names = gguf.get_tensor_name_map(_model_arch(arch.name), config.num_hidden_layers)
    tensors = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reads the embedding matrix when output.weight is absent
        base, suffix = hf_name.rsplit(".", 1)
        name = names.get_name(base)
        if name is None:
            raise ExportError(
                f"no GGUF name for the tensor {hf_name} of this {config.model_type} "
                "model; drop `gguf` from export.formats"
            )
        tensors[f"{name}.{suffix}"] = (hf_name, _llama_layout(hf_name, tensor, config, arch))
    return tensors


def _model_arch(name: str) -> Any:
    import gguf

    return next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == name)


def _llama_layout(hf_name: str, tensor: Any, config: Any, arch: GgufArchitecture) -> np.ndarray:
    data = tensor.detach().float().cpu().numpy()
    if arch.permute_qk and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
        heads = config.num_attention_heads if "q_proj" in hf_name else config.num_key_value_heads
        data = to_adjacent_pairs(data, heads)
    return data


def tensor_type(data: np.ndarray, gguf_type: str) -> Any:
    """The ggml type a tensor is stored in: 1-D ones (norms, biases) always float32."""
    import gguf

    kinds = gguf.GGMLQuantizationType
    if data.ndim == 1 or gguf_type == "f32":
        return kinds.F32
    if gguf_type == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[kinds.Q8_0][0] == 0:
        return kinds.Q8_0
    return kinds.F16


def write_gguf(model: Any, vocab: GgufVocabulary, path: Path, gguf_type: str, name: str) -> None:
    """One GGUF file of `model` with its weights as `gguf_type` (f32, f16 or q8_0)."""
    import gguf

    arch = gguf_architecture(model.config)
    writer = _writer_class()(str(path), arch.name)
    writer.add_name(name)
    writer.add_file_type(FILE_TYPES[gguf_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_hyperparameters(writer, model.config)
    _add_vocabulary(writer, vocab)
    for tensor_name, (_, data) in gguf_tensors(model).items():
        kind = tensor_type(data, gguf_type)
        writer.add_tensor(tensor_name, gguf.quants.quantize(data, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_hyperparameters(writer: Any, config: Any) -> None:
    dim = head_dim(config)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(rope_parameters(config)["rope_theta"])
    writer.add_rope_dimension_count(dim)
    writer.add_key_length(dim)
    writer.add_value_length(dim)
    writer.add_vocab_size(config.vocab_size)


def _add_vocabulary(writer: Any, vocab: GgufVocabulary) -> None:
    from gguf import GGUFValueType, Keys

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    # llama.cpp and transformers both need the key, even with no merges (a bytes-only vocabulary)
    writer.add_key_value(
        Keys.Tokenizer.MERGES, vocab.merges, GGUFValueType.ARRAY, sub_type=GGUFValueType.STRING
    )
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "pad": writer.add_pad_token_id,
        "unk": writer.add_unk_token_id,
    }
    for role, token_id in vocab.special_ids.items():
        adders[role](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def _writer_class() -> Any:
    """gguf's GGUFWriter, also writing an empty array: the format and the readers (llama.cpp,
    transformers, gguf's own) take one, but the writer refuses it, and a byte-level vocabulary
    without merges must still say it has none."""
    import gguf

    class Writer(gguf.GGUFWriter):
        def _pack_val(self, val: Any, vtype: Any, add_vtype: bool, sub_type: Any = None) -> bytes:
            if vtype == gguf.GGUFValueType.ARRAY and sub_type is not None and len(val) == 0:
                head = self._pack("I", vtype) if add_vtype else b""
                return head + self._pack("I", sub_type) + self._pack("Q", 0)
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return Writer


def llama_cpp_quantiser() -> Any:
    """llama-cpp-python's bindings, or ExportError saying how to get k-quants."""
    try:
        import llama_cpp
    except ImportError:
        raise ExportError(
            "q4_k_m needs llama.cpp's quantiser (the gguf package cannot write "
            "k-quants): pip install llama-cpp-python (it builds llama.cpp from "
            "source; see docs/export.md), or set export.gguf to [f16, q8_0]"
        ) from None
    return llama_cpp


def quantize_k(source: Path, out: Path, gguf_type: str) -> None:
    """llama.cpp's quantiser from a float32 GGUF `source` to `out` (q4_k_m), one thread."""
    import ctypes

    llama_cpp = llama_cpp_quantiser()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[gguf_type]
    params.nthread = 1
    with _native_output_to(out.with_suffix(".log")) as log:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    said = log.read_text(errors="replace").strip().splitlines()
    os.remove(log)
    if status != 0 or not out.is_file():
        raise ExportError(
            f"llama.cpp could not quantise {source.name} to {gguf_type} (status "
            f"{status}: {said[-1] if said else 'no message'}); export f16 or "
            "q8_0 instead"
        )


@contextmanager
def _native_output_to(path: Path) -> Iterator[Path]:
    """Send what native code prints (llama.cpp logs every tensor it quantises) to a file."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield path
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def export_gguf(loaded: Any, folder: str | Path, gguf_type: str, sample_texts: list[str]) -> Path:
    """Write `folder`/model-TYPE.gguf, gguf.json and a Modelfile; return the folder.

    sample_texts: held-out texts on which GPT-2's split rules must give the tokenizer's own
    ids when its pre-tokenizer has no name in llama.cpp (see `gguf_vocab`).
    """
    from distil.export.modelfile import write_modelfile
    from distil.models import count_parameters

    model, folder = loaded.model, Path(folder)
    vocab = gguf_vocabulary(loaded.tokenizer, model.config.vocab_size, sample_texts)
    file_name = f"model-{gguf_type}.gguf"
    with atomic_directory(folder) as tmp:
        if gguf_type == "q4_k_m":
            llama_cpp_quantiser()  # refused before any work when it is missing
            write_gguf(model, vocab, tmp / "float32.gguf", "f32", _model_name(loaded))
            quantize_k(tmp / "float32.gguf", tmp / file_name, gguf_type)
            os.remove(tmp / "float32.gguf")
        else:
            write_gguf(model, vocab, tmp / file_name, gguf_type, _model_name(loaded))
        manifest = {
            "format": "gguf",
            "type": gguf_type,
            "file": file_name,
            "architecture": gguf_architecture(model.config).name,
            "params": count_parameters(model),
            "pre_tokenizer": vocab.pre,
            "pre_tokenizer_note": vocab.pre_note,
            "quantiser": _quantiser(gguf_type),
        }
        (tmp / "gguf.json").write_text(json.dumps(manifest, indent=2) + "\n")
        # the export stage writes the student's model card at the export's root, beside this folder
        write_modelfile(tmp / "Modelfile", file_name, loaded.tokenizer, card="../README.md")
    return folder


def _model_name(loaded: Any) -> str:
    source = getattr(loaded, "source", None) or getattr(loaded.model, "name_or_path", "") or ""
    return Path(str(source)).name or "distil-student"


def _quantiser(gguf_type: str) -> str:
    from importlib.metadata import version

    if gguf_type == "q4_k_m":
        return f"llama.cpp (llama-cpp-python {llama_cpp_quantiser().__version__})"
    return f"gguf {version('gguf')}"


def gguf_file(folder: str | Path) -> Path:
    """The .gguf file of an exported GGUF variant folder."""
    folder = Path(folder)
    return folder / json.loads((folder / "gguf.json").read_text())["file"]
