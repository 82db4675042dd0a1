"""The report's comparison section (`distil run --compare`): the same student trained by
several methods over several seeds, each method's held-out accuracy, KL to the teacher,
perplexity and top-1 agreement as mean ± 95% interval, its paired margin over sequence-level
KD, and the data-efficiency curve."""

import math
from dataclasses import dataclass
from typing import Any

from distil.report import plots
from distil.report.document import Figure, Section, Table, pct, with_interval


@dataclass(frozen=True)
class Metric:
    """How one summarised metric is named and written."""

    key: str
    label: str
    column: str
    unit: str
    scale: float
    digits: int
    higher_is_better: bool


ACCURACY = Metric("accuracy", "Held-out accuracy", "accuracy (%)", "points", 100.0, 1, True)
FORCED = (
    Metric(
        "kl_teacher_student",
        "Held-out KL(teacher‖student)",
        "KL (nats/token)",
        "nats per token",
        1.0,
        3,
        False,
    ),
    Metric("perplexity", "Held-out perplexity", "perplexity", "", 1.0, 3, False),
    Metric(
        "top1_agreement", "Top-1 agreement with the teacher", "top-1 agreement (%)", "points", 100.0, 1, True
    ),
)
"""The teacher-forced figures on the held-out rows, summarised whether or not tasks are graded."""

METHOD_LABELS = {
    "ground_truth": "ground truth only (no teacher)",
    "seq_kd": "sequence-level KD (teacher text, hard labels)",
    "logit_kd": "logit distillation (the run's objective)",
    "logit_kd_ce": "logit distillation + cross-entropy on the teacher's text",
    "logit_kd_hidden": "logit distillation + hidden-state loss",
    "on_policy": "on-policy distillation (GKD mixing)",
    "on_policy_hidden": "on-policy + hidden-state loss",
}


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def comparison(data: dict[str, Any]) -> Section | None:
    summary = data.get("compare_summary")
    if not summary or not summary.get("methods"):
        return None
    methods = summary["methods"]
    seeds = [str(s) for s in summary["seeds"]]
    seconds = sum(r.get("seconds") or 0 for entry in methods.values() for r in entry["runs"].values())
    text = [
        f"The same student, on the same training prompts for the same steps, by "
        f"{len(methods)} methods; seeds {', '.join(seeds)} ({seconds:,.0f} s of training "
        "and evaluation in all). Every method is evaluated on the same held-out rows and "
        "prompts; the ± is a 95% t-interval over the seeds (training noise), and the "
        "margin is paired by seed."
    ]
    tables = []
    if any(entry.get(ACCURACY.key) for entry in methods.values()):
        tables.append(_accuracy_table(methods, seeds))
        text += _verdict(methods, ACCURACY)
        noise = _noise_points(data["eval"])
        if noise is not None:
            text.append(
                f"Two standard errors of an accuracy difference on "
                f"{data['eval']['heldout_prompts']} held-out prompts are about "
                f"{noise:.1f} points: the held-out sample's own noise, on top of the "
                "seeds'."
            )
    if any(entry.get(m.key) for entry in methods.values() for m in FORCED):
        tables.append(_forced_table(methods))
        for metric in FORCED:
            text += _verdict(methods, metric)
    tables += _per_task_table(methods)
    curve_text, curve_items = _data_efficiency(summary)
    return Section("Comparison", text + curve_text, [*tables, *curve_items])


def _cell(entry: dict[str, Any] | None, metric: Metric, margin: bool = False) -> str:
    """'mean ± half' of a summarised metric, or of its margin over seq-KD."""
    if entry is not None and margin:
        entry = entry.get("margin_over_seq_kd")
    if not entry:
        return "–"
    return with_interval(
        entry["mean"], entry["interval"], signed=margin, scale=metric.scale, digits=metric.digits
    )


def _accuracy_table(methods: dict[str, Any], seeds: list[str]) -> Table:
    rows = []
    for name, entry in methods.items():
        runs, accuracy = entry["runs"], entry.get(ACCURACY.key)
        rows.append(
            [
                _label(name),
                " / ".join(pct(runs[s].get("accuracy")) for s in seeds if s in runs),
                _cell(accuracy, ACCURACY),
                "–" if entry.get("retention") is None else f"{entry['retention']:.3f}",
                _cell(accuracy, ACCURACY, margin=True),
                _mean_seconds(runs),
            ]
        )
    return Table(
        [
            "student trained with",
            "held-out accuracy by seed",
            "mean ± 95%",
            "retention",
            "margin over seq-KD",
            "train + eval s / seed",
        ],
        rows,
    )


def _forced_table(methods: dict[str, Any]) -> Table:
    header = ["student trained with"]
    for metric in FORCED:
        header += [f"{metric.column}, mean ± 95%", "margin over seq-KD"]
    rows = [
        [_label(name)]
        + [
            cell
            for metric in FORCED
            for cell in (_cell(entry.get(metric.key), metric), _cell(entry.get(metric.key), metric, True))
        ]
        for name, entry in methods.items()
    ]
    return Table(
        header,
        rows,
        "Teacher-forced on the held-out rows; lower KL and perplexity are better, higher agreement is.",
    )


