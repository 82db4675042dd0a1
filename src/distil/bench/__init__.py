"""Efficiency benchmark: parameters, size on disk, peak memory, latency and tokens/s.

    from distil.bench import BenchSection, bench_run

    bench_run("runs/demo", BenchSection(new_tokens=32, repeats=3))   # eval.json["efficiency"]

Methodology (docs/export.md): each model runs in a fresh interpreter of its own, greedy, on
the same held-out prompts at each batch size; the models take turns, warm-up rounds before
the timed ones, so that teacher and student are timed under the same load. Importing this
package does not import PyTorch.
"""

from distil.bench.run import (
    BenchError,
    BenchSection,
    BenchTarget,
    bench_models,
    bench_run,
    find_targets,
    make_bench_config,
    write_efficiency,
)
from distil.bench.stats import latency_summary

__all__ = [
    "BenchSection",
    "BenchError",
    "BenchTarget",
    "bench_models",
    "bench_run",
    "find_targets",
    "latency_summary",
    "make_bench_config",
    "write_efficiency",
]
