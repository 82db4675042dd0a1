"""Teachers: one protocol (`Teacher`), several backends; stages never know which they hold."""

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
]
