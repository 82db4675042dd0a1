"""Errors a user can act on.

Every error the toolkit raises on bad input is a `DistilError`: its message says what is
wrong and what to do. The CLI prints it on one line, without a traceback, and exits
non-zero.
"""


class DistilError(Exception):
    """Base class: a problem the user can fix; the message names it and the fix."""

    exit_code = 2


class RecipeError(DistilError):
    """The recipe file or an override is malformed, unknown or invalid."""


class ModelError(DistilError):
    """A model or tokenizer cannot be loaded or does not fit the job."""


class VocabularyMismatchError(ModelError):
    """Teacher and student do not share a vocabulary, so their logits cannot be compared."""


class DataError(DistilError):
    """A dataset is missing, empty or has the wrong columns."""


class CheckpointError(DistilError):
    """A checkpoint is missing, incomplete or does not match the run."""


class TaskError(DistilError):
    """A skills task is unknown, or cannot make the items asked of it."""


class ExportError(DistilError):
    """The folder is not a model, or its architecture cannot be exported or run."""


class ParityError(DistilError):
    """An exported variant does not answer like the PyTorch model it came from. Exit status 3,
    so scripts can tell "this export is not faithful" apart from "this input is wrong" (2)."""

    exit_code = 3


class OutputError(DistilError):
    """An output location cannot be written, or holds something a command must not replace."""


class DiskFullError(OutputError):
    """The disk (or the user's quota) holding an output folder filled up during a write; what
    was being written was removed again, what was finished before is kept."""
