"""Recipe sections of the two models: `teacher:` and `student:`.
"""

from typing import Literal

from distil.recipe.api import ApiSection
from distil.recipe.section import Section
from distil.recipe.terms import TermsSection


class ModelSection(Section):
    """A causal language model to load."""

    model: str
    """A local folder in Hugging Face format, a hub id (`org/name`), `demo` (the shipped demo
    teacher), or `tiny-teacher` / `tiny-student` (small random models built in-process)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; ignored for local folders."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype on load. `auto`: a teacher uses bfloat16 on a GPU that has it, float32
    otherwise; a student (trained) stays float32 and mixed precision is train.mixed_precision."""
    trust_remote_code: bool = False
    """Run modelling code shipped with a hub model. Off unless you trust its author."""
    layers: list[int] | None = None
    """Student only: keep just these decoder layers (0-based) of the loaded model, e.g. [0, 5],
    so a shallower student starts from the teacher's own weights."""


class TeacherSection(ModelSection):
    """The teacher: a model to load, or one served behind an API."""

    api: ApiSection | None = None
    """Reach the teacher through an OpenAI-compatible API instead of loading it (`model` is
    then the served model name). Such a teacher gives text and top-k logprobs, never full
    logits."""
    terms: TermsSection = TermsSection()
    """The terms the teacher's outputs come under; recorded with the data and the student."""
