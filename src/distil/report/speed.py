"""The report's efficiency figures: what `distil bench` measured (size, memory, latency,
tokens/s), each model's speed against the teacher's with its interval, and on what machine.
"""

from typing import Any

from distil.machine import is_busy, machine_line
from distil.report import plots
from distil.report.document import Figure, Section, Table, num


def bench_machine(ev: dict[str, Any]) -> dict[str, Any]:
    return (ev.get("efficiency_setup") or {}).get("machine") or {}


def busy_caveat(ev: dict[str, Any]) -> str | None:
    """The sentence warning that the speed figures were timed on a busy machine, if they were."""
    machine = bench_machine(ev)
    before, after = machine.get("load_average_1m"), machine.get("load_average_1m_after")
    cores = machine.get("cpu_count")
    if not (is_busy(before, cores) or is_busy(after, cores)):
        return None
    return (
        f"Caveat: timed while the machine was busy (load average {before} before, {after} "
        f"after, on {cores} cores): other work shared the CPU, so speeds are low and noisy; "
        "rerun `distil bench` on an idle machine for figures to quote."
    )


def bench_speed(ev: dict[str, Any], name: str) -> float | None:
    """`distil bench`'s batch-1 tokens/s of a model."""
    return ((ev.get("efficiency") or {}).get(name) or {}).get("tokens_per_s")


def speedup(ev: dict[str, Any], name: str, batch: str = "1") -> dict[str, Any] | None:
    """`name`'s tokens/s over the teacher's at `batch`: the bench's {ratio, low, high, pairs}
    from interleaved runs, or (a bench that timed models one after another) the ratio of
    the two medians, without an interval."""
    row = (ev.get("efficiency") or {}).get(name) or {}
    paired = (row.get("speedup_vs_teacher") or {}).get(batch)
    if isinstance(paired, dict):
        return paired
    teacher = bench_speed(ev, "teacher")
    if name == "teacher" or not teacher or not row.get("tokens_per_s"):
        return None
    return {"ratio": row["tokens_per_s"] / teacher, "low": None, "high": None, "pairs": None}


def times(value: float) -> str:
    return f"{value:.1f}x" if value >= 1 else f"{value:.2g}x"


def interval_text(found: dict[str, Any]) -> str:
    """'95% interval 3.8x–4.2x over 3 interleaved pairs', or '' without an interval."""
    if found.get("low") is None:
        return ""
    return (
        f"95% interval {times(found['low'])}–{times(found['high'])} over {found['pairs']} interleaved pairs"
    )


def fastest_export(ev: dict[str, Any]) -> str | None:
    """The sentence on the fastest exported variant against the teacher, if one was timed."""
    exported = {
        name: row
        for name, row in (ev.get("efficiency") or {}).items()
        if name not in ("teacher", "student") and row.get("tokens_per_s")
    }
    teacher_speed = bench_speed(ev, "teacher")
    if not exported or not teacher_speed:
        return None
    name, row = max(exported.items(), key=lambda item: item[1]["tokens_per_s"])
    found = speedup(ev, name) or {"ratio": row["tokens_per_s"] / teacher_speed}
    spread = interval_text(found)
    return (
        f"Exported as `{name}` ({row.get('runtime', 'onnxruntime')}, "
        f"{num((row.get('bytes') or 0) / 1e6)} MB) it generates "
        f"{times(found['ratio'])} the teacher's tokens per second "
        f"({num(row['tokens_per_s'])} vs {num(teacher_speed)}" + (f"; {spread}" if spread else "") + ")."
    )


def efficiency_rows(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model (teacher, student, exported variants) with comparable measures;
    without a bench, the parameters eval counted."""
    rows = [{"name": name, **measured} for name, measured in (ev.get("efficiency") or {}).items()]
    if not rows:
        rows = [{"name": role, "params": ev.get(role, {}).get("params")} for role in ("teacher", "student")]
    return rows


COLUMNS = [
    ("params", "parameters", lambda v: num(v)),
    ("bytes", "bytes on disk", lambda v: f"{v / 1e6:.2f} MB"),
    ("latency_ms_p50", "latency/token p50", lambda v: f"{v:.2f} ms"),
    ("tokens_per_s", "tokens/s (batch 1)", lambda v: num(v)),
    ("peak_memory_bytes", "peak memory", lambda v: f"{v / 1e6:.0f} MB"),
]


def efficiency(data: dict[str, Any]) -> Section | None:
    ev = data["eval"]
    rows = efficiency_rows(ev)
    if not any(r.get("params") for r in rows):
        return None
    columns = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    header = ["model"] + [c[1] for c in columns]
    cells = [[r["name"]] + [c[2](r[c[0]]) if r.get(c[0]) is not None else "–" for c in columns] for r in rows]
    if any(speedup(ev, r["name"]) for r in rows):
        header.append("× teacher's tokens/s (95% interval)")
        for row, line in zip(rows, cells, strict=True):
            line.append(_speedup_cell(speedup(ev, row["name"])))
    table = Table(
        header,
        cells,
        "Measured by `distil bench` on this machine's CPU, greedy generation at batch "
        "1, each model in its own process; see the bench section of the docs for the "
        "method.",
    )
    figure = Figure("efficiency", plots.efficiency(rows), "Bar charts of size, latency and speed per model")
    return Section("Efficiency", _measurement_notes(ev) + _not_timed(ev), [table, figure])


def _speedup_cell(found: dict[str, Any] | None) -> str:
    if not found:
        return "–"
    if found.get("low") is None:
        return times(found["ratio"])
    return f"{times(found['ratio'])} ({times(found['low'])}–{times(found['high'])})"


def _not_timed(ev: dict[str, Any]) -> list[str]:
    """The note on deployable variants the bench could not time, and why (their runtime)."""
    skipped = (ev.get("efficiency_setup") or {}).get("not_timed") or {}
    if not skipped:
        return []
    return [
        "Not timed: "
        + ", ".join(f"{name} (when the bench ran, {reason})" for name, reason in skipped.items())
        + "."
    ]


def _measurement_notes(ev: dict[str, Any]) -> list[str]:
    """What the figures were measured on, how busy it was, how speeds were compared, and the
    eval's own speed figure."""
    notes = []
    machine = bench_machine(ev) or ev.get("machine")
    if machine:
        notes.append(f"Machine: {machine_line(machine)}.")
    caveat = busy_caveat(ev)
    if caveat:
        notes.append(caveat)
    if any(
        isinstance(v, dict)
        for row in (ev.get("efficiency") or {}).values()
        for v in (row.get("speedup_vs_teacher") or {}).values()
    ):
        notes.append(
            "The models took turns, one timed run each, in alternating order, so a "
            "change of load hits teacher and student alike; each speed ratio is the "
            "geometric mean of the per-round ratios with its 95% t-interval."
        )
    teacher = ev.get("teacher", {}).get("eval_batched_greedy_tokens_per_s")
    student = ev.get("student", {}).get("eval_batched_greedy_tokens_per_s")
    if teacher and student:
        notes.append(
            f"A second speed figure, batched greedy generation of the held-out answers "
            f"during eval: teacher {num(teacher)}, student {num(student)} tokens/s "
            "(`eval_batched_greedy_tokens_per_s` in eval.json). It times batches of "
            "prompts, padded, in the eval's own process, so it is not comparable "
            "with the batch-1 figures above."
        )
    return notes
