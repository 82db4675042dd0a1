"""`--compare`: the same student trained with sequence-level KD and with ground truth."""

import json

import pyarrow.parquet as pq

from distil.data import Pair
from distil.pipeline import run_pipeline
from distil.pipeline.compare import ground_truth_pairs
from distil.recipe import validate_recipe
from distil.tasks import generate_items
from tests.conftest import recipe_dict, write_jsonl


def test_ground_truth_is_found_for_task_prompts_only():
    items = generate_items("train", 30, seed=3)
    pairs = [Pair(str(i), item.prompt, "teacher said something") for i, item in enumerate(items)]
    truth = ground_truth_pairs(pairs, seed=3)
    assert [p.response for p in truth] == [item.answer for item in items]
    assert ground_truth_pairs([Pair("x", "not a task prompt", "y")], seed=3) is None


def test_compare_trains_both_variants_and_reports_them(tmp_path):
    items = generate_items("train", 40, seed=0)
    rows = [{"id": str(i), "prompt": item.prompt, "response": item.answer.upper()}
            for i, item in enumerate(items)]  # "teacher text" differs from the ground truth
    data = write_jsonl(tmp_path / "synth.jsonl", rows)
    raw = recipe_dict(tmp_path, data, compare=True, train={"max_steps": 3},
                      eval={"tasks": ["all"], "per_task": 4, "max_new_tokens": 4})
    run_pipeline(validate_recipe(raw))
    run = tmp_path / "run"
    for variant in ("seq_kd", "ground_truth"):
        result = json.loads((run / "compare" / variant / "eval.json").read_text())
        assert "accuracy" in result["student"] and result["student"]["model"].endswith("student")
    truth = pq.read_table(run / "compare" / "ground_truth_data" / "train.parquet").to_pylist()
    answers = {item.prompt: item.answer for item in items}
    assert len(truth) == len(rows) and all(r["response"] == answers[r["prompt"]] for r in truth)
    report = (run / "report.md").read_text()
    comparison = report.split("## Comparison", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in comparison.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 3 and "ground_truth_data" not in comparison
    assert "Two standard errors of an accuracy difference on 28 held-out prompts" in comparison
    variant_recipe = json.loads((run / "compare" / "seq_kd" / "train_summary.json").read_text())
    assert variant_recipe["steps"] == 3
