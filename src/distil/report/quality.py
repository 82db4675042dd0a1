"""The report's quality sections: the summary, the models side by side on the held-out rows
(teacher, trained student, and the untrained student training started from), task accuracy
for the families the recipe evaluated, and what each model answers."""

from typing import Any

from distil.report import plots
from distil.report.document import (
    CELL_CHARS,
    Figure,
    Section,
    Table,
    Verbatim,
    clip,
    num,
    pct,
    perplexity,
    ratio,
)
from distil.report.speed import bench_speed, busy_caveat, fastest_export, interval_text, speedup

ROLES = {"teacher": "teacher", "student": "student", "untrained_student": "untrained student"}
"""eval.json's model roles and how the report names them."""


def _roles(ev: dict[str, Any]) -> list[str]:
    return [role for role in ROLES if ev.get(role)]


def _times_the_tokens(value: float, whose: str) -> str:
    """'4.0x more tokens per second' from 1 up; '0.90x the teacher's tokens per second' below."""
    if value >= 1:
        return f"{value:.1f}x more tokens per second than {whose}"
    return f"{value:.2g}x {whose}'s tokens per second"


def summary(data: dict[str, Any]) -> Section | None:
    ev = data["eval"]
    if not ev:
        return None
    teacher, student = ev.get("teacher", {}), ev.get("student", {})
    untrained = ev.get("untrained_student") or {}
    lines = []
    if "accuracy" in student:
        lines.append(
            f"The student answers **{pct(student['accuracy'])}** of held-out prompts "
            f"correctly; the teacher **{pct(teacher.get('accuracy'))}**: retention "
            f"**{num(ev.get('retention'))}** (student / teacher accuracy)."
            + (
                f" Before training it answered {pct(untrained['accuracy'])}."
                if "accuracy" in untrained
                else ""
            )
        )
    size = ratio(teacher.get("params"), student.get("params"))
    if size:
        lines.append(
            f"It has {size:.1f}x fewer parameters ({num(student['params'])} vs {num(teacher['params'])})."
        )
    speed = _speed_line(ev)
    if speed:
        lines.append(speed)
    edge = fastest_export(ev)
    if edge:
        lines.append(edge)
    caveat = busy_caveat(ev)
    if caveat and (speed or edge):
        lines.append(caveat)
    if ev.get("kl_teacher_student") is not None:
        lines.append(_agreement_line(ev, untrained))
    if student.get("perplexity") is not None:
        before = (
            f", {perplexity(untrained['perplexity'])} before training"
            if untrained.get("perplexity") is not None
            else ""
        )
        lines.append(
            f"Its perplexity on the held-out responses is "
            f"**{perplexity(student['perplexity'])}** (the teacher's "
            f"{perplexity(teacher.get('perplexity'))}{before})."
        )
    return Section("Summary", lines)


def _speed_line(ev: dict[str, Any]) -> str | None:
    found = speedup(ev, "student")
    if not found:
        return None
    spread = interval_text(found)
    return (
        f"It generates {_times_the_tokens(found['ratio'], 'the teacher')} on this CPU at "
        f"batch 1 ({num(bench_speed(ev, 'student'))} vs {num(bench_speed(ev, 'teacher'))}"
        + (f"; {spread}" if spread else "")
        + ")."
    )


def _agreement_line(ev: dict[str, Any], untrained: dict[str, Any]) -> str:
    kl_before = untrained.get("kl_teacher_student")
    agree_before = untrained.get("top1_agreement")
    return (
        f"Per held-out response token, KL(teacher‖student) is "
        f"{num(ev['kl_teacher_student'])} nats"
        + (f" ({num(kl_before)} before training)" if kl_before is not None else "")
        + f" and the student's top-1 token agrees with the teacher's "
        f"{pct(ev.get('top1_agreement'))} of the time"
        + (f" ({pct(agree_before)} before)" if agree_before is not None else "")
        + "."
    )


