"""scripts/compare_margins.py: paired margins and looping shares of a small compare folder,
against values computed by hand; run as docs/real-teacher.md runs it."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _write_samples(path, answers):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"student": a}) + "\n" for a in answers))


def _run(tmp_path):
    run = tmp_path / "run"
    figures = {
        "logit_kd": {"0": (0.20, 2.0, 40.0, 0.30), "1": (0.10, 3.0, 50.0, 0.40)},
        "on_policy": {"0": (0.10, 1.5, 38.0, 0.35), "1": (0.12, 2.1, 47.0, 0.39)},
    }
    methods = {
        name: {
            "runs": {
                s: dict(
                    zip(("accuracy", "kl_teacher_student", "perplexity", "top1_agreement"), v, strict=True)
                )
                for s, v in runs.items()
            }
        }
        for name, runs in figures.items()
    }
    (run / "compare").mkdir(parents=True)
    (run / "compare" / "summary.json").write_text(json.dumps({"methods": methods, "base_seed": 0}))
    loop, plain = "the city of the city of", "Paris is the capital."
    _write_samples(run / "eval_samples.jsonl", [loop, plain, plain, plain])  # logit_kd seed 0: the run
    _write_samples(run / "compare" / "logit_kd" / "seed-1" / "eval_samples.jsonl", [plain, plain])
    _write_samples(
        run / "compare" / "on_policy" / "seed-0" / "eval_samples.jsonl", [loop, loop, plain, plain]
    )
    _write_samples(run / "compare" / "on_policy" / "seed-1" / "eval_samples.jsonl", [loop, plain])
    return run


def test_margins_and_looping_shares_by_hand(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "compare_margins.py"),
            str(_run(tmp_path)),
            "on_policy",
            "logit_kd",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
        check=True,
    )
    out = json.loads(done.stdout)
    accuracy = out["margins"]["accuracy"]
    assert accuracy["values"] == pytest.approx([-0.10, 0.02])
    assert accuracy["mean"] == pytest.approx(-0.04)
    # t(0.975, 1 df) = 12.706; the standard deviation of -0.10 and 0.02 is 0.12 / sqrt(2)
    assert accuracy["interval"] == pytest.approx(12.706 * 0.06, rel=1e-3)
    assert out["margins"]["kl_teacher_student"]["values"] == pytest.approx([-0.5, -0.9])
    assert out["looping"]["logit_kd"]["values"] == pytest.approx([0.25, 0.0])
    assert out["looping"]["on_policy"]["values"] == pytest.approx([0.5, 0.5])
    assert out["looping_margin"]["values"] == pytest.approx([0.25, 0.5])


def test_a_repeated_run_of_three_words():
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_margins", REPO / "scripts" / "compare_margins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.repeats_a_run("a b c a b c")
    assert not module.repeats_a_run("a b c a b d")
    assert not module.repeats_a_run("a a")  # too short for a run of three
