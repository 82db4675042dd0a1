"""What the report says, as renderer-neutral sections: text, tables, figures, code.

The Markdown and HTML renderers walk the same sections, so both always say the same.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distil.machine import is_busy, machine_line
from distil.report import plots

ABSOLUTE_PATH = re.compile(r"(?<![\w/:.~])/[\w.+@-]+(?:/[\w.+@-]+)+/?")
"""A POSIX absolute path (not the path part of a URL, nor a fraction like 8/2)."""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str
    png: bytes
    alt: str


@dataclass
class Code:
    text: str
    language: str = ""


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    items: list[Table | Figure | Code] = field(default_factory=list)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _perplexity(value: float | None) -> str:
    """Three decimals below 10: a teacher's 1.004 must not read as 1."""
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else _num(value)


def _times_the_tokens(ratio: float, whose: str) -> str:
    """'4.0x more tokens per second' from 1 up; '0.90x the teacher's tokens per second' below."""
    if ratio >= 1:
        return f"{ratio:.1f}x more tokens per second than {whose}"
    return f"{ratio:.2g}x {whose}'s tokens per second"


def shown_path(text: str, run_dir: str | Path) -> str:
    """`text` with absolute paths made relative to the run folder, or cut to their file name
    when outside it: a report is shared, and the machine's folders are nobody's business."""
    base = Path(run_dir).resolve()

    def relative(match: re.Match[str]) -> str:
        path = Path(match.group(0))
        try:
            return str(path.resolve().relative_to(base)) or "."
        except ValueError:
            return path.name or str(path)

    return ABSOLUTE_PATH.sub(relative, text)


def _bench_machine(ev: dict[str, Any]) -> dict[str, Any]:
    return (ev.get("efficiency_setup") or {}).get("machine") or {}


def busy_caveat(ev: dict[str, Any]) -> str | None:
    """The sentence warning that the speed figures were timed on a busy machine, if they were."""
    machine = _bench_machine(ev)
    before, after = machine.get("load_average_1m"), machine.get("load_average_1m_after")
    cores = machine.get("cpu_count")
    if not (is_busy(before, cores) or is_busy(after, cores)):
        return None
    return (f"Caveat: timed while the machine was busy (load average {before} before, {after} "
            f"after, on {cores} cores): other work shared the CPU, so speeds are low and noisy; "
            "rerun `distil bench` on an idle machine for figures to quote.")


def _bench_speed(ev: dict[str, Any], role: str) -> float | None:
    """`distil bench`'s batch-1 tokens/s of a role."""
    row = (ev.get("efficiency") or {}).get(role) or {}
    return row.get("tokens_per_s") or ev.get(role, {}).get("bench_tokens_per_s_batch1")


def build_sections(data: dict[str, Any]) -> list[Section]:
    """All sections the run's data supports, in reading order."""
    builders = [_summary, _quality, _efficiency, _comparison, _training, _parity, _examples,
                _data, _recipe]
    return [s for build in builders if (s := build(data)) is not None]


def _summary(data: dict[str, Any]) -> Section | None:
    ev = data["eval"]
    if not ev:
        return None
    teacher, student = ev.get("teacher", {}), ev.get("student", {})
    lines = []
    if "accuracy" in student:
        lines.append(f"The student answers **{_pct(student['accuracy'])}** of held-out prompts "
                     f"correctly; the teacher **{_pct(teacher.get('accuracy'))}**: retention "
                     f"**{_num(ev.get('retention'))}** (student / teacher accuracy).")
    size = _ratio(teacher.get("params"), student.get("params"))
    if size:
        lines.append(f"It has {size:.1f}x fewer parameters ({_num(student['params'])} vs "
                     f"{_num(teacher['params'])}).")
    student_speed, teacher_speed = _bench_speed(ev, "student"), _bench_speed(ev, "teacher")
    speed = _ratio(student_speed, teacher_speed)
    if speed:
        lines.append(f"It generates {_times_the_tokens(speed, 'the teacher')} on this CPU at "
                     f"batch 1 ({_num(student_speed)} vs {_num(teacher_speed)}).")
    edge = _fastest_export(ev, teacher_speed)
    if edge:
        lines.append(edge)
    caveat = busy_caveat(ev)
    if caveat and (speed or edge):
        lines.append(caveat)
    lines.append(f"Per held-out response token, KL(teacher‖student) is "
                 f"{_num(ev.get('kl_teacher_student'))} nats and the student's top-1 token agrees "
                 f"with the teacher's {_pct(ev.get('top1_agreement'))} of the time.")
    return Section("Summary", lines)


