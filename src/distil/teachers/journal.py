"""The request journal: every paid teacher request of a run, appended as it finishes.

Synth journals its generations (RUN/synth/journal.jsonl), on-policy training the scoring
of the student's samples by a teacher behind an API (RUN/on_policy/).

    journal = Journal.open(run_dir / "synth" / "journal.jsonl")
    key = request_key(endpoint, model, messages, sampling_params, seed)
    if not journal.done(key):
        ...                                    # send it
        journal.append(Entry.success(key, request, completion, ...))
    journal.close()

One JSON object per line, written with a single `write` and fsync'd before the next
request is journaled, so a kill (even SIGKILL, even power loss after the fsync) loses at
most the requests still in flight. A torn last line (a kill in the middle of a write) is
cut off when the journal is opened; any other unreadable line is an error, never skipped.
The newest entry of a key wins: a failure followed by a success on a rerun is a success.
An entry is `ok`, `failed` (retries ran out: a rerun sends it again) or `rejected` (the
server refused the request as invalid, a 4xx other than 408/409/425/429: a rerun does not
send it again unless asked to, `needs_sending`).
An exclusive lock keeps two runs from writing the same journal.

Budget caps count what the journal holds. A paid teacher records each attempt before it is
sent (`record_attempt`: a line `{"attempt": <key or "probe">, "at": <unix time>}`), so
start-up probes, retries, and requests that a cap or a kill stopped before they finished
all count on the next run; an entry whose attempts were so recorded
(`attempts_recorded: true`) does not count them again.
"""

import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distil.errors import DistilError
from distil.fsutil import append_whole
from distil.teachers.base import Completion, TokenLogprob, TopLogprob, Usage
from distil.teachers.budget import Spent


class JournalError(DistilError):
    """The journal is unreadable or in use by another run."""


