"""A toy export format defined outside distil, as a user's package would: the student's
float32 weights as a safetensors folder, opened by transformers. Registered by the tests
that use it (`register_format(TOY)`), removed after them.

The bench opens a variant in a fresh interpreter by module path, so the functions here are
module-level and this module is importable (tests.export.toy_format) from the repository.
"""

import types
from pathlib import Path
from typing import Any

from distil.export_formats import ExportFormat, VariantSpec

NAME = "safetensors-fp32"


def write(loaded: Any, folder: Path, variant: VariantSpec, config: Any) -> None:
    """The student, float32, with its tokenizer (save_pretrained writes safetensors)."""
    loaded.model.float().save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)


def open_for_parity(folder: Path, config: Any) -> Any:
    """The folder as transformers loads it, behind parity's Variant interface."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distil.export.parity import TorchVariant

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return TorchVariant(types.SimpleNamespace(model=model, tokenizer=tokenizer))


def open_for_bench(model: str, threads: int) -> tuple[Any, int | None, str]:
    """The bench's PyTorch greedy loop over the folder."""
    from distil.bench.worker import open_float32

    return open_float32(model, threads)


TOY = ExportFormat(
    name=NAME,
    summary="float32 safetensors folder (a test's own format)",
    variants=lambda config: [VariantSpec(NAME, "float32")],
    write=write,
    open=open_for_parity,
    runtime="pytorch",
    bench_open=open_for_bench,
    needs={"safetensors": "pip install safetensors"},
    folders=(NAME,),
)