def _fastest_export(ev: dict[str, Any], teacher_speed: float | None) -> str | None:
    """The sentence on the fastest exported variant against the teacher, if one was timed."""
    exported = {name: row for name, row in (ev.get("efficiency") or {}).items()
                if name not in ("teacher", "student") and row.get("tokens_per_s")}
    if not exported or not teacher_speed:
        return None
    name, row = max(exported.items(), key=lambda item: item[1]["tokens_per_s"])
    ratio = row["tokens_per_s"] / teacher_speed
    times = f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2g}x"
    return (f"Exported as `{name}` ({row.get('runtime', 'onnxruntime')}, "
            f"{_num((row.get('bytes') or 0) / 1e6)} MB) it generates "
            f"{times} the teacher's tokens per second "
            f"({_num(row['tokens_per_s'])} vs {_num(teacher_speed)}).")


def _quality(data: dict[str, Any]) -> Section | None:
    ev = data["eval"]
    teacher, student = ev.get("teacher", {}), ev.get("student", {})
    if "accuracy_per_task" not in student:
        return None
    per_task = {"teacher": teacher["accuracy_per_task"], "student": student["accuracy_per_task"]}
    for name, variant in data["compare"].items():
        if "accuracy_per_task" in variant["eval"].get("student", {}):
            per_task[name] = variant["eval"]["student"]["accuracy_per_task"]
    tasks = [t for t in per_task["teacher"] if t != "overall"] + ["overall"]
    rows = [[t] + [_pct(scores.get(t)) for scores in per_task.values()] for t in tasks]
    table = Table(["task"] + list(per_task), rows,
                  f"Held-out accuracy, {ev.get('heldout_prompts', '?')} prompts, greedy decoding.")
    metrics = Table(["metric", "value"], [
        ["KL(teacher‖student) per token (nats)", _num(ev.get("kl_teacher_student"))],
        ["top-1 agreement with the teacher", _pct(ev.get("top1_agreement"))],
        ["student perplexity on held-out responses", _perplexity(student.get("perplexity"))],
        ["teacher perplexity on held-out responses", _perplexity(teacher.get("perplexity"))],
    ], "Teacher-forced on held-out responses.")
    figure = Figure("accuracy", plots.accuracy_by_task(per_task),
                    "Grouped bar chart of held-out accuracy per task for each model")
    return Section("Quality", [], [figure, table, metrics])


