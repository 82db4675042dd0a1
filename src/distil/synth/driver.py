"""Send the requests the journal lacks, journaling each one as soon as it finishes.

    requests = [make_request(endpoint, model, messages, sampling) for ...]
    report = send_missing(teacher, requests, journal, label="responses")

A teacher that runs requests concurrently (`ConcurrentTeacher`, e.g. the API teacher) is
fed a window of twice its concurrency; each finished request is journaled at once, so a
kill loses only those in flight. Other teachers (the local model) answer in batches of
`batch_size`, journaled batch by batch. A budget cap stops the sending cleanly: requests in
flight finish and are journaled, and the cap's error is returned for the stage to report.
A request the server rejected as invalid in an earlier run is not sent again (it would be
rejected again) unless `resend_rejected`; the pass says how many and why.
"""

import concurrent.futures
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from distil.progress import console, progress_bar
from distil.teachers.base import Sampling, Teacher, TeacherError
from distil.teachers.budget import BudgetExhaustedError
from distil.teachers.journal import Entry, Journal, needs_sending, request_key
from distil.teachers.outcome import ConcurrentTeacher, Outcome


@dataclass(frozen=True)
class Request:
    """One request to the teacher and its journal key."""

    key: str
    endpoint: str
    model: str
    messages: tuple[tuple[tuple[str, str], ...], ...]
    """The chat, hashable: ((("content", "..."), ("role", "user")), ...)."""
    sampling: Sampling

    @property
    def chat(self) -> list[dict[str, str]]:
        return [dict(message) for message in self.messages]


def make_request(
    endpoint: str, model: str, messages: Sequence[dict[str, str]], sampling: Sampling
) -> Request:
    """A request keyed by (endpoint, model, messages, sampling, seed)."""
    key = request_key(endpoint, model, messages, sampling.as_dict(), sampling.seed)
    return Request(key, endpoint, model, tuple(tuple(sorted(m.items())) for m in messages), sampling)


def request_record(request: Request) -> dict[str, Any]:
    """The journal's copy of a request: endpoint, model, messages, sampling, seed."""
    return {
        "endpoint": request.endpoint,
        "model": request.model,
        "messages": request.chat,
        "sampling": {k: v for k, v in request.sampling.as_dict().items() if k != "seed"},
        "seed": request.sampling.seed,
    }


@dataclass
class SendReport:
    """What one pass sent: answered, failed (journaled with their cause), and a budget stop."""

    to_send: int = 0
    ok: int = 0
    failed: int = 0
    stopped: BudgetExhaustedError | None = None


def send_missing(
    teacher: Teacher,
    requests: Sequence[Request],
    journal: Journal,
    label: str,
    batch_size: int = 16,
    resend_rejected: bool = False,
) -> SendReport:
    """Send every request the journal has no answer for (see `needs_sending`), journaling
    each as it finishes."""
    unique = list(dict.fromkeys(requests))
    todo = [r for r in unique if needs_sending(journal.get(r.key), resend_rejected)]
    held = (
        [] if resend_rejected else [e for r in unique if (e := journal.get(r.key)) is not None and e.rejected]
    )
    report = SendReport(to_send=len(todo))
    console.print(
        f"{label}: {len(unique)} requests, {len(unique) - len(todo) - len(held)} answered "
        f"in the journal already, {len(todo)} to send",
        highlight=False,
    )
    if held:
        console.print(_held_back(held, journal), highlight=False, soft_wrap=True)
    if not todo:
        return report
    with progress_bar("ok", "failed") as bar:
        task = bar.add_task(label, total=len(todo), ok=0, failed=0)

        def record(request: Request, outcome: Outcome) -> None:
            entry = _entry(request, outcome)
            journal.append(entry)
            report.ok += entry.ok
            report.failed += not entry.ok
            bar.update(task, advance=1, ok=report.ok, failed=report.failed)

        if isinstance(teacher, ConcurrentTeacher):
            report.stopped = _concurrently(teacher, todo, record)
        else:
            _in_batches(teacher, todo, record, batch_size)
    return report


def _held_back(held: list[Entry], journal: Journal) -> str:
    """Why requests are not sent, where they are, and how to send them."""
    one = len(held) == 1
    return (
        f"{len(held)} request{'' if one else 's'} the server rejected as invalid in an earlier "
        f"run {'is' if one else 'are'} not sent again (first: {held[0].error}); "
        f"{'it is' if one else 'they are'} in {journal.path} (status rejected) and in the "
        "rejects file; once the cause is fixed, rerun with teacher.api.resend_rejected=true "
        "to send them again"
    )


def _entry(request: Request, outcome: Outcome) -> Entry:
    status = "ok" if outcome.completion is not None else "rejected" if outcome.rejected else "failed"
    return Entry(
        key=request.key,
        status=status,
        request=request_record(request),
        attempts=outcome.attempts,
        started=outcome.started,
        finished=outcome.finished,
        completion=outcome.completion,
        served_model=outcome.served_model,
        error=outcome.error,
        attempts_recorded=outcome.attempts_recorded,
    )


def _concurrently(
    teacher: ConcurrentTeacher, todo: list[Request], record: Any
) -> BudgetExhaustedError | None:
    window = 2 * teacher.concurrency
    pending: dict[concurrent.futures.Future[Outcome], Request] = {}
    queue = iter(todo)
    stopped: BudgetExhaustedError | None = None
    fatal: TeacherError | None = None
    try:
        while fatal is None:
            while stopped is None and len(pending) < window and (request := next(queue, None)):
                pending[teacher.submit(request.chat, request.sampling, request.key)] = request
            if not pending:
                break
            done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                request = pending.pop(future)
                try:
                    record(request, future.result())
                except BudgetExhaustedError as err:
                    stopped = stopped or err
                except TeacherError as err:  # no retry can fix it: stop after journaling the rest
                    fatal = fatal or err
    finally:
        for future in pending:
            future.cancel()
    if fatal is not None:
        raise fatal
    return stopped


def _in_batches(teacher: Teacher, todo: list[Request], record: Any, batch_size: int) -> None:
    """Generate `todo` in batches of requests that sample alike but for their seeds: a batch
    is drawn under its first request's seed (self-instruct gives every expansion its own seed,
    so grouping by seed too answered them one at a time)."""
    groups: dict[Sampling, list[Request]] = {}
    for request in todo:
        groups.setdefault(replace(request.sampling, seed=None), []).append(request)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            began = time.time()
            completions = teacher.generate([r.chat for r in chunk], chunk[0].sampling)
            finished = time.time()
            for request, completion in zip(chunk, completions, strict=True):
                record(
                    request, Outcome(completion, None, 1, began, finished, teacher.describe().get("model"))
                )
