"""Request counters, so a test can tell whether any request was paid for twice.

A generation request is *completed* (paid) when the model has done its work and the answer
is being sent, whether or not the client is still there to read it. Completed requests are
counted per request key: the `Idempotency-Key` header when the client sends one, else a hash
of the request body (the same body sent twice is the same request paid twice). Keys are kept only with
`ServerSettings.admin`, so a long-running server does not grow a table of them.

    GET /admin/stats   (with `--admin`; needs the API key when the server has one)
    {"received": {"chat": 3, ...}, "completed": {...}, "statuses": {"200": 3, "401": 1},
     "completed_by_key": {"row-17": 1, ...}, "retried": 0,
     "batching": {"model_calls": 2, "generated": 3, "scored": 0, "largest_batch": 2}}
"""

import hashlib
import threading
from collections import Counter
from dataclasses import asdict
from typing import Any

from distil.server.batching import BatchStats

KEY_HEADER = "idempotency-key"
RETRY_HEADER = "x-stainless-retry-count"
"""Sent by the official openai clients: how many times this request was already tried."""


def request_key(headers: Any, body: bytes) -> str:
    """The key a request is counted under: its Idempotency-Key, else `sha256:` of its body."""
    return headers.get(KEY_HEADER) or "sha256:" + hashlib.sha256(body).hexdigest()[:32]


class RequestStats:
    """Counters updated on the event loop and readable from any thread (`snapshot`)."""

    def __init__(self, by_key: bool = True) -> None:
        self.by_key = by_key  # the per-key table grows with every distinct key
        self._lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.completed_by_key: Counter[str] = Counter()
        self.retried = 0

    def count_received(self, endpoint: str, headers: Any) -> None:
        with self._lock:
            self.received[endpoint] += 1
            retry = headers.get(RETRY_HEADER, "0")
            self.retried += retry.isdigit() and int(retry) > 0

    def count_completed(self, endpoint: str, key: str) -> None:
        with self._lock:
            self.completed[endpoint] += 1
            if self.by_key:
                self.completed_by_key[key] += 1

    def count_status(self, status: int) -> None:
        with self._lock:
            self.statuses[status] += 1

    def snapshot(self, batching: BatchStats) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        with self._lock:
            return {
                "received": dict(self.received),
                "completed": dict(self.completed),
                "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
                "completed_by_key": dict(self.completed_by_key),
                "retried": self.retried,
                "batching": asdict(batching),
            }