def efficiency_rows(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model (teacher, student, exported variants) with comparable measures."""
    rows = []
    for name, measured in (ev.get("efficiency") or {}).items():
        rows.append({"name": name, **measured})
    if not rows:
        for role in ("teacher", "student"):
            info = ev.get(role, {})
            rows.append({"name": role, "params": info.get("params"),
                         "tokens_per_s": _bench_speed(ev, role)})
    return rows


def _efficiency(data: dict[str, Any]) -> Section | None:
    rows = efficiency_rows(data["eval"])
    if not any(r.get("params") for r in rows):
        return None
    columns = [("params", "parameters", lambda v: _num(v)),
               ("bytes", "bytes on disk", lambda v: f"{v / 1e6:.2f} MB"),
               ("latency_ms_p50", "latency/token p50", lambda v: f"{v:.2f} ms"),
               ("tokens_per_s", "tokens/s (batch 1)", lambda v: _num(v)),
               ("peak_memory_bytes", "peak memory", lambda v: f"{v / 1e6:.0f} MB")]
    columns = [c for c in columns if any(r.get(c[0]) is not None for r in rows)]
    table = Table(["model"] + [c[1] for c in columns],
                  [[r["name"]] + [c[2](r[c[0]]) if r.get(c[0]) is not None else "–" for c in columns]
                   for r in rows],
                  "Measured by `distil bench` on this machine's CPU, one model at a time, greedy "
                  "generation at batch 1; see the bench section of the docs for the method.")
    figure = Figure("efficiency", plots.efficiency(rows),
                    "Bar charts of size, latency and speed per model")
    return Section("Efficiency", _measurement_notes(data["eval"]) + _untimed_gguf(data),
                   [table, figure])


def _untimed_gguf(data: dict[str, Any]) -> list[str]:
    """The note that deployable GGUF variants were not timed (llama.cpp was not installed)."""
    timed = set(data["eval"].get("efficiency") or {})
    names = [v["name"] for v in (data["parity"] or {}).get("variants", [])
             if v.get("passed") and v["name"].startswith("gguf-") and v["name"] not in timed]
    if not names:
        return []
    return [f"Not timed: {', '.join(names)} (GGUF runs through llama.cpp, and llama-cpp-python "
            "was not installed when the bench ran)."]


def _measurement_notes(ev: dict[str, Any]) -> list[str]:
    """What the figures were measured on, how busy it was, and the eval's own speed figure."""
    notes = []
    machine = _bench_machine(ev) or ev.get("machine")
    if machine:
        notes.append(f"Machine: {machine_line(machine)}.")
    caveat = busy_caveat(ev)
    if caveat:
        notes.append(caveat)
    teacher = ev.get("teacher", {}).get("eval_batched_greedy_tokens_per_s")
    student = ev.get("student", {}).get("eval_batched_greedy_tokens_per_s")
    if teacher and student:
        notes.append(f"A second speed figure, batched greedy generation of the held-out answers "
                     f"during eval: teacher {_num(teacher)}, student {_num(student)} tokens/s "
                     "(`eval_batched_greedy_tokens_per_s` in eval.json). It times batches of "
                     "prompts, padded, in the eval's own process, so it is not comparable "
                     "with the batch-1 figures above.")
    return notes


METHOD_LABELS = {
    "ground_truth": "ground truth only (no teacher)",
    "seq_kd": "sequence-level KD (teacher text, hard labels)",
    "logit_kd": "logit distillation (the run's objective)",
    "logit_kd_hidden": "logit distillation + hidden-state loss",
    "on_policy": "on-policy distillation (GKD mixing)",
    "on_policy_hidden": "on-policy + hidden-state loss",
}


def _comparison(data: dict[str, Any]) -> Section | None:
    summary = data.get("compare_summary")
    if not summary or not summary.get("methods"):
        return None
    seeds = [str(s) for s in summary["seeds"]]
    rows, per_task = [], {}
    for name, entry in summary["methods"].items():
        runs = entry["runs"]
        margin = entry.get("margin_over_seq_kd")
        rows.append([METHOD_LABELS.get(name, name),
                     " / ".join(_pct(runs[s]["accuracy"]) for s in seeds if s in runs),
                     _with_interval(entry.get("accuracy_mean"), entry.get("accuracy_interval")),
                     "–" if entry.get("retention") is None else f"{entry['retention']:.3f}",
                     "–" if margin is None else _with_interval(margin["mean"], margin["interval"],
                                                               signed=True),
                     _mean_seconds(runs)])
        per_task[name] = entry.get("per_task_mean", {})
    seconds = sum(r.get("seconds") or 0 for entry in summary["methods"].values()
                  for r in entry["runs"].values())
    text = [f"The same student, on the same training prompts for the same steps, by "
            f"{len(rows)} methods; seeds {', '.join(seeds)} ({seconds:,.0f} s of training and "
            "evaluation in all). Every method is evaluated on the same held-out prompts; the ± "
            "is a 95% t-interval over the seeds (training noise), and the margin is paired by "
            "seed."]
    text += _margin_verdicts(summary)
    noise = _noise_points(data["eval"])
    if noise is not None:
        text.append(f"Two standard errors of an accuracy difference on "
                    f"{data['eval']['heldout_prompts']} held-out prompts are about {noise:.1f} "
                    "points: the held-out sample's own noise, on top of the seeds'.")
    tables = [Table(["student trained with", "held-out accuracy by seed", "mean ± 95%",
                     "retention", "margin over seq-KD", "train + eval s / seed"], rows)]
    tasks = sorted({t for scores in per_task.values() for t in scores if t != "overall"})
    if tasks:
        tables.append(Table(["task"] + [METHOD_LABELS.get(n, n) for n in per_task],
                            [[t] + [_pct(scores.get(t)) for scores in per_task.values()]
                             for t in tasks], "Mean held-out accuracy per task over the seeds."))
    curve_text, curve_items = _data_efficiency(summary)
    return Section("Comparison", text + curve_text, [*tables, *curve_items])


def _data_efficiency(summary: dict[str, Any]) -> tuple[list[str], list[Table | Figure]]:
    """Text, figure and table (share of prompts x method) of the summary's data efficiency."""
    shares = summary.get("data_efficiency")
    if not shares:
        return [], []
    order = sorted(shares, key=float)
    methods = list(dict.fromkeys(m for share in order for m in shares[share]))
    points = {s: {m: shares[s].get(m) or {} for m in methods} for s in order}
    prompts = summary.get("fraction_prompts") or {}
    rows = [[f"{100 * float(s):g}%" + (f" ({prompts[s]:,} prompts)" if s in prompts else "")]
            + [_with_interval(p.get("mean"), p.get("interval")) for p in points[s].values()]
            for s in order]
    curves = {m: {float(s): (points[s][m]["mean"], points[s][m].get("interval")) for s in order
                  if points[s][m].get("mean") is not None} for m in methods}
    seconds = sum(r.get("seconds") or 0 for s in order if float(s) < 1
                  for p in points[s].values() for r in (p.get("runs") or {}).values())
    text = [f"Data efficiency (the figure and the last table): {', '.join(f'`{m}`' for m in methods)} "
            "again on shares of the run's training prompts (one seeded subset per share, the "
            "same for every method and seed), each for the run's steps, so fewer prompts means "
            f"more epochs; 100% is the comparison above ({seconds:,.0f} s of training and "
            "evaluation besides it)."]
    text += _share_margins(points)
    figure = Figure("data_efficiency", plots.data_efficiency(curves),
                    "Line chart of held-out accuracy against the share of training prompts, "
                    "one line per method, with 95% intervals")
    table = Table(["training prompts"] + [METHOD_LABELS.get(m, m) for m in methods], rows,
                  "Mean held-out accuracy (%) ± 95% t-interval over the seeds, per share of "
                  "the training prompts.")
    return text, [figure, table]


def _share_margins(points: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Per method, its paired margin over seq-KD at each share of the prompts."""
    lines = []
    for method in next(iter(points.values())):
        margins = [(s, by[method]["margin_over_seq_kd"]) for s, by in points.items()
                   if by[method].get("margin_over_seq_kd")]
        if margins:
            lines.append(f"{METHOD_LABELS.get(method, method)} against sequence-level KD, paired "
                         "by seed, in points: " + ", ".join(
                             f"{100 * float(s):g}% {_with_interval(m['mean'], m['interval'], True)}"
                             for s, m in margins) + ".")
    return lines


def _mean_seconds(runs: dict[str, Any]) -> str:
    seconds = [r["seconds"] for r in runs.values() if r.get("seconds") is not None]
    return f"{sum(seconds) / len(seconds):.0f}" if seconds else "–"


def _with_interval(mean: float | None, half: float | None, signed: bool = False) -> str:
    if mean is None:
        return "–"
    sign = "+" if signed else ""
    value = f"{100 * mean:{sign}.1f}"
    return f"{value} ± {100 * half:.1f}" if half is not None else value


def _margin_verdicts(summary: dict[str, Any]) -> list[str]:
    """One sentence per method whose paired margin over seq-KD has an interval."""
    verdicts = []
    for name, entry in summary["methods"].items():
        margin = entry.get("margin_over_seq_kd")
        if not margin or margin["interval"] is None:
            continue
        low, high = margin["mean"] - margin["interval"], margin["mean"] + margin["interval"]
        outcome = ("beats it" if low > 0 else "falls behind it" if high < 0
                   else "is level with it within the noise")
        verdicts.append(f"{METHOD_LABELS.get(name, name)} {outcome} "
                        f"({100 * margin['mean']:+.1f} ± {100 * margin['interval']:.1f} points).")
    return ["Against sequence-level KD: " + "; ".join(v.rstrip(".") for v in verdicts) + "."
            ] if verdicts else []


def _noise_points(ev: dict[str, Any]) -> float | None:
    """Two standard errors, in points, of the difference of two accuracies near the student's."""
    n, accuracy = ev.get("heldout_prompts"), ev.get("student", {}).get("accuracy")
    if not n or accuracy is None:
        return None
    return 100 * 2 * math.sqrt(2 * accuracy * (1 - accuracy) / n)


def _training(data: dict[str, Any]) -> Section | None:
    if not data["train_log"]:
        return None
    curves = {"student": data["train_log"]}
    for name, variant in data["compare"].items():
        curves[name] = variant["train_log"]
    summary = data["train_summary"]
    text = []
    if summary:
        text.append(f"{summary.get('steps')} optimizer steps over {_num(summary.get('tokens_seen'))} "
                    f"tokens in {summary.get('elapsed_s', 0):.0f} s "
                    f"({'fused-linear' if summary.get('fused') else 'dense'} loss path).")
    if len([log for log in curves.values() if log]) > 1:
        text.append("Losses of different objectives are on different scales; compare each "
                    "curve's shape.")
    else:
        text.append(f"One curve, one objective: the student's training loss{_objective(data)} "
                    "per optimizer step.")
    return Section("Training", text, [Figure("loss", plots.loss_curves(curves),
                                             "Training loss per optimizer step")])


def _objective(data: dict[str, Any]) -> str:
    """' (forward_kl, kd weight 1.0, ce weight 0.0)' from the recipe's distill section."""
    distill = data["recipe"].get("distill") or {}
    parts = [str(distill[k]) if k == "divergence" else f"{k.replace('_', ' ')} {distill[k]}"
             for k in ("divergence", "kd_weight", "ce_weight") if k in distill]
    return f" ({', '.join(parts)})" if parts else ""


def _parity(data: dict[str, Any]) -> Section | None:
    parity = data["parity"]
    if not parity:
        return None
    rows = []
    for variant in parity.get("variants", []):
        skipped = str(variant.get("runtime_check", "")).startswith("skipped")
        verdict = "pass" if variant.get("passed") else "**FAIL**"
        rows.append([variant.get("name", "?"), _num(variant.get("max_abs_logit_diff")),
                     _pct(variant.get("top1_agreement")), _pct(variant.get("accuracy")),
                     f"{verdict} (read back, not run)" if skipped else verdict])
    text = ["Exported files against the PyTorch student."]
    if any(str(v.get("runtime_check", "")).startswith("skipped") for v in parity.get("variants", [])):
        text.append("GGUF runtime check skipped: llama-cpp-python was not installed, so the GGUF "
                    "files were read back (names, shapes, metadata, dequantised weights against "
                    "PyTorch's) but not run through llama.cpp; see docs/export.md.")
    return Section("Export parity", text,
                   [Table(["variant", "max |Δlogit|", "top-1 agreement", "task accuracy", "check"],
                          rows)])


def _examples(data: dict[str, Any]) -> Section | None:
    samples = data["samples"]
    if not samples:
        return None
    shown, per_task = [], {}
    for row in samples:
        if per_task.get(row["task"], 0) < 2:
            per_task[row["task"]] = per_task.get(row["task"], 0) + 1
            shown.append(row)

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    rows = [[r["task"], r["prompt"], f"{mark(r['teacher_correct'])} {r['teacher']}",
             f"{mark(r['student_correct'])} {r['student']}"] for r in shown]
    return Section("Examples", ["Held-out prompts with both models' greedy answers."],
                   [Table(["task", "prompt", "teacher", "student"], rows)])


def _data(data: dict[str, Any]) -> Section | None:
    synth = data["synth"]
    if not synth:
        return None
    teacher, spent = synth.get("teacher", {}), synth.get("spent", {})
    responses = synth.get("responses", {})
    rejected = synth.get("rejected") or {}
    sources = (synth.get("prompts") or {}).get("sources") or {}
    rows = [
        ["teacher", f"{teacher.get('model', '?')} ({teacher.get('backend', '?')})"
                    + (f" at {teacher['endpoint']}" if teacher.get("endpoint") else "")],
        ["prompts", ", ".join(f"{name} {count:,}" for name, count in sources.items()) or "–"],
        ["responses kept", f"{responses.get('kept', 0):,} of {responses.get('requested', 0):,}"],
        ["rejected", ", ".join(f"{reason} {count:,}" for reason, count in rejected.items())
                     or "none"],
        ["sampling", ", ".join(f"{k} {v}" for k, v in (synth.get("sampling") or {}).items()
                               if v is not None and v is not False and v != [])],
        ["tokens", f"{spent.get('prompt_tokens', 0):,} prompt + "
                   f"{spent.get('completion_tokens', 0):,} completion in "
                   f"{spent.get('requests', 0):,} requests"],
    ]
    rows += [[key, str(synth[key])] for key in ("seed", "license", "stopped", "created",
                                                "toolkit_version") if synth.get(key) is not None]
    rows = [[what, shown_path(value, data["run_dir"])] for what, value in rows]
    return Section("Data", ["Prompts and teacher responses synthesised for this run (the "
                            "rows, with provenance, are in data/train.parquet; dropped ones "
                            "in data/rejects.jsonl)."], [Table(["what", "value"], rows)])


def _recipe(data: dict[str, Any]) -> Section | None:
    if not data["recipe_text"]:
        return None
    return Section("Recipe", ["The recipe this run used, every default spelled out (paths "
                              "relative to the run folder)."],
                   [Code(shown_path(data["recipe_text"], data["run_dir"]), "yaml")])
