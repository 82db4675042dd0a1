"""The export stage's GGUF variants: one `gguf-TYPE/` folder per type in `export.gguf`.

    written = write_gguf_variants(loaded, tmp, config)   # {"gguf-q8_0": ("int8", folder), ...}

`check_gguf_export` refuses, before anything is written, an architecture or tokenizer GGUF
cannot carry and a k-quant without llama.cpp's quantiser. The held-out texts the tokenizer
is checked on are the parity check's own prompts and reference answers.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from distil.errors import ExportError
from distil.export.gguf import GGUF_KINDS, export_gguf, gguf_architecture, llama_cpp_quantiser
from distil.export.gguf_vocab import gguf_vocabulary

if TYPE_CHECKING:
    from distil.recipe import ExportSection


def sample_texts(tokenizer: Any, config: "ExportSection") -> list[str]:
    """The held-out prompts as the model reads them, and their reference answers."""
    from distil.export.parity import held_out_prompts

    items, prompt_ids = held_out_prompts(tokenizer, config.prompts_per_task, config.seed)
    prompts = [tokenizer.decode(ids) for ids in prompt_ids]
    return prompts + [item.answer for item in items]


def check_gguf_export(loaded: Any, config: "ExportSection") -> None:
    """ExportError now for what would fail later: the gguf package, architecture, tokenizer,
    k-quant support."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ExportError("GGUF export needs the gguf package: pip install -e '.[export]' (or "
                          "pip install gguf), or drop `gguf` from export.formats") from None
    gguf_architecture(loaded.model.config)
    gguf_vocabulary(loaded.tokenizer, loaded.model.config.vocab_size,
                    sample_texts(loaded.tokenizer, config))
    if "q4_k_m" in config.gguf:
        llama_cpp_quantiser()


def write_gguf_variants(loaded: Any, tmp: Path, config: "ExportSection") -> dict[str, tuple[str, Path]]:
    """Write each GGUF type; variant name -> (threshold kind, folder)."""
    texts = sample_texts(loaded.tokenizer, config)
    written = {}
    for gguf_type in dict.fromkeys(config.gguf):
        name = f"gguf-{gguf_type}"
        written[name] = (GGUF_KINDS[gguf_type], export_gguf(loaded, tmp / name, gguf_type, texts))
    return written

