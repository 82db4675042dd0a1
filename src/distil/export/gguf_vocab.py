"""A byte-level BPE tokenizer as GGUF metadata: the vocabulary, merges, special tokens and
chat template llama.cpp reads (`tokenizer.ggml.*`, `tokenizer.chat_template`).

    vocab = gguf_vocabulary(loaded.tokenizer, model.config.vocab_size, sample_texts)

llama.cpp does not run a Hugging Face pre-tokenizer: it knows a fixed set of split rules by
name (`tokenizer.ggml.pre`). A tokenizer whose rules are not one of them is exported only
when the closest named rule (GPT-2's) gives the same token ids on the sample texts (the
held-out prompts and answers); otherwise `ExportError` says so. Other tokenizer models
(SentencePiece/Unigram, WordPiece) are refused with one line.

Whether a reader puts the bos token before a text (and the eos after it) is not read from
which special tokens exist: readers that honour `add_bos_token` (llama.cpp, Ollama,
transformers' GGUF loader) would then prepend a bos the model never saw. It is what the
tokenizer itself does when asked for special tokens (`special_flags`).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from distil.errors import ExportError

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
"""llama.cpp's token types (gguf.TokenType), kept here so that this module needs no gguf."""

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}"
    r"\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
    r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NAMED_SPLITS = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}
"""Split patterns of tokenizer.json that llama.cpp knows by a name, and that name."""


@dataclass(frozen=True)
class GgufVocabulary:
    """What `tokenizer.ggml.*` holds for a byte-level BPE tokenizer."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    """llama.cpp's name of the pre-tokenizer's split rules."""
    special_ids: dict[str, int] = field(default_factory=dict)
    """bos / eos / pad / unk -> token id, for those the tokenizer has."""
    add_bos: bool = False
    """The tokenizer puts its bos before a text when asked for special tokens."""
    add_eos: bool = False
    """The tokenizer puts its eos after a text when asked for special tokens."""
    chat_template: str | None = None
    pre_note: str = ""
    """How `pre` was chosen (an equivalence check, when the rules have no name in llama.cpp)."""


def gguf_vocabulary(tokenizer: Any, vocab_size: int, sample_texts: list[str]) -> GgufVocabulary:
    """The GGUF tokenizer metadata of a fast byte-level BPE tokenizer; ExportError otherwise."""
    spec = _tokenizer_json(tokenizer)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _is_byte_level(spec):
        raise ExportError(
            f"GGUF export supports byte-level BPE tokenizers (GPT-2, Llama 3, "
            f"Qwen style); this one is {model.get('type', 'unknown')} without a "
            "ByteLevel pre-tokenizer, which this exporter cannot write yet; export "
            "ONNX instead (formats: [hf, onnx, onnx-int8])"
        )
    tokens, types = _tokens(tokenizer, model["vocab"], spec.get("added_tokens") or [], vocab_size)
    pre, note = _pre_name(tokenizer, spec, sample_texts)
    merges = _merges(model.get("merges") or [])
    add_bos, add_eos = special_flags(tokenizer)
    return GgufVocabulary(
        tokens, types, merges, pre, _special_ids(tokenizer), add_bos, add_eos, tokenizer.chat_template, note
    )


def _tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(
            f"GGUF export needs a fast tokenizer (tokenizer.json); "
            f"{type(tokenizer).__name__} has none; save the model with a "
            "tokenizers-backed tokenizer"
        )
    return json.loads(backend.to_str())


def _pre_tokenizers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    pre = spec.get("pre_tokenizer") or {}
    return pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre] if pre else []


def _is_byte_level(spec: dict[str, Any]) -> bool:
    return any(p.get("type") == "ByteLevel" for p in _pre_tokenizers(spec))


def _tokens(
    tokenizer: Any, vocab: dict[str, int], added: list[dict[str, Any]], vocab_size: int
) -> tuple[list[str], list[int]]:
    """Token strings by id (ids the tokenizer lacks up to the model's width: unused pads)."""
    by_id = {i: t for t, i in vocab.items()} | {a["id"]: a["content"] for a in added}
    kinds = {a["id"]: CONTROL if a.get("special") else USER_DEFINED for a in added}
    width = max(vocab_size, max(by_id) + 1)
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(width)]
    types = [kinds.get(i, NORMAL if i in by_id else UNUSED) for i in range(width)]
    return tokens, types


