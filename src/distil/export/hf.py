"""Export a model as a half-precision Hugging Face folder: safetensors weights and tokenizer.

    export_hf(loaded, "runs/demo/export/hf-float16", "float16")

The result loads with `AutoModelForCausalLM.from_pretrained` (its config.json records the
dtype) and serves GPU runtimes that read Hugging Face folders (vLLM, TGI, transformers).
"""

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from distil.export_formats import VariantSpec
from distil.fsutil import atomic_directory
from distil.models import LoadedModel

if TYPE_CHECKING:
    from distil.recipe import ExportSection

HalfDtype = Literal["float16", "bfloat16"]


def export_hf(loaded: LoadedModel, folder: str | Path, dtype: HalfDtype = "float16") -> Path:
    """Write a `dtype` copy of the model (safetensors) and its tokenizer to `folder`."""
    half = copy.deepcopy(loaded.model).to(getattr(torch, dtype))
    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        half.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
    return folder


def write_hf_variant(
    loaded: LoadedModel, folder: Path, variant: VariantSpec, config: "ExportSection"
) -> None:
    """The `hf` format's writer: the folder in export.dtype, with the student's model card
    (what the Hub shows for it)."""
    from distil.hub import run_of, write_model_card

    export_hf(loaded, folder, config.dtype)
    write_model_card(folder, run_of(Path(loaded.source)))