def _per_task_table(methods: dict[str, Any]) -> list[Table]:
    per_task = {name: entry.get("per_task_mean") or {} for name, entry in methods.items()}
    tasks = sorted({t for scores in per_task.values() for t in scores if t != "overall"})
    if not tasks:
        return []
    return [
        Table(
            ["task"] + [_label(n) for n in per_task],
            [[t] + [pct(scores.get(t)) for scores in per_task.values()] for t in tasks],
            "Mean held-out accuracy per task over the seeds.",
        )
    ]


def _verdict(methods: dict[str, Any], metric: Metric) -> list[str]:
    """One sentence: each method's paired margin over seq-KD on `metric`, when it has an
    interval, read as better, worse or level within the noise."""
    verdicts = []
    for name, entry in methods.items():
        margin = (entry.get(metric.key) or {}).get("margin_over_seq_kd")
        if not margin or margin["interval"] is None:
            continue
        low, high = margin["mean"] - margin["interval"], margin["mean"] + margin["interval"]
        gain, loss = (low > 0, high < 0) if metric.higher_is_better else (high < 0, low > 0)
        outcome = "better" if gain else "worse" if loss else "level within the noise"
        shown = with_interval(margin["mean"], margin["interval"], True, metric.scale, metric.digits)
        verdicts.append(f"{_label(name)} {outcome} ({shown})")
    if not verdicts:
        return []
    unit = f" ({metric.unit})" if metric.unit else ""
    return [f"{metric.label} against sequence-level KD, paired by seed{unit}: " + "; ".join(verdicts) + "."]


def _mean_seconds(runs: dict[str, Any]) -> str:
    seconds = [r["seconds"] for r in runs.values() if r.get("seconds") is not None]
    return f"{sum(seconds) / len(seconds):.0f}" if seconds else "–"


def _noise_points(ev: dict[str, Any]) -> float | None:
    """Two standard errors, in points, of the difference of two accuracies near the student's."""
    n, accuracy = ev.get("heldout_prompts"), ev.get("student", {}).get("accuracy")
    if not n or accuracy is None:
        return None
    return 100 * 2 * math.sqrt(2 * accuracy * (1 - accuracy) / n)


def _data_efficiency(summary: dict[str, Any]) -> tuple[list[str], list[Table | Figure]]:
    """Text, figure and table (share of prompts x method) of the summary's data efficiency."""
    shares = summary.get("data_efficiency")
    if not shares:
        return [], []
    order = sorted(shares, key=float)
    methods = list(dict.fromkeys(m for share in order for m in shares[share]))
    points = {s: {m: shares[s].get(m) or {} for m in methods} for s in order}
    prompts = summary.get("fraction_prompts") or {}
    rows = [
        [f"{100 * float(s):g}%" + (f" ({prompts[s]:,} prompts)" if s in prompts else "")]
        + [with_interval(p.get("mean"), p.get("interval")) for p in points[s].values()]
        for s in order
    ]
    curves = {
        m: {
            float(s): (points[s][m]["mean"], points[s][m].get("interval"))
            for s in order
            if points[s][m].get("mean") is not None
        }
        for m in methods
    }
    seconds = sum(
        r.get("seconds") or 0
        for s in order
        if float(s) < 1
        for p in points[s].values()
        for r in (p.get("runs") or {}).values()
    )
    text = [
        f"Data efficiency (the figure and the last table): {', '.join(f'`{m}`' for m in methods)} "
        "again on shares of the run's training prompts (one seeded subset per share, the "
        "same for every method and seed), each for the run's steps, so fewer prompts means "
        f"more epochs; 100% is the comparison above ({seconds:,.0f} s of training and "
        "evaluation besides it)."
    ]
    text += _share_margins(points)
    figure = Figure(
        "data_efficiency",
        plots.data_efficiency(curves),
        "Line chart of held-out accuracy against the share of training prompts, "
        "one line per method, with 95% intervals",
    )
    table = Table(
        ["training prompts"] + [_label(m) for m in methods],
        rows,
        "Mean held-out accuracy (%) ± 95% t-interval over the seeds, per share of the training prompts.",
    )
    return text, [figure, table]


def _share_margins(points: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Per method, its paired margin over seq-KD at each share of the prompts."""
    lines = []
    for method in next(iter(points.values())):
        margins = [
            (s, by[method]["margin_over_seq_kd"])
            for s, by in points.items()
            if by[method].get("margin_over_seq_kd")
        ]
        if margins:
            lines.append(
                f"{_label(method)} against sequence-level KD, paired by seed, in "
                "points: "
                + ", ".join(
                    f"{100 * float(s):g}% {with_interval(m['mean'], m['interval'], True)}" for s, m in margins
                )
                + "."
            )
    return lines
