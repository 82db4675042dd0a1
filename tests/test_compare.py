"""`--compare`: the same student trained with sequence-level KD and with ground truth, and on
shares of the training prompts (data efficiency)."""

import json
import statistics

import pyarrow.parquet as pq
import pytest
import yaml

from distil.data import Pair
from distil.errors import RecipeError
from distil.pipeline import run_pipeline
from distil.pipeline.compare import (
    CompareData,
    ground_truth_pairs,
    method_recipe,
    run_compare,
    share_points,
    summarise,
    training_subset,
)
from distil.recipe import validate_recipe
from distil.stats import mean_interval
from distil.tasks import generate_items
from tests.conftest import recipe_dict, write_jsonl


def test_ground_truth_is_found_for_task_prompts_only():
    items = generate_items("train", 30, seed=3)
    pairs = [Pair(str(i), item.prompt, "teacher said something") for i, item in enumerate(items)]
    truth = ground_truth_pairs(pairs, seed=3)
    assert [p.response for p in truth] == [item.answer for item in items]
    assert ground_truth_pairs([Pair("x", "not a task prompt", "y")], seed=3) is None


def test_ground_truth_covers_opt_in_families():
    # a run on [all, between] prompts lost its ground-truth variant: the lookup knew only
    # the default families, so 8% of the prompts were unmatched and the method was skipped
    items = generate_items("train", 30, seed=3, tasks=["all", "between"])
    pairs = [Pair(str(i), item.prompt, "teacher said something") for i, item in enumerate(items)]
    truth = ground_truth_pairs(pairs, seed=3)
    assert truth is not None
    assert [p.response for p in truth] == [item.answer for item in items]


