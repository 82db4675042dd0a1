"""What became of one teacher request: a completion, or the cause of its failure.

Backends that run requests concurrently (`ApiTeacher.submit`) hand these back one by one,
so a stage can journal each request as it finishes instead of waiting for a batch.
"""

import concurrent.futures
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from distil.teachers.base import Completion, Prompt, Sampling


@dataclass(frozen=True)
class Outcome:
    """A completion, or the cause of a failure that retries could not fix."""

    completion: Completion | None
    error: str | None
    attempts: int
    started: float
    """Unix time the request was first tried."""
    finished: float
    served_model: str | None = None
    """The model name the server reported (may be more specific than the one asked for)."""
    attempts_recorded: bool = False
    """Each attempt was recorded in the budget's ledger (the journal) before it was sent,
    so the journal must not count `attempts` again."""
    rejected: bool = False
    """The server refused the request as invalid (a 4xx other than 408, 409, 425 and 429,
    e.g. a prompt longer than its context): sending it again would get the same answer."""


@runtime_checkable
class ConcurrentTeacher(Protocol):
    """A teacher that takes requests one at a time and runs up to `concurrency` at once."""

    concurrency: int

    def submit(
        self, prompt: Prompt, sampling: Sampling, key: str | None = None
    ) -> "concurrent.futures.Future[Outcome]":
        """Schedule a request (`key`: its idempotency key); the future holds the `Outcome`
        and raises only to stop the run."""
        ...
