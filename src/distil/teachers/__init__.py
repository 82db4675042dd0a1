"""Teachers: one protocol (`Teacher`), several backends; stages never know which they hold.

Every stage opens the recipe's teacher with `open_teacher(recipe.teacher, ...)`
(distil.teachers.factory) and asks its `capabilities` for what it needs (`require`,
`white_box`). `LocalTeacher` runs a model in process; `ApiTeacher` (needs the `api` extra)
reaches one behind an OpenAI-compatible endpoint. Every teacher failure is a `TeacherError`.
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
from distil.teachers.factory import (
    TeacherBackend,
    endpoint_of,
    open_teacher,
    register_backend,
    require,
    unregister_backend,
    white_box,
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
    "TeacherBackend",
    "TeacherError",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
    "as_messages",
    "endpoint_of",
    "open_teacher",
    "register_backend",
    "require",
    "unregister_backend",
    "white_box",
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