def test_compare_trains_each_method_and_seed_and_reports_intervals(tmp_path):
    items = generate_items("train", 40, seed=0)
    rows = [
        {"id": str(i), "prompt": item.prompt, "response": item.answer.upper()} for i, item in enumerate(items)
    ]  # "teacher text" differs from the ground truth
    data = write_jsonl(tmp_path / "synth.jsonl", rows)
    raw = recipe_dict(
        tmp_path,
        data,
        compare=True,
        train={"max_steps": 3},
        comparison={"seeds": 2, "methods": ["seq_kd", "logit_kd"], "fractions": []},
        eval={"tasks": ["all"], "per_task": 4, "max_new_tokens": 4},
    )
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
    assert seq["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 2)
    # t(0.975, 1 degree of freedom) * sample sd / sqrt(2) = 12.706 * |a - b| / 2
    assert seq["accuracy"]["interval"] == pytest.approx(12.706 * abs(accuracies[0] - accuracies[1]) / 2)
    run_accuracy = json.loads((run / "eval.json").read_text())["student"]["accuracy"]
    assert summary["methods"]["logit_kd"]["runs"]["0"]["accuracy"] == run_accuracy
    report = (run / "report.md").read_text()
    comparison = report.split("## Comparison", 1)[1].split("\n## ", 1)[0]
    tables = [block.splitlines() for block in comparison.split("\n\n") if block.startswith("| ")]
    accuracy, forced, per_task = tables
    assert accuracy[0].startswith("| student trained with | held-out accuracy by seed |")
    assert forced[0].startswith("| student trained with | KL (nats/token), mean ± 95% |")
    assert len(accuracy) == len(forced) == 2 + 2 and len(per_task) == 2 + 7  # header, rule, rows
    kl = [summary["methods"]["logit_kd"]["runs"][s]["kl_teacher_student"] for s in ("0", "1")]
    assert summary["methods"]["logit_kd"]["kl_teacher_student"]["mean"] == pytest.approx(sum(kl) / 2)
    assert f"| {sum(kl) / 2:.3f} ± " in forced[-1]  # logit KD's row
    assert "Two standard errors of an accuracy difference on 28 held-out prompts" in comparison
    assert all(
        r["cpu_seconds"] > 0 for entry in summary["methods"].values() for r in entry["runs"].values()
    )  # the run itself: its train and eval stages
    variant_summary = json.loads((run / "compare" / "seq_kd" / "seed-1" / "train_summary.json").read_text())
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
    recipe = validate_recipe(
        recipe_dict(tmp_path, data, signals={"path": str(tmp_path / "store")}, eval={"max_new_tokens": 7})
    )
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
    with_ce = method_recipe(recipe, "logit_kd_ce", 1, files)
    assert (with_ce.distill.kd_weight, with_ce.distill.ce_weight) == (1.0, 1.0)
    assert with_ce.signals.path == str((tmp_path / "store").resolve())
    assert with_ce.data.train == str(files.train) and with_ce.distill.on_policy.lmbda == 0
    weighted = recipe.model_copy(update={"distill": recipe.distill.model_copy(update={"ce_weight": 0.3})})
    assert method_recipe(weighted, "logit_kd_ce", 1, files).distill.ce_weight == 0.3
    hidden = method_recipe(recipe, "logit_kd_hidden", 0, files)
    assert hidden.distill.on_policy.lmbda == 0 and hidden.distill.hidden.weight == 1.0
    subset = method_recipe(recipe, "seq_kd", 1, files, 0.1)
    assert subset.run_dir == tmp_path / "run" / "compare" / "fraction-0.1" / "seq_kd" / "seed-1"
    assert subset.train.max_steps == recipe.train.max_steps == 12
    by_epochs = recipe.model_copy(update={"train": recipe.train.model_copy(update={"max_steps": None})})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_summary.json").write_text(json.dumps({"steps": 7}))
    assert method_recipe(by_epochs, "seq_kd", 1, files, 0.1).train.max_steps == 7  # the run's


def test_a_training_subset_is_seeded_ordered_and_nested():
    pairs = [Pair(str(i), f"p{i}", f"r{i}") for i in range(50)]
    tenth, third = training_subset(pairs, 0.1, seed=4), training_subset(pairs, 0.3, seed=4)
    assert len(tenth) == 5 and len(third) == 15 and set(tenth) < set(third)
    assert tenth == sorted(tenth, key=lambda p: int(p.sample_id))
    assert training_subset(pairs, 0.1, seed=4) == tenth != training_subset(pairs, 0.1, seed=5)
    assert len(training_subset(pairs[:3], 0.1, seed=0)) == 1


def test_each_share_has_its_means_intervals_and_paired_margins():
    def runs(*accuracies):
        return {str(seed): {"accuracy": a, "per_task": {}} for seed, a in enumerate(accuracies)}

    points = share_points(
        {
            "0.1": {"seq_kd": runs(0.5, 0.6, 0.7), "logit_kd": runs(0.6, 0.8, 0.7)},
            "1.0": {"seq_kd": runs(0.8, 0.9, 0.85), "logit_kd": runs(0.8, 0.9, 0.9)},
        }
    )
    logit = points["0.1"]["logit_kd"]
    assert logit["mean"] == pytest.approx(0.7) and logit["runs"]["1"]["accuracy"] == 0.8
    assert logit["interval"] == pytest.approx(mean_interval([0.6, 0.8, 0.7])[1])
    assert logit["margin_over_seq_kd"]["mean"] == pytest.approx(0.1)  # +0.1, +0.2, 0 by seed
    assert logit["margin_over_seq_kd"]["interval"] == pytest.approx(mean_interval([0.1, 0.2, 0])[1])
    assert points["1.0"]["seq_kd"]["mean"] == pytest.approx(0.85)
    assert points["1.0"]["seq_kd"]["margin_over_seq_kd"] is None


@pytest.mark.parametrize(
    "comparison,named",
    [
        ({"fractions": [0.0]}, "comparison.fractions"),
        ({"fractions": [0.3, 1.5]}, "comparison.fractions"),
        ({"fraction_methods": ["logit_kd", "soft_kd"]}, "comparison.fraction_methods"),
        (
            {"methods": ["seq_kd"], "fraction_methods": ["seq_kd", "logit_kd"]},
            "comparison.fraction_methods: logit_kd not in comparison.methods",
        ),
    ],
)
def test_a_bad_data_efficiency_setting_is_refused_at_load(tmp_path, comparison, named):
    raw = recipe_dict(tmp_path, tmp_path / "d.jsonl", comparison=comparison)
    with pytest.raises(RecipeError, match=named):
        validate_recipe(raw)


def test_data_efficiency_defaults_to_the_compared_methods(tmp_path):
    raw = recipe_dict(tmp_path, tmp_path / "d.jsonl", comparison={"methods": ["seq_kd", "logit_kd"]})
    comparison = validate_recipe(raw).comparison
    assert comparison.fraction_methods == ["seq_kd", "logit_kd"]
    assert comparison.fractions == [0.1, 0.3]


@pytest.fixture(scope="module")
def efficiency_run(tmp_path_factory, tiny_models):
    """One --compare with a store: ground truth and logit KD, 2 seeds, on all and half the
    prompts. The teacher is a saved folder: a built-in one is a function of the seed, so
    another seed could not read the run's store."""
    root = tmp_path_factory.mktemp("efficiency")
    items = generate_items("train", 40, seed=0)
    rows = [
        {"id": str(i), "prompt": item.prompt, "response": item.answer.upper()} for i, item in enumerate(items)
    ]
    raw = recipe_dict(
        root,
        write_jsonl(root / "synth.jsonl", rows),
        compare=True,
        teacher={"model": str(tiny_models["tiny-teacher"])},
        train={"max_steps": 3},
        signals={"path": "capture"},
        comparison={"seeds": 2, "methods": ["ground_truth", "logit_kd"], "fractions": [0.5]},
        eval={"tasks": ["all"], "per_task": 4, "max_new_tokens": 4},
    )
    run_pipeline(validate_recipe(raw))
    return raw, root / "run", {item.prompt: item.answer for item in items}


def _ids(path):
    return [row["id"] for row in pq.read_table(path).to_pylist()]


def test_each_share_trains_every_method_and_seed_on_one_paired_subset(efficiency_run):
    _, run, answers = efficiency_run
    data = run / "compare" / "data"
    whole, half = _ids(data / "train.parquet"), _ids(data / "train-0.5.parquet")
    assert len(half) == round(len(whole) / 2) and set(half) < set(whole)
    truth = pq.read_table(data / "ground_truth-0.5.parquet").to_pylist()
    assert {r["id"] for r in truth} == set(half) & set(_ids(data / "ground_truth.parquet"))
    assert all(r["response"] == answers[r["prompt"]] for r in truth)
    for method, file in (("ground_truth", "ground_truth-0.5"), ("logit_kd", "train-0.5")):
        for seed in (0, 1):
            variant = run / "compare" / "fraction-0.5" / method / f"seed-{seed}"
            assert json.loads((variant / "train_summary.json").read_text())["steps"] == 3
            assert "accuracy" in json.loads((variant / "eval.json").read_text())["student"]
            recipe = yaml.safe_load((variant / "recipe.yaml").read_text())
            assert recipe["data"]["train"] == str(data / f"{file}.parquet")
    store = yaml.safe_load(
        (run / "compare" / "fraction-0.5" / "logit_kd" / "seed-1" / "recipe.yaml").read_text()
    )["signals"]["path"]
    assert store == str((run / "signals").resolve())  # the run's store covers a superset


def test_the_summary_holds_each_shares_means(efficiency_run):
    _, run, _ = efficiency_run
    summary = json.loads((run / "compare" / "summary.json").read_text())
    shares = summary["data_efficiency"]
    assert set(shares) == {"0.5", "1.0"} and set(shares["0.5"]) == {"ground_truth", "logit_kd"}
    for share in shares.values():
        for point in share.values():
            accuracies = [r["accuracy"] for r in point["runs"].values()]
            assert len(accuracies) == 2 and point["mean"] == pytest.approx(statistics.fmean(accuracies))
            assert point["interval"] == pytest.approx(mean_interval(accuracies)[1])
    assert shares["1.0"]["logit_kd"]["runs"] == summary["methods"]["logit_kd"]["runs"]
    prompts = summary["fraction_prompts"]
    assert prompts["0.5"] == round(prompts["1.0"] / 2)


def test_the_report_shows_the_data_efficiency_table_and_plot(efficiency_run):
    _, run, _ = efficiency_run
    summary = json.loads((run / "compare" / "summary.json").read_text())
    half = summary["data_efficiency"]["0.5"]["logit_kd"]
    report = (run / "report.md").read_text()
    assert (
        "| training prompts | ground truth only (no teacher) | logit distillation (the run's objective) |"
    ) in report
    row = f"| 50% ({summary['fraction_prompts']['0.5']} prompts) | "
    assert row in report and f"{100 * half['mean']:.1f} ± {100 * half['interval']:.1f} |" in report
    assert (run / "report_files" / "data_efficiency.png").read_bytes()[:4] == b"\x89PNG"
    assert 'alt="Line chart of held-out accuracy against the share' in (run / "report.html").read_text()


def test_a_rerun_trains_nothing_new(efficiency_run):
    raw, run, _ = efficiency_run
    variants = [path.parent for path in (run / "compare").rglob("train_log.jsonl")]
    assert len(variants) == 2 * 2 * 2 - 1  # each share, method and seed, less the run itself

    def trained():
        return {
            v: ((v / "train_log.jsonl").read_text(), sorted(p.name for p in (v / "checkpoints").iterdir()))
            for v in variants
        }

    before = trained()
    run_compare(validate_recipe(raw))
    assert trained() == before


def _t_interval(values):
    """Mean and 95% half-width written out: t(0.975, n - 1) * sample sd / sqrt(n), n = 3."""
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return mean, 4.303 * sd / len(values) ** 0.5


def test_held_out_kl_perplexity_and_agreement_are_summarised_without_task_accuracy():
    def runs(kls, perplexities, agreements):
        return {
            str(seed): {
                "accuracy": None,
                "per_task": {},
                "kl_teacher_student": kl,
                "perplexity": ppl,
                "top1_agreement": agree,
            }
            for seed, (kl, ppl, agree) in enumerate(zip(kls, perplexities, agreements, strict=True))
        }

    summary = summarise(
        {
            "seq_kd": runs([0.50, 0.40, 0.45], [3.0, 2.8, 2.9], [0.70, 0.72, 0.71]),
            "logit_kd": runs([0.30, 0.35, 0.20], [2.5, 2.6, 2.4], [0.80, 0.79, 0.81]),
        },
        teacher_accuracy=None,
    )
    logit = summary["methods"]["logit_kd"]
    assert logit["accuracy"] is None and "retention" not in logit
    for metric, values, seq_values in (
        ("kl_teacher_student", [0.30, 0.35, 0.20], [0.50, 0.40, 0.45]),
        ("perplexity", [2.5, 2.6, 2.4], [3.0, 2.8, 2.9]),
        ("top1_agreement", [0.80, 0.79, 0.81], [0.70, 0.72, 0.71]),
    ):
        mean, half = _t_interval(values)
        assert logit[metric]["mean"] == pytest.approx(mean), metric
        assert logit[metric]["interval"] == pytest.approx(half), metric
        margin_mean, margin_half = _t_interval([a - b for a, b in zip(values, seq_values, strict=True)])
        assert logit[metric]["margin_over_seq_kd"]["mean"] == pytest.approx(margin_mean), metric
        assert logit[metric]["margin_over_seq_kd"]["interval"] == pytest.approx(margin_half), metric
        assert summary["methods"]["seq_kd"][metric]["margin_over_seq_kd"] is None


def test_the_compared_data_keeps_which_responses_the_teacher_did_not_finish(tmp_path):
    from distil.data import load_pairs
    from distil.loading import load_splits
    from distil.pipeline.compare import _write_data

    rows = [
        {
            "id": str(i),
            "prompt": f"p{i}",
            "response": f"r{i}",
            "finish_reason": "length" if i % 3 == 0 else "stop",
        }
        for i in range(30)
    ]
    recipe = validate_recipe(
        recipe_dict(tmp_path, write_jsonl(tmp_path / "d.jsonl", rows), comparison={"fractions": [0.5]})
    )
    files = _write_data(recipe)
    train, held_out = load_splits(recipe.data, recipe.seed)
    for written, pairs in (
        (files[1.0].train, train),
        (files[1.0].heldout, held_out),
        (files[0.5].train, None),
    ):
        read = load_pairs(written)
        expected = pairs or [p for p in train if p.sample_id in {r.sample_id for r in read}]
        assert [(p.sample_id, p.truncated) for p in read] == [(p.sample_id, p.truncated) for p in expected]
        assert any(p.truncated for p in read) and not all(p.truncated for p in read)