def request_key(
    endpoint: str,
    model: str,
    messages: Sequence[Mapping[str, str]],
    sampling: Mapping[str, Any],
    seed: int | None,
) -> str:
    """Hash of everything that decides what a request returns (and costs)."""
    params = {k: v for k, v in sampling.items() if k != "seed"}
    payload = json.dumps(
        {"endpoint": endpoint, "model": model, "messages": list(messages), "sampling": params, "seed": seed},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One finished request: a completion, or a failure with its cause."""

    key: str
    status: str
    """"ok", "failed" (retries ran out) or "rejected" (refused by the server as invalid)."""
    request: dict[str, Any]
    """What was asked: endpoint, model, messages, sampling, seed."""
    attempts: int
    started: float
    finished: float
    completion: Completion | None = None
    served_model: str | None = None
    error: str | None = None
    attempts_recorded: bool = False
    """Each attempt has its own `attempt` line, written before it was sent."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def rejected(self) -> bool:
        return self.status == "rejected"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "request": self.request,
            "attempts": self.attempts,
            "started": self.started,
            "finished": self.finished,
            "served_model": self.served_model,
            "error": self.error,
            "attempts_recorded": self.attempts_recorded,
            "completion": None if self.completion is None else completion_to_json(self.completion),
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "Entry":
        completion = row.get("completion")
        return cls(
            key=row["key"],
            status=row["status"],
            request=row["request"],
            attempts=row["attempts"],
            started=row["started"],
            finished=row["finished"],
            completion=None if completion is None else completion_from_json(completion),
            served_model=row.get("served_model"),
            error=row.get("error"),
            attempts_recorded=row.get("attempts_recorded", False),
        )


def needs_sending(entry: Entry | None, resend_rejected: bool = False) -> bool:
    """Whether a request is still to be sent: never journaled, failed, or rejected by the
    server when `resend_rejected` (teacher.api.resend_rejected) asks for it again."""
    return entry is None or not (entry.ok or (entry.rejected and not resend_rejected))


def completion_to_json(completion: Completion) -> dict[str, Any]:
    """A `Completion` as plain JSON values; logprobs as [id, token, logprob, [[id, token, logprob], ...]]."""
    logprobs = None
    if completion.logprobs is not None:
        logprobs = [
            [t.token_id, t.token, t.logprob, [[a.token_id, a.token, a.logprob] for a in t.top]]
            for t in completion.logprobs
        ]
    return {
        "text": completion.text,
        "token_ids": None if completion.token_ids is None else list(completion.token_ids),
        "finish_reason": completion.finish_reason,
        "usage": [completion.usage.prompt_tokens, completion.usage.completion_tokens],
        "logprobs": logprobs,
    }


def completion_from_json(row: dict[str, Any]) -> Completion:
    logprobs = None
    if row.get("logprobs") is not None:
        logprobs = tuple(
            TokenLogprob(i, token, lp, tuple(TopLogprob(*alt) for alt in top))
            for i, token, lp, top in row["logprobs"]
        )
    ids = row.get("token_ids")
    return Completion(
        text=row["text"],
        token_ids=None if ids is None else tuple(ids),
        finish_reason=row["finish_reason"],
        usage=Usage(*row["usage"]),
        logprobs=logprobs,
    )


class Journal:
    """Append-only, fsync'd JSONL of `Entry`s with an index of the newest entry per key."""

    def __init__(self, path: Path, handle: Any, entries: dict[str, Entry], spent: Spent) -> None:
        self.path = path
        self._handle = handle
        self.entries = entries
        self.spent = spent
        """Every attempt journaled so far and the tokens of every success (all lines, not
        just the newest per key): what budget caps count against."""
        self._lock = threading.Lock()  # attempts are recorded from the teacher's own thread

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Journal":
        """Open (creating) the journal, lock it, cut a torn last line, read what it holds."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115 (kept open for the journal's life)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise JournalError(
                f"{path} is in use by another distil run; wait for it to finish, or stop it"
            ) from None
        try:
            entries, spent = _read_entries(path, handle)
        except BaseException:
            handle.close()
            raise
        return cls(path, handle, entries, spent)

    @staticmethod
    def read(path: str | os.PathLike[str]) -> tuple[dict[str, Entry], Spent]:
        """The newest entry per key and the totals, without locking or repairing (for a dry run)."""
        path = Path(path)
        if not path.is_file():
            return {}, Spent()
        with open(path, "rb") as handle:
            return _read_entries(path, handle, repair=False)

    def done(self, key: str) -> bool:
        """Whether the request succeeded already (failed or missing ones are sent again)."""
        entry = self.entries.get(key)
        return entry is not None and entry.ok

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def append(self, entry: Entry) -> None:
        """Write one entry as one line and fsync it before returning."""
        with self._lock:
            self._write(entry.to_json())
            self.entries[entry.key] = entry
            _count(self.spent, entry)

    def record_attempt(self, label: str) -> None:
        """Record one billed attempt (of the request keyed `label`, or a probe) before it is sent."""
        with self._lock:
            self._write({"attempt": label, "at": round(time.time(), 3)})
            self.spent.requests += 1

    def _write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
        append_whole(self._handle.fileno(), line.encode(), self.path, sync=True)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # releases the lock

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())


def _count(spent: Spent, entry: Entry) -> None:
    if not entry.attempts_recorded:  # older journals, and teachers without a budget ledger
        spent.requests += entry.attempts
    if entry.completion is not None:
        spent.prompt_tokens += entry.completion.usage.prompt_tokens
        spent.completion_tokens += entry.completion.usage.completion_tokens


def _read_entries(path: Path, handle: Any, repair: bool = True) -> tuple[dict[str, Entry], Spent]:
    handle.seek(0)
    data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]
    if repair and len(complete) < len(data):  # a line cut short by a kill: it was in flight
        handle.truncate(len(complete))
        handle.flush()
        os.fsync(handle.fileno())
    entries: dict[str, Entry] = {}
    spent = Spent()
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "attempt" in row:
                spent.requests += 1
                continue
            entry = Entry.from_json(row)
        except (ValueError, KeyError, TypeError) as err:
            raise JournalError(
                f"{path} line {number} is unreadable ({err}); it was not written by "
                "this toolkit: restore the file, or delete that line to send its "
                "request again"
            ) from None
        entries[entry.key] = entry
        _count(spent, entry)
    return entries, spent
