"""Teachers: one protocol (`Teacher`), several backends; stages never know which they hold.

`LocalTeacher` runs a model in process; `ApiTeacher` (needs the `api` extra) reaches one
behind an OpenAI-compatible endpoint: `ApiTeacher.from_section(model, recipe.teacher.api)`.
Every teacher failure is a `TeacherError`.
"""

import importlib.util

from distil.teachers.base import (
    Capabilities,
    Completion,
    NotSupportedError,
    Prompt,
    Sampling,
    Teacher,
    TeacherError,
    TokenLogprob,
    TopLogprob,
    Usage,
    as_messages,
)
from distil.teachers.local import LocalTeacher

__all__ = [
    "Capabilities",
    "Completion",
    "LocalTeacher",
    "NotSupportedError",
    "Prompt",
    "Sampling",
    "Teacher",
    "TeacherError",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
    "as_messages",
    "ApiTeacher",
]


def __getattr__(name: str) -> object:
    """`ApiTeacher` is imported on first use, so the openai SDK stays an optional extra."""
    if name == "ApiTeacher":
        if importlib.util.find_spec("openai") is None:
            raise TeacherError("an API teacher needs the openai package: pip install 'distil[api]'")
        from distil.teachers.api import ApiTeacher

        return ApiTeacher
    raise AttributeError(f"module 'distil.teachers' has no attribute {name!r}")
