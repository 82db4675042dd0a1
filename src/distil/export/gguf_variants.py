"""The `gguf` export format's steps: one `gguf-TYPE/` folder per type in `export.gguf`.

    check_gguf_export(loaded, config)                       # before any work
    write_gguf_variant(loaded, folder, variant, config)     # variant.setting: f16, q8_0, ...

`check_gguf_export` refuses, before anything is written, an architecture or tokenizer GGUF
cannot carry and a k-quant without llama.cpp's quantiser. The held-out texts the tokenizer
is checked on are the parity check's own prompts, rendered as the model reads them, and
reference answers.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from distil.data import render_prompt
from distil.export.gguf import export_gguf, gguf_architecture, llama_cpp_quantiser
from distil.export.gguf_vocab import gguf_vocabulary
from distil.export_formats import VariantSpec

if TYPE_CHECKING:
    from distil.recipe import ExportSection


def sample_texts(tokenizer: Any, config: "ExportSection") -> list[str]:
    """The held-out prompts as the model reads them (chat template applied), and their
    reference answers."""
    from distil.tasks import generate_items

    items = generate_items("heldout", config.prompts_per_task, config.seed)
    prompts = [render_prompt(tokenizer, item.prompt, "auto")[0] for item in items]
    return prompts + [item.answer for item in items]


def check_gguf_export(loaded: Any, config: "ExportSection") -> None:
    """ExportError now for what would fail later: architecture, tokenizer, k-quant support."""
    gguf_architecture(loaded.model.config)
    gguf_vocabulary(loaded.tokenizer, loaded.model.config.vocab_size, sample_texts(loaded.tokenizer, config))
    if "q4_k_m" in config.gguf:
        llama_cpp_quantiser()


def write_gguf_variant(loaded: Any, folder: Path, variant: VariantSpec, config: "ExportSection") -> None:
    """The `gguf` format's writer: one GGUF of the type the variant names."""
    export_gguf(loaded, folder, variant.setting, sample_texts(loaded.tokenizer, config))
