"""Recipe section of the export stage: `export:` (deployable files and their parity thresholds).

It is also the Python config of `distil.export.export_run`, and the `distil export` options
are built from its fields. Kept free of heavy imports.
"""

from typing import Literal

from pydantic import Field, field_validator

from distil.export_formats import default_formats, export_format, unknown_formats_error
from distil.recipe.section import Section, StageInputs
from distil.tasks import unknown_tasks_error

GgufType = Literal["f16", "q8_0", "q4_k_m"]


class ThresholdsSection(Section):
    """What a variant must reach against the float32 PyTorch model; empty skips a check."""

    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)
    """Least share of compared positions whose top-1 token matches the reference's."""
    max_abs_logit_diff: float | None = Field(default=None, ge=0)
    """Largest allowed |logit difference| at any compared position and vocabulary entry."""
    max_accuracy_drop: float | None = Field(default=None, ge=0, le=1)
    """Largest allowed fall in held-out task accuracy (0.01 is one point); a rise never fails."""


def _default_thresholds() -> dict[str, ThresholdsSection]:
    return {
        "float32": ThresholdsSection(
            min_top1_agreement=0.999, max_abs_logit_diff=1e-2, max_accuracy_drop=0.01
        ),
        "int8": ThresholdsSection(min_top1_agreement=0.95, max_accuracy_drop=0.01),
        "half": ThresholdsSection(min_top1_agreement=0.97, max_accuracy_drop=0.01),
        "int4": ThresholdsSection(min_top1_agreement=0.90, max_accuracy_drop=0.02),
    }


class ExportSection(Section):
    """What to export and how strictly to check it."""

    formats: list[str] = Field(
        default_factory=default_formats,
        description=(
            "Export formats (the registry in `distil.export_formats`): "
            + "; ".join(f"`{name}`: {export_format(name).summary}" for name in default_formats())
            + "."
        ),
    )
    gguf: list[GgufType] = Field(default=["f16", "q8_0"], min_length=1)
    """GGUF types written when `formats` has `gguf`, each in `gguf-TYPE/`: `f16`, `q8_0`
    (8-bit blocks), `q4_k_m` (llama.cpp's 4-bit k-quant mix; needs llama-cpp-python)."""
    dtype: Literal["float16", "bfloat16"] = "float16"
    """Weight dtype of the `hf` folder."""
    opset: int = Field(default=18, ge=17)
    """ONNX opset of the exported graph."""
    per_channel: bool = True
    """int8 scales per block of 32 weights of each output row (closer to float32) instead of
    blocks of 128."""
    tasks: list[str] | None = None
    """Task families of the held-out parity prompts, whose task accuracy is compared too;
    empty: logits are compared on prompts of every default family and no accuracy is graded
    (a student of other work is not judged on them). In a recipe, left unset, the families
    `eval.tasks` evaluates; unset outside a recipe, every default family."""
    prompts_per_task: int = Field(default=25, ge=1)
    """Held-out prompts per task family for the parity check and task accuracy."""
    compared_prompts: int = Field(default=16, ge=1)
    """Prompts (spread over the families) along whose greedy continuation logits are compared."""
    max_new_tokens: int = Field(default=32, ge=1)
    """Longest greedy answer generated per prompt."""
    seed: int = 0
    """Seed of the held-out prompts. In a recipe, left unset, it is the recipe's seed."""
    thresholds: dict[Literal["float32", "int8", "half", "int4"], ThresholdsSection] = Field(
        default_factory=_default_thresholds
    )
    """Parity thresholds of each kind of variant (see docs/export.md for why these values);
    GGUF f16 is held to `half`, q8_0 to `int8`, q4_k_m to `int4`."""
    allow_parity_failure: bool = False
    """Exit 0 when a variant fails parity. A failed variant is set aside in failed/ and marked
    in parity.json and the report either way, and `distil run` goes on to bench and report;
    without this it exits with status 3 at the end."""

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: list[str]) -> list[str]:
        if problem := unknown_formats_error(formats, "export.formats"):
            raise ValueError(problem)
        return formats

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str] | None) -> list[str] | None:
        if tasks and (problem := unknown_tasks_error(tasks, "export.tasks")):
            raise ValueError(problem)
        return tasks


INPUTS = StageInputs(
    fields=(
        "seed",
        *(f"export.{name}" for name in ExportSection.model_fields if name != "allow_parity_failure"),
        "eval.tasks",
    ),
    reads=("train",),
)
"""What decides the exported files and their parity (the recipe seed picks the prompts, and
the families eval grades are the ones parity grades, unless export.tasks names others); not
whether a failure ends the command, which changes no file."""
