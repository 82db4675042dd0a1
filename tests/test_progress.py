"""Progress without a terminal: plain lines a log or a pipe can show (rich draws nothing
there until a stage ends); on a terminal, rich's live bar as before."""

import io
import subprocess
import sys

import yaml
from rich.console import Console

from distil import progress
from tests.conftest import recipe_dict


def _run_bar(monkeypatch, terminal: bool, total: int | None = 20) -> list[str]:
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buffer, width=200, force_terminal=terminal))
    with progress.progress_bar("loss") as bar:
        task = bar.add_task("train", total=total, loss="-")
        for step in range(20):
            bar.update(task, advance=1, loss=f"{1 / (step + 1):.3f}")
    return buffer.getvalue().splitlines()


def test_without_a_terminal_a_line_marks_each_tenth_of_the_work(monkeypatch):
    lines = _run_bar(monkeypatch, terminal=False)
    # 1/20 opens the first tenth, then 2, 4, ... 20 each open the next
    assert [line.split(" · ")[0] for line in lines] == (
        ["train: 1/20 (5%)"] + [f"train: {n}/20 ({5 * n}%)" for n in range(2, 21, 2)]
    )
    assert "/s" in lines[0] and "elapsed 0:00" in lines[0] and "eta " in lines[0]
    assert lines[-1].endswith("loss 0.050") and "eta" not in lines[-1]


def test_without_a_terminal_a_line_comes_at_least_every_few_seconds(monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    lines = _run_bar(monkeypatch, terminal=False, total=None)  # no total: no tenths
    assert [line.split(" · ")[0] for line in lines] == [f"train: {n}" for n in range(1, 21)]


def test_on_a_terminal_the_live_bar_prints_no_plain_lines(monkeypatch):
    output = "\n".join(_run_bar(monkeypatch, terminal=True))
    assert "train: 1/20" not in output and " · " not in output
    assert "20/20" in output  # rich's own bar


def test_a_stage_whose_output_is_piped_prints_its_progress(tmp_path, dataset):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(tmp_path, dataset)))
    done = subprocess.run(
        [sys.executable, "-m", "distil.cli", "train", str(recipe)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("train: ")]
    assert lines[-1].startswith("train: 12/12 (100%) · ") and "loss " in lines[-1]
    assert len(lines) >= 10  # a line for every tenth of the 12 steps
