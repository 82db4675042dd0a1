"""The run report: report.md (+ figure files) and a self-contained report.html.

    distil report runs/demo

Reads whatever the run folder holds (eval.json, train_log.jsonl, eval_samples.jsonl,
export/parity.json, compare/*, recipe.yaml) and says it twice, in Markdown and in HTML.
"""

import time
from pathlib import Path

from distil.errors import DistilError
from distil.fsutil import atomic_write_text
from distil.report.collect import collect
from distil.report.document import shown_path
from distil.report.render import html_page, markdown
from distil.report.sections import build_sections
from distil.report.speed import speedup, times


def build_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write RUN/report.md and RUN/report.html; return their paths."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DistilError(
            f"run folder not found: {run_dir}; pass a folder that `distil run` or `distil train` wrote"
        )
    data = collect(run_dir)
    if not data["eval"] and not data["train_log"]:
        raise DistilError(
            f"{run_dir} has neither eval.json nor train_log.jsonl: nothing to "
            "report yet; run `distil train` and `distil eval` first"
        )
    sections = build_sections(data)
    name = data["recipe"].get("name") or run_dir.name
    title = f"Distillation report: {name}"
    teacher = data["recipe"].get("teacher", {}).get("model", "?")
    student_spec = data["recipe"].get("student", {})
    student = student_spec.get("model", "?")
    if student_spec.get("layers"):
        student += f" (layers {', '.join(map(str, student_spec['layers']))})"
    folder = run_dir.name if run_dir.is_absolute() else str(run_dir)
    subtitle = shown_path(
        f"Teacher `{teacher}` → student `{student}` · run folder {folder} · "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        run_dir,
    )
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    atomic_write_text(md_path, markdown(title, subtitle, sections, run_dir / "report_files"))
    atomic_write_text(html_path, html_page(title, subtitle, sections))
    return md_path, html_path


def headline(run_dir: str | Path) -> list[str]:
    """The run's main figures in a few plain lines (what `distil run` prints at the end)."""
    import json

    run_dir = Path(run_dir)
    try:
        ev = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        return []
    teacher, student = ev.get("teacher", {}), ev.get("student", {})
    lines = []
    if "accuracy" in student and "accuracy" in teacher:
        lines.append(
            f"held-out accuracy: student {student['accuracy']:.1%}, teacher "
            f"{teacher['accuracy']:.1%} (retention {ev.get('retention', 0):.3f})"
        )
    if student.get("params") and teacher.get("params"):
        lines.append(
            f"parameters: student {student['params']:,}, teacher {teacher['params']:,} "
            f"({teacher['params'] / student['params']:.1f}x fewer)"
        )
    speeds = {
        name: row["tokens_per_s"]
        for name, row in (ev.get("efficiency") or {}).items()
        if row.get("tokens_per_s")
    }
    if speeds.get("teacher"):  # each ratio from the bench's interleaved pairs
        lines.append(
            "tokens/s at batch 1: "
            + ", ".join(
                f"{name} {speed:,.0f}"
                + (f" ({times(found['ratio'])})" if (found := speedup(ev, name)) else "")
                for name, speed in speeds.items()
            )
        )
    if (run_dir / "report.html").is_file():
        lines.append(f"report: {run_dir / 'report.html'}")
    return lines
