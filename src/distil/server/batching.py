"""Dynamic batching: concurrent requests become one batched model call, on one worker thread.

    batcher = Batcher(teacher, max_batch_size=16, wait_s=0.005, max_pending=1024)
    batcher.start()
    completion = await batcher.generate(prompt_ids, sampling)     # from any coroutine

Requests are queued; the worker takes the first, waits up to `wait_s` for others (or until
`max_batch_size` have come), groups them by sampling parameters and runs one
`LocalTeacher.generate_ids` per group. Requests that differ only in how many logprobs they
want share a group (the group asks for the most, each gets its own top-k back). A sampled
request with a seed runs alone, so that its seed alone decides its output. The model runs
only on the worker thread, so the event loop stays free to accept and answer requests.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from distil.teachers import Completion, LocalTeacher, Sampling, TokenLogprob

log = logging.getLogger("distil.server")


class Overloaded(Exception):
    """More requests are waiting than the server accepts; the client should retry later."""


@dataclass(eq=False)  # hashed by identity: a job can be its own group
class _Generate:
    prompt_ids: Sequence[int]
    sampling: Sampling
    future: Future = field(default_factory=Future)

    def batch_sampling(self) -> Sampling:
        """The sampling this job shares a batch under (the batch asks for the most logprobs)."""
        sampling = replace(self.sampling, logprobs=False, top_logprobs=0)
        if sampling.temperature == 0:  # greedy: seed and top_p change nothing
            sampling = replace(sampling, seed=None, top_p=1.0)
        return sampling

    def group(self) -> object:
        if self.sampling.temperature > 0 and self.sampling.seed is not None:
            return self  # alone: a seeded sample must not depend on its batch neighbours
        return self.batch_sampling()


@dataclass(eq=False)
class _Score:
    prompt_ids: Sequence[int]
    completion_ids: Sequence[int]
    top_logprobs: int
    future: Future = field(default_factory=Future)

    def group(self) -> object:
        return self


@dataclass
class BatchStats:
    """What the worker has done; written by the worker thread only."""

    model_calls: int = 0
    """Batched generation calls plus scoring calls."""
    generated: int = 0
    """Prompts generated for."""
    scored: int = 0
    largest_batch: int = 0


class Batcher:
    """Queues generation and scoring jobs and runs them, batched, on one worker thread."""

    def __init__(
        self, teacher: LocalTeacher, *, max_batch_size: int, wait_s: float, max_pending: int
    ) -> None:
        self.teacher = teacher
        self.max_batch_size, self.wait_s, self.max_pending = max_batch_size, wait_s, max_pending
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="distil-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs already queued, then end the worker."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling) -> Completion:
        (completion,) = await self.generate_many([prompt_ids], sampling)
        return completion

    async def generate_many(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Completion]:
        """One completion per prompt; submitted together, so they can share a batch."""
        jobs = [_Generate(ids, sampling) for ids in prompts]
        return list(await asyncio.gather(*self._submit(jobs)))

    async def score(
        self, prompt_ids: Sequence[int], completion_ids: Sequence[int], top_logprobs: int
    ) -> list[TokenLogprob]:
        (pending,) = self._submit([_Score(prompt_ids, completion_ids, top_logprobs)])
        return await pending

    def _submit(self, jobs: list) -> list[asyncio.Future]:
        with self._lock:
            if self._pending + len(jobs) > self.max_pending:
                raise Overloaded(f"{self._pending} requests are already waiting")
            self._pending += len(jobs)
        for job in jobs:
            job.future.add_done_callback(self._release)
            self._queue.put(job)
        return [asyncio.wrap_future(job.future) for job in jobs]

    def _release(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._collect(first)
            groups: dict[object, list] = {}
            for job in jobs:
                if job.future.set_running_or_notify_cancel():  # False: its client gave up
                    groups.setdefault(job.group(), []).append(job)
            for group in groups.values():
                self._execute(group)
            if stopping:
                return

    def _collect(self, first: object) -> tuple[list, bool]:
        """The first job and those that arrive within `wait_s`, up to `max_batch_size`."""
        jobs, deadline = [first], time.monotonic() + self.wait_s
        while len(jobs) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _execute(self, jobs: list) -> None:
        try:
            if isinstance(jobs[0], _Score):
                (job,) = jobs
                results = [self.teacher.score_ids(job.prompt_ids, job.completion_ids, job.top_logprobs)]
                self.stats.scored += 1
            else:
                results = self._generate(jobs)
            self.stats.model_calls += 1
        except Exception as err:  # answered to each client as a server error
            log.exception("model call failed")
            for job in jobs:
                job.future.set_exception(err)
            return
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)

    def _generate(self, jobs: list[_Generate]) -> list[Completion]:
        wanted = [job.sampling.top_logprobs for job in jobs]
        sampling = replace(
            jobs[0].batch_sampling(),
            top_logprobs=max(wanted),
            logprobs=any(job.sampling.logprobs for job in jobs),
        )
        completions = self.teacher.generate_ids([job.prompt_ids for job in jobs], sampling)
        self.stats.generated += len(jobs)
        self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
        return [
            _own_logprobs(completion, job.sampling) for completion, job in zip(completions, jobs, strict=True)
        ]


def _own_logprobs(completion: Completion, sampling: Sampling) -> Completion:
    """Trim a completion made for its whole group to the logprobs its own request asked for."""
    if completion.logprobs is None:
        return completion
    if not (sampling.logprobs or sampling.top_logprobs):
        return replace(completion, logprobs=None)
    k = sampling.top_logprobs
    return replace(
        completion, logprobs=tuple(replace(entry, top=entry.top[:k]) for entry in completion.logprobs)
    )
