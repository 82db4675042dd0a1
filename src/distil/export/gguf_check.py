"""Check a written GGUF file against the model it came from: weights, metadata, tokenizer.

    record = read_back(gguf_file(folder), loaded.model, vocab)   # {"failures": [], ...}
    record = tokenizer_check(gguf_file(folder), loaded.tokenizer, texts)
    fields, failures = check_gguf_variant(loaded, folder, config)  # both, for parity.json

The read-back needs no llama.cpp. It checks the tensor names (each maps back to a PyTorch parameter, none
missing), shapes, the hyper-parameters and tokenizer metadata, and every dequantised weight
against PyTorch's float32 one (query/key rows put back in rotate-half order), within the
error each type allows:

- F32: exact; F16: exactly PyTorch's weight rounded to float16;
- block types: |error| <= one quantisation step at the block's largest |weight|: for a
  signed 8-bit block of 32 (Q8_0) the step is max/127; 5-bit Q5_0 max/16; Q5_1 (with a
  minimum) 2*max/31; Q4_0 max/8; Q4_1 2*max/15, times 1.01 for the float16 scale;
- k-quants (blocks of 256 whose 16 or 32-wide sub-block scales are themselves quantised):
  1.5 steps at the super-block's largest |weight|: Q4_K 2*max/15, Q5_K 2*max/31,
  Q6_K max/32.

`worst_error_to_bound` records how close the worst weight came (1.0 is the bound).

The tokenizer check reads the tokenizer back from the file's own metadata, as a deployment
would (transformers' GGUF tokenizer reader; llama.cpp too when llama-cpp-python is
installed), and tokenizes the held-out prompts, rendered with the chat template, with and
without special tokens: every id must be the model's own tokenizer's. It catches a wrong
merge, pre-tokenizer, special token or `add_bos_token` flag that the weights cannot show.
"""

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distil.export.gguf import gguf_architecture, gguf_file, gguf_tensors, head_dim, to_rotate_half
from distil.export.gguf_variants import sample_texts
from distil.export.gguf_vocab import GgufVocabulary, gguf_vocabulary

if TYPE_CHECKING:
    from distil.recipe import ExportSection


def check_gguf_variant(
    loaded: Any, folder: Path, config: "ExportSection"
) -> tuple[dict[str, Any], list[str]]:
    """The `gguf` format's own check: ({"read_back": ..., "tokenizer": ...}, failures)."""
    texts = sample_texts(loaded.tokenizer, config)
    vocab = gguf_vocabulary(loaded.tokenizer, loaded.model.config.vocab_size, texts)
    path = gguf_file(folder)
    weights = read_back(path, loaded.model, vocab)
    tokens = tokenizer_check(path, loaded.tokenizer, texts)
    failures = [f"read-back: {f}" for f in weights["failures"]]
    failures += [f"tokenizer: {f}" for f in tokens["failures"]]
    return {"read_back": weights, "tokenizer": tokens}, failures


def tokenizer_check(path: str | Path, tokenizer: Any, texts: list[str]) -> dict[str, Any]:
    """Each reader's ids of `texts` against `tokenizer`'s, with and without special tokens."""
    readers = {"transformers": _transformers_reader}
    if importlib.util.find_spec("llama_cpp") is not None:
        readers["llama.cpp"] = _llama_cpp_reader
    failures = []
    for name, open_reader in readers.items():
        encode = open_reader(Path(path))
        for add_special in (False, True):
            theirs = [encode(t, add_special) for t in texts]
            ours = [tokenizer(t, add_special_tokens=add_special).input_ids for t in texts]
            differing = [i for i, (a, b) in enumerate(zip(theirs, ours, strict=True)) if a != b]
            if differing:
                first = differing[0]
                failures.append(
                    f"the GGUF's own tokenizer, read by {name}, gives other ids than the model's "
                    f"on {len(differing)} of {len(texts)} held-out texts "
                    f"{'with' if add_special else 'without'} special tokens (first: "
                    f"{_shown(texts[first])}: {_shown(theirs[first])} instead of "
                    f"{_shown(ours[first])})"
                )
    return {"readers": list(readers), "texts": len(texts), "failures": failures}


Encode = Callable[[str, bool], list[int]]
"""(text, add special tokens) -> token ids."""


def _transformers_reader(path: Path) -> Encode:
    from transformers import AutoTokenizer

    reader = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return lambda text, add_special: reader(text, add_special_tokens=add_special).input_ids


def _llama_cpp_reader(path: Path) -> Encode:
    from llama_cpp import Llama

    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    return lambda text, add_special: vocab.tokenize(text.encode(), add_bos=add_special, special=True)