def _merges(merges: list[Any]) -> list[str]:
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


FLAG_PROBE = "Hello world"
"""A text to see what the tokenizer adds around any text when asked for special tokens."""


def special_flags(tokenizer: Any) -> tuple[bool, bool]:
    """(add_bos, add_eos): whether the tokenizer puts its bos before and its eos after a text
    when asked for special tokens. ExportError for anything else it adds, which GGUF's two
    flags cannot say."""
    plain = tokenizer(FLAG_PROBE, add_special_tokens=False).input_ids
    full = tokenizer(FLAG_PROBE, add_special_tokens=True).input_ids
    start = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), None)
    before = full[:start] if start is not None else full
    after = full[start + len(plain) :] if start is not None else []
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if start is None or before not in ([], [bos]) or after not in ([], [eos]):
        raise ExportError(
            f"this tokenizer adds {before} before and {after} after a text "
            f"({FLAG_PROBE!r} -> {full}), which GGUF's add_bos_token and "
            "add_eos_token flags cannot say; export ONNX instead"
        )
    return before == [bos], after == [eos]


def _special_ids(tokenizer: Any) -> dict[str, int]:
    ids = {
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
        "unk": tokenizer.unk_token_id,
    }
    return {name: int(i) for name, i in ids.items() if i is not None}


def _pre_name(tokenizer: Any, spec: dict[str, Any], sample_texts: list[str]) -> tuple[str, str]:
    """llama.cpp's name for the split rules, checked to give the same ids when not exact."""
    parts = _pre_tokenizers(spec)
    splits = [p for p in parts if p.get("type") == "Split"]
    byte_level = next(p for p in parts if p.get("type") == "ByteLevel")
    exact = not byte_level.get("add_prefix_space")  # llama.cpp never adds a prefix space
    if exact and len(parts) == 1 and byte_level.get("use_regex", True):
        return "gpt-2", "the GPT-2 split rules, as the tokenizer's"
    if exact and len(parts) == 2 and len(splits) == 1:
        pattern = (splits[0].get("pattern") or {}).get("Regex")
        if pattern in NAMED_SPLITS and not byte_level.get("use_regex", True):
            return NAMED_SPLITS[pattern], "the tokenizer's split rules, known to llama.cpp by name"
    differing = gpt2_mismatches(tokenizer, sample_texts)
    if differing:
        raise ExportError(
            f"GGUF cannot carry this tokenizer's pre-tokenizer ({_describe(parts)}): "
            "llama.cpp knows split rules only by name, and the closest (GPT-2's) "
            f"tokenizes {len(differing)} of {len(sample_texts)} held-out texts "
            f"differently (first: {differing[0]!r}); export ONNX instead"
        )
    return "gpt-2", (
        f"GPT-2's split rules, which give the same ids as the tokenizer's own "
        f"({_describe(parts)}) on {len(sample_texts)} held-out texts"
    )


def _describe(parts: list[dict[str, Any]]) -> str:
    return " + ".join(str((p.get("pattern") or {}).get("Regex", p.get("type"))) for p in parts)


def gpt2_mismatches(tokenizer: Any, texts: list[str]) -> list[str]:
    """The texts that GPT-2's split rules (ByteLevel with its regex) tokenize differently."""
    from tokenizers import Tokenizer, pre_tokenizers

    gpt2 = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    own = tokenizer.backend_tokenizer
    return [
        t
        for t in texts
        if own.encode(t, add_special_tokens=False).ids != gpt2.encode(t, add_special_tokens=False).ids
    ]