def quality(data: dict[str, Any]) -> Section | None:
    ev = data["eval"]
    if ev.get("student", {}).get("perplexity") is None and "accuracy_per_task" not in ev.get("student", {}):
        return None
    roles = _roles(ev)
    text = []
    if "untrained_student" in roles:
        text.append(
            "The untrained student is the recipe's student before any training (as "
            "initialised), measured on the same rows and prompts: what training added "
            "is the student's distance from it."
        )
    items: list[Table | Figure] = [_forced_table(ev, roles)]
    per_task = _per_task(data, roles)
    if per_task:
        tasks = [t for t in per_task["teacher"] if t != "overall"] + ["overall"]
        rows = [[t] + [pct(scores.get(t)) for scores in per_task.values()] for t in tasks]
        items += [
            Figure(
                "accuracy",
                plots.accuracy_by_task(per_task),
                "Grouped bar chart of held-out accuracy per task for each model",
            ),
            Table(
                ["task"] + [ROLES.get(n, n) for n in per_task],
                rows,
                f"Held-out accuracy, {ev.get('heldout_prompts', '?')} prompts of the "
                "task families the recipe evaluates, greedy decoding.",
            ),
        ]
    return Section("Quality", text, items)


def _forced_table(ev: dict[str, Any], roles: list[str]) -> Table:
    """Perplexity, KL and top-1 agreement of every model, side by side."""

    def against_teacher(role: str, key: str) -> float | None:
        if role == "teacher":  # the teacher against itself: nothing to say
            return None
        return ev.get(key) if role == "student" else ev[role].get(key)

    rows = [
        ["perplexity on held-out responses"] + [perplexity(ev[r].get("perplexity")) for r in roles],
        ["KL(teacher‖model) per token (nats)"]
        + [num(against_teacher(r, "kl_teacher_student")) for r in roles],
        ["top-1 agreement with the teacher"] + [pct(against_teacher(r, "top1_agreement")) for r in roles],
    ]
    counted = (
        f" ({num(ev['samples'])} rows, {num(ev['tokens'])} response tokens)"
        if ev.get("samples") and ev.get("tokens")
        else ""
    )
    return Table(
        ["metric"] + [ROLES[r] for r in roles],
        rows,
        f"Teacher-forced on the held-out rows{counted}: lower perplexity and KL are better.",
    )


def _per_task(data: dict[str, Any], roles: list[str]) -> dict[str, dict[str, float]]:
    """Accuracy per task family of each model and compared variant, when tasks were graded."""
    ev = data["eval"]
    per_task = {role: ev[role]["accuracy_per_task"] for role in roles if "accuracy_per_task" in ev[role]}
    if "teacher" not in per_task or "student" not in per_task:
        return {}
    for name, variant in data["compare"].items():
        if "accuracy_per_task" in variant["eval"].get("student", {}):
            per_task[name] = variant["eval"]["student"]["accuracy_per_task"]
    return per_task


def sample_answers(data: dict[str, Any]) -> Section | None:
    rows = data["eval"].get("sample_answers") or []
    if not rows:
        return None
    roles = [r for r in ROLES if r in rows[0]]
    cells = [[clip(row["prompt"])] + [clip(row[role]) for role in roles] for row in rows]
    return Section(
        "Sample answers",
        [
            f"Greedy answers of each model to the first {len(rows)} held-out prompts, as "
            f"generated (cut at {CELL_CHARS} characters; whole in eval.json's `sample_answers`, "
            "with each row's own response)."
        ],
        [Table(["prompt"] + [ROLES[r] for r in roles], cells)],
    )


def graded_examples(data: dict[str, Any]) -> Section | None:
    samples = data["samples"]
    if not samples:
        return None
    shown, per_task = [], {}
    for row in samples:
        if per_task.get(row["task"], 0) < 2:
            per_task[row["task"]] = per_task.get(row["task"], 0) + 1
            shown.append(row)
    roles = [r for r in ROLES if r in samples[0]]

    def graded(row: dict[str, Any], role: str) -> Verbatim:
        return Verbatim(f"{'✓' if row[f'{role}_correct'] else '✗'} {clip(row[role])}")

    rows = [[r["task"], clip(r["prompt"])] + [graded(r, role) for role in roles] for r in shown]
    return Section(
        "Examples",
        ["Held-out task prompts with each model's greedy answer, graded by the family's checker."],
        [Table(["task", "prompt"] + [ROLES[r] for r in roles], rows)],
    )
