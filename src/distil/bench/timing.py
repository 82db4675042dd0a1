"""The bench's timing loop: one worker process per model, the models taking turns.

    workers = [Worker(target, spec, folder, timeout_s) for target in targets]
    runs = interleaved_runs(workers, config, on_run)     # model -> batch -> [timed run]
    speedups(runs)                                         # model -> batch -> ratio, interval

Timing the teacher first and the student minutes later let a change of load between them
skew their ratio several-fold. Here every round runs each model once, in alternating
order, so both see the same load, and each model's speed over the teacher's is taken
round by round, with its interval.
"""

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from distil.bench.stats import paired_speedup
from distil.errors import DistilError
from distil.recipe import BenchSection


class BenchError(DistilError):
    """A model cannot be benchmarked, or a run folder lacks what the benchmark needs."""


class Worker:
    """One model's worker process (`distil.bench.worker`): loaded once, then asked for one
    timed generation at a time. Waiting on it may take `timeout_s` in all, loading included."""

    def __init__(self, target: Any, spec: dict[str, Any], folder: Path, timeout_s: float) -> None:
        self.target, self.budget = target, timeout_s
        index = len(list(folder.glob("spec-*.json")))
        spec_path, self.stderr = folder / f"spec-{index}.json", folder / f"stderr-{index}.txt"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
        with self.stderr.open("wb") as stderr:  # the child holds its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "distil.bench.worker", str(spec_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        self.requests = cast(IO[bytes], self.process.stdin)
        self.replies = cast(IO[bytes], self.process.stdout)
        try:
            self.header = self._read()
        except BaseException:
            self.close()
            raise

    def time(self, batch: int) -> list[float]:
        """One timed generation of `batch` sequences: [t_1, ..., t_N] (s)."""
        self.requests.write(json.dumps({"batch": batch}).encode() + b"\n")
        self.requests.flush()
        return self._read()["stamps"]

    def finish(self) -> dict[str, Any]:
        """Close its input; its last words (peak memory, whether torch was imported)."""
        self.requests.close()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def _read(self) -> dict[str, Any]:
        started = time.monotonic()
        ready, _, _ = select.select([self.replies], [], [], max(self.budget, 0.0))
        self.budget -= time.monotonic() - started
        if not ready:
            raise BenchError(
                f"timing {self.target.name} took over its time limit; lower "
                "--new-tokens / --repeats or raise the timeout"
            )
        line = self.replies.readline()
        if not line:
            self.process.wait()
            lines = [x for x in self.stderr.read_text(errors="replace").splitlines() if x.strip()]
            raise BenchError(
                f"timing {self.target.name} ({self.target.model}) failed: "
                f"{lines[-1] if lines else f'exit status {self.process.returncode}'}"
            )
        return json.loads(line)


def able_workers(workers: list[Worker], batch: int) -> list[Worker]:
    """The workers that can run a batch of this size (llama.cpp's: one sequence)."""
    return [w for w in workers if w.header["max_batch"] is None or batch <= w.header["max_batch"]]


def interleaved_runs(
    workers: list[Any], config: BenchSection, on_run: Callable[[Any], None]
) -> dict[str, dict[str, list[list[float]]]]:
    """Timed runs, model -> batch size -> [run per timed round]: per batch size, rounds in
    which every worker able to runs once, forward then backward (T S V, V S T, ...); the
    first `config.warmup` rounds are not kept. `on_run(worker)` follows each run."""
    runs: dict[str, dict[str, list[list[float]]]] = {w.target.name: {} for w in workers}
    for batch in config.batch_sizes:
        able = able_workers(workers, batch)
        for index in range(config.warmup + config.repeats):
            for worker in able if index % 2 == 0 else able[::-1]:
                stamps = worker.time(batch)
                if index >= config.warmup:
                    runs[worker.target.name].setdefault(str(batch), []).append(stamps)
                on_run(worker)
    return runs


def speedups(
    runs: dict[str, dict[str, list[list[float]]]], reference: str = "teacher"
) -> dict[str, dict[str, dict[str, Any]]]:
    """Each model's tokens/s over the reference's per batch size, from runs paired by round
    (`distil.bench.stats.paired_speedup`: geometric mean, 95% interval, the ratios)."""
    if reference not in runs:
        return {}
    base = runs[reference]
    return {
        name: {b: paired_speedup(timed, base[b]) for b, timed in by_batch.items() if b in base}
        for name, by_batch in runs.items()
        if name != reference
    }
