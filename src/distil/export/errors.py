"""Errors of the export stage: input that cannot be exported, and exports that fail parity.

Both are `DistilError`s, so the CLI prints one line. A parity failure exits with status 3,
so scripts can tell "this export is not faithful" apart from "this input is wrong" (2).
"""

from distil.errors import DistilError


class ExportError(DistilError):
    """The folder is not a model, or its architecture cannot be exported."""


class ParityError(DistilError):
    """An exported variant does not answer like the PyTorch model it came from."""

    exit_code = 3
