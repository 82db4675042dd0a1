"""The default job, shrunken: recipes/demo.yaml end to end through `distil run`, on CPU.

Every stage of the demo runs (synth, capture, train from the store, eval, export, bench,
report) with a few prompts and steps; the figures are not the demo's, the files and keys are.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distil.pipeline import default_stages
from distil.recipe import load_recipe

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"
SHRINK = [
    "synth.prompts.per_task=6",
    "train.max_steps=6",
    "train.batch_size=8",
    "train.save_every=3",
    "eval.per_task=2",
    "eval.max_samples=16",
    "export.prompts_per_task=1",
    "export.compared_prompts=2",
    "bench.new_tokens=4",
    "bench.batch_sizes=[1]",
    "bench.repeats=1",
    "bench.warmup=0",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run = tmp_path_factory.mktemp("demo") / "run"
    result = subprocess.run(
        [sys.executable, "-m", "distil.cli", "run", str(DEMO), *SHRINK, "--out", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result


def test_the_demo_recipe_enables_every_stage_but_compare():
    recipe = load_recipe(DEMO)
    assert [s.name for s in default_stages() if s.enabled(recipe)] == [
        "synth",
        "capture",
        "train",
        "eval",
        "export",
        "bench",
        "report",
    ]
    assert recipe.teacher.model == "demo" and recipe.signals.path == "capture"


def test_shrunken_demo_writes_the_report_and_every_eval_key(demo_run):
    run, _ = demo_run
    for name in (
        "report.md",
        "report.html",
        "eval.json",
        "student/config.json",
        "data/train.parquet",
        "data/README.md",
        "export/parity.json",
        "export/onnx-int8/model.onnx",
        "signals/fingerprint.json",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "eval.json").read_text())
    for role in ("teacher", "student"):
        for key in ("accuracy", "params", "bench_tokens_per_s_batch1", "eval_batched_greedy_tokens_per_s"):
            assert isinstance(metrics[role][key], int | float), (role, key)
    assert metrics["student"]["params"] * 4 <= metrics["teacher"]["params"]
    assert metrics["teacher"]["accuracy"] > 0.5  # the shipped teacher answers most tasks
    assert metrics["retention"] == pytest.approx(
        metrics["student"]["accuracy"] / metrics["teacher"]["accuracy"]
    )
    assert {"teacher", "student", "onnx", "onnx-int8"} <= set(metrics["efficiency"])
    html = (run / "report.html").read_text()
    assert (
        "<img" in html
        and 'src="data:image/png;base64,' in html
        and "http" not in html.split("<body", 1)[1].split("</body>")[0].replace("http-equiv", "")
    )
    markdown = (run / "report.md").read_text()
    for heading in ("Quality", "Sample answers", "Examples", "Efficiency", "Export parity", "Data", "Recipe"):
        assert f"## {heading}" in markdown, heading
    untrained = metrics["untrained_student"]  # the floor training is measured from
    assert untrained["params"] == metrics["student"]["params"]
    assert untrained["kl_teacher_student"] > metrics["kl_teacher_student"]
    assert "| metric | teacher | student | untrained student |" in markdown
    assert len(metrics["sample_answers"]) == min(8, metrics["samples"]) > 0
    paired = metrics["efficiency"]["student"]["speedup_vs_teacher"]["1"]
    assert paired["pairs"] == 1 and paired["ratio"] > 0  # bench.repeats=1: one interleaved pair
    kept = json.loads((run / "data" / "synth_summary.json").read_text())["responses"]["kept"]
    assert f"| responses kept | {kept:,} of {7 * 6:,} |" in markdown


def test_the_run_ends_with_its_headline_figures(demo_run):
    run, result = demo_run
    metrics = json.loads((run / "eval.json").read_text())
    assert (
        f"held-out accuracy: student {metrics['student']['accuracy']:.1%}, teacher "
        f"{metrics['teacher']['accuracy']:.1%}"
    ) in result.stdout
    assert "tokens/s at batch 1: teacher" in result.stdout and "onnx-int8" in result.stdout
    assert f"report: {run / 'report.html'}" in result.stdout
    # no terminal: each long stage printed plain progress lines, the last at 100%
    for stage in ("responses: 42/42 (100%)", "train: 6/6 (100%)", "eval: "):
        assert any(line.startswith(stage) for line in result.stderr.splitlines()), stage


def test_a_second_run_skips_every_finished_stage(demo_run):
    run, _ = demo_run
    again = subprocess.run(
        [sys.executable, "-m", "distil.cli", "run", str(DEMO), *SHRINK, "--out", str(run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("synth", "capture", "train", "eval", "export", "bench", "report"):
        assert f"{stage}: done already" in again.stdout + again.stderr, stage