def _shown(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# fmt: off
BOUNDS = {"Q8_0": (32, 1 / 127, 1.01), "Q5_0": (32, 1 / 16, 1.01), "Q5_1": (32, 2 / 31, 1.01),
          "Q4_0": (32, 1 / 8, 1.01), "Q4_1": (32, 2 / 15, 1.01), "Q4_K": (256, 2 / 15, 1.5),
          "Q5_K": (256, 2 / 31, 1.5), "Q6_K": (256, 1 / 32, 1.5)}
"""ggml type -> (block width, step as a share of the block's largest |weight|, slack)."""
# fmt: on


def read_back(path: str | Path, model: Any, vocab: GgufVocabulary) -> dict[str, Any]:
    """Tensor, metadata and dequantised-weight checks of one GGUF file; `failures` lists misses."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    failures = _metadata_failures(reader, model.config, vocab)
    expected = {name: hf_name for name, (hf_name, _) in gguf_tensors(model).items()}
    found = {t.name for t in reader.tensors}
    failures += [f"tensor {n} missing" for n in sorted(set(expected) - found)]
    failures += [f"unexpected tensor {n}" for n in sorted(found - set(expected))]
    state = model.state_dict()
    types: dict[str, int] = {}
    worst = 0.0
    for tensor in reader.tensors:
        if tensor.name not in expected:
            continue
        kind = tensor.tensor_type.name
        types[kind] = types.get(kind, 0) + 1
        weight = state[expected[tensor.name]].detach().float().cpu().numpy()
        ratio, problem = _compare(tensor, weight, model.config)
        worst = max(worst, ratio)
        if problem:
            failures.append(f"{tensor.name} ({kind}): {problem}")
    return {
        "tensors": len(reader.tensors),
        "tensor_types": types,
        "worst_error_to_bound": worst,
        "failures": failures,
    }


def _compare(tensor: Any, weight: np.ndarray, config: Any) -> tuple[float, str | None]:
    """(worst |error| / bound, a problem or None) of one GGUF tensor against PyTorch's."""
    import gguf

    shape = tuple(int(d) for d in reversed(tensor.shape))  # ggml lists the fastest axis first
    if shape != weight.shape:
        return 0.0, f"shape {shape}, PyTorch's is {weight.shape}"
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
    values = _undo_layout(tensor.name, values.astype(np.float32), config)
    kind = tensor.tensor_type.name
    if kind in ("F32", "F16"):
        target = weight if kind == "F32" else weight.astype(np.float16).astype(np.float32)
        equal = np.array_equal(values, target)
        return (0.0 if equal else float("inf")), None if equal else (
            f"differs from PyTorch's by up to {np.abs(values - target).max():.3g}"
        )
    if kind not in BOUNDS:
        return 0.0, f"no documented error bound for {kind}"
    return _within_step(values, weight, *BOUNDS[kind])


def _within_step(
    values: np.ndarray, weight: np.ndarray, block: int, step: float, slack: float
) -> tuple[float, str | None]:
    rows = weight.reshape(-1, weight.shape[-1] // block, block)  # (R, blocks, block)
    bound = slack * step * np.abs(rows).max(-1, keepdims=True)
    error = np.abs(values.reshape(rows.shape) - rows)
    ratio = float((error / np.maximum(bound, 1e-30)).max())
    if np.all(error <= bound + 1e-12):
        return ratio, None
    return ratio, f"|error| up to {ratio:.2f}x the bound of its block"


def _undo_layout(name: str, values: np.ndarray, config: Any) -> np.ndarray:
    if not gguf_architecture(config).permute_qk:
        return values
    if name.endswith("attn_q.weight"):
        return to_rotate_half(values, config.num_attention_heads)
    if name.endswith("attn_k.weight"):
        return to_rotate_half(values, config.num_key_value_heads)
    return values


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    return None if field is None else field.contents()


def _metadata_failures(reader: Any, config: Any, vocab: GgufVocabulary) -> list[str]:
    from gguf import Keys

    arch = gguf_architecture(config).name
    wanted = {
        "general.architecture": arch,
        f"{arch}.block_count": config.num_hidden_layers,
        f"{arch}.embedding_length": config.hidden_size,
        f"{arch}.feed_forward_length": config.intermediate_size,
        f"{arch}.attention.head_count": config.num_attention_heads,
        f"{arch}.attention.head_count_kv": config.num_key_value_heads,
        f"{arch}.context_length": config.max_position_embeddings,
        f"{arch}.rope.dimension_count": head_dim(config),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": vocab.pre,
        "tokenizer.ggml.tokens": vocab.tokens,
        "tokenizer.ggml.merges": vocab.merges,
        "tokenizer.ggml.add_bos_token": vocab.add_bos,
        "tokenizer.ggml.add_eos_token": vocab.add_eos,
        "tokenizer.chat_template": vocab.chat_template,
    }
    ids = Keys.Tokenizer
    keys = {"bos": ids.BOS_ID, "eos": ids.EOS_ID, "pad": ids.PAD_ID, "unk": ids.UNK_ID}
    wanted |= {keys[role]: i for role, i in vocab.special_ids.items()}
    failures = []
    for key, value in wanted.items():
        got = _field(reader, key)
        if got != value and not (value == [] and got is None):
            shown = f"{len(got)} entries" if isinstance(got, list) else repr(got)
            failures.append(
                f"metadata {key} is {shown}, expected "
                f"{f'{len(value)} entries' if isinstance(value, list) else repr(value)}"
            )
    return failures
