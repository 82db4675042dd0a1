"""`--compare`: the same student trained with sequence-level KD and with ground truth."""

import json

import pyarrow.parquet as pq
import pytest

from distil.data import Pair
from distil.pipeline import run_pipeline
from distil.pipeline.compare import CompareData, ground_truth_pairs, mean_interval, method_recipe
from distil.recipe import validate_recipe
from distil.tasks import generate_items
from tests.conftest import recipe_dict, write_jsonl


def test_ground_truth_is_found_for_task_prompts_only():
    items = generate_items("train", 30, seed=3)
    pairs = [Pair(str(i), item.prompt, "teacher said something") for i, item in enumerate(items)]
    truth = ground_truth_pairs(pairs, seed=3)
    assert [p.response for p in truth] == [item.answer for item in items]
    assert ground_truth_pairs([Pair("x", "not a task prompt", "y")], seed=3) is None


def test_compare_trains_each_method_and_seed_and_reports_intervals(tmp_path):
    items = generate_items("train", 40, seed=0)
    rows = [{"id": str(i), "prompt": item.prompt, "response": item.answer.upper()}
            for i, item in enumerate(items)]  # "teacher text" differs from the ground truth
    data = write_jsonl(tmp_path / "synth.jsonl", rows)
    raw = recipe_dict(tmp_path, data, compare=True, train={"max_steps": 3},
                      comparison={"seeds": 2, "methods": ["seq_kd", "logit_kd"]},
                      eval={"tasks": ["all"], "per_task": 4, "max_new_tokens": 4})
    run_pipeline(validate_recipe(raw))
    run = tmp_path / "run"
    for variant in ("seq_kd/seed-0", "seq_kd/seed-1", "logit_kd/seed-1"):
        result = json.loads((run / "compare" / variant / "eval.json").read_text())
        assert "accuracy" in result["student"] and result["student"]["model"].endswith("student")
    assert not (run / "compare" / "logit_kd" / "seed-0").exists()  # that one is the run itself
    truth = pq.read_table(run / "compare" / "data" / "ground_truth.parquet").to_pylist()
    answers = {item.prompt: item.answer for item in items}
    assert 0 < len(truth) < len(rows) and all(r["response"] == answers[r["prompt"]] for r in truth)
    summary = json.loads((run / "compare" / "summary.json").read_text())
    seq = summary["methods"]["seq_kd"]
    accuracies = [seq["runs"][s]["accuracy"] for s in ("0", "1")]
    assert seq["accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    # t(0.975, 1 degree of freedom) * sample sd / sqrt(2) = 12.706 * |a - b| / 2
    assert seq["accuracy_interval"] == pytest.approx(12.706 * abs(accuracies[0] - accuracies[1]) / 2)
    run_accuracy = json.loads((run / "eval.json").read_text())["student"]["accuracy"]
    assert summary["methods"]["logit_kd"]["runs"]["0"]["accuracy"] == run_accuracy
    report = (run / "report.md").read_text()
    comparison = report.split("## Comparison", 1)[1].split("\n## ", 1)[0]
    table = [line for line in comparison.splitlines() if line.startswith("| ") and "%" in line]
    assert len(table) == 1 + 2 + 7  # the header, one row per method, one per task family
    assert "Two standard errors of an accuracy difference on 28 held-out prompts" in comparison
    variant_summary = json.loads((run / "compare" / "seq_kd" / "seed-1" / "train_summary.json")
                                 .read_text())
    assert variant_summary["steps"] == 3


def test_mean_interval_matches_the_t_distribution():
    mean, half = mean_interval([0.80, 0.84, 0.86])
    values = [0.80, 0.84, 0.86]
    m = sum(values) / 3
    sd = (sum((v - m) ** 2 for v in values) / 2) ** 0.5
    assert mean == pytest.approx(m) and half == pytest.approx(4.303 * sd / 3**0.5)
    assert mean_interval([0.5]) == (0.5, None)


def test_each_method_recipe_changes_what_its_method_says(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "response": "r"}])
    recipe = validate_recipe(recipe_dict(tmp_path, data, signals={"path": str(tmp_path / "store")},
                                         eval={"max_new_tokens": 7}))
    files = CompareData(tmp_path / "t.parquet", tmp_path / "h.parquet", tmp_path / "g.parquet")
    truth = method_recipe(recipe, "ground_truth", 2, files)
    assert (truth.distill.kd_weight, truth.distill.ce_weight, truth.seed) == (0.0, 1.0, 2)
    assert truth.data.train == str(files.ground_truth) and truth.data.eval == str(files.heldout)
    assert truth.run_dir == tmp_path / "run" / "compare" / "ground_truth" / "seed-2"
    mixed = method_recipe(recipe, "on_policy", 0, files)
    assert mixed.distill.on_policy.lmbda == 0.5 and mixed.distill.on_policy.max_new_tokens == 7
    assert mixed.signals.path == str((tmp_path / "store").resolve()) and mixed.distill.hidden.weight == 0
    both = method_recipe(recipe, "on_policy_hidden", 0, files)
    assert both.signals.path is None and both.distill.hidden.loss == "cosine"
    assert both.distill.hidden.weight == 1.0 and both.distill.on_policy.lmbda == 0.5
    hidden = method_recipe(recipe, "logit_kd_hidden", 0, files)
    assert hidden.distill.on_policy.lmbda == 0 and hidden.distill.hidden.weight == 1.0
