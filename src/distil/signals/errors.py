"""Errors of the teacher-signal store, each naming the store or shard and the fix."""

from distil.errors import DistilError


class SignalsError(DistilError):
    """A signal store is missing, incomplete, or does not fit the job."""


class StoreCorruptedError(SignalsError):
    """A shard or the fingerprint file is truncated or damaged."""


class FingerprintMismatchError(SignalsError):
    """The store was captured under settings that differ from the recipe's."""
