"""Recipe sections of the edge stages: `export:` (deployable files, parity) and `bench:`.

They are also the Python configs of `distil.export.export_run` and `distil.bench.bench_run`,
and the `distil export` / `distil bench` options fill them. Kept free of heavy imports.
"""

from typing import Literal

from pydantic import Field

from distil.section import Section

Format = Literal["hf", "onnx", "onnx-int8"]


def with_recipe_seed(section: Section, seed: int) -> Section:
    """`section` with `seed` set to the recipe's, unless the recipe set the section's own."""
    if "seed" in section.model_fields_set:
        return section
    return section.model_copy(update={"seed": seed})


class Thresholds(Section):
    """What a variant must reach against the float32 PyTorch model; empty skips a check."""

    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)
    """Least share of compared positions whose top-1 token matches the reference's."""
    max_abs_logit_diff: float | None = Field(default=None, ge=0)
    """Largest allowed |logit difference| at any compared position and vocabulary entry."""
    max_accuracy_drop: float | None = Field(default=None, ge=0, le=1)
    """Largest allowed fall in held-out task accuracy (0.01 is one point); a rise never fails."""


def _default_thresholds() -> dict[str, Thresholds]:
    return {
        "float32": Thresholds(min_top1_agreement=0.999, max_abs_logit_diff=1e-2,
                              max_accuracy_drop=0.01),
        "int8": Thresholds(min_top1_agreement=0.95, max_accuracy_drop=0.01),
        "half": Thresholds(min_top1_agreement=0.97, max_accuracy_drop=0.01),
    }


class ExportConfig(Section):
    """What to export and how strictly to check it."""

    formats: list[Format] = ["hf", "onnx", "onnx-int8"]
    """`hf`: half-precision safetensors folder; `onnx`: float32 ONNX with a key/value cache;
    `onnx-int8`: the ONNX graph with int8 weights (implies `onnx`)."""
    dtype: Literal["float16", "bfloat16"] = "float16"
    """Weight dtype of the `hf` folder."""
    opset: int = Field(default=18, ge=17)
    """ONNX opset of the exported graph."""
    per_channel: bool = True
    """int8 scales per output channel (closer to float32) instead of one per weight matrix."""
    prompts_per_task: int = Field(default=25, ge=1)
    """Held-out prompts per task family for the parity check and task accuracy."""
    compared_prompts: int = Field(default=16, ge=1)
    """Prompts (spread over the families) along whose greedy continuation logits are compared."""
    max_new_tokens: int = Field(default=32, ge=1)
    """Longest greedy answer generated per prompt."""
    seed: int = 0
    """Seed of the held-out prompts. In a recipe, left unset, it is the recipe's seed."""
    thresholds: dict[Literal["float32", "int8", "half"], Thresholds] = Field(
        default_factory=_default_thresholds)
    """Parity thresholds of each kind of variant (see docs/export.md for why these values)."""
    allow_parity_failure: bool = False
    """Finish without raising when a variant fails parity (it is still set aside in failed/)."""


class BenchConfig(Section):
    """How long and how often each model generates."""

    new_tokens: int = Field(default=32, ge=2)
    """Tokens generated per sequence in each timed run (eos does not stop it)."""
    batch_sizes: list[int] = Field(default=[1, 8], min_length=1)
    """Batch sizes to time; a batch takes the first held-out prompts, left-padded."""
    warmup: int = Field(default=1, ge=0)
    """Untimed runs per batch size before the timed ones."""
    repeats: int = Field(default=3, ge=1)
    """Timed runs per batch size; figures are medians (latency percentiles pool all steps)."""
    threads: int | None = Field(default=1, ge=1)
    """CPU threads for every runtime; empty uses every core. 1 by default: on a machine that
    other work shares, PyTorch's threads wait on each other and its figures swing by 5x or
    more, while one thread each keeps the comparison stable (and conservative for ONNX)."""
    seed: int = 0
    """Seed of the held-out prompts used as inputs. In a recipe, left unset, it is the
    recipe's seed."""
    variants: list[str] | None = None
    """Exported variants (folder names under RUN/export) to time; empty times every deployable
    ONNX variant listed in parity.json."""
    timeout_s: float = Field(default=900, gt=0)
    """Longest one model's measurement may take."""
