"""The efficiency benchmark: statistics against hand sums, the PyTorch loop against
Hugging Face's generate, and a whole run's table merged into eval.json (no timed asserts)."""

import json
import math
import types

import pytest
import torch

from distil.bench import BenchError, BenchSection, bench_run, latency_summary, write_efficiency
from distil.bench.run import find_targets, weight_bytes
from distil.bench.stats import paired_speedup
from distil.bench.timing import interleaved_runs, speedups
from distil.models import build_tiny, count_parameters
from tests.export.conftest import exported_run_dir


def test_latency_summary_against_hand_sums():
    runs = [[0.010, 0.012, 0.015, 0.016], [0.020, 0.021, 0.023, 0.026]]
    summary = latency_summary(runs, batch=2)
    # steps (ms): 2, 3, 1, 1, 2, 3 -> sorted 1 1 2 2 3 3: median 2; p95 at rank 4.75 -> 3
    assert summary["ttft_ms"] == pytest.approx(15.0)
    assert summary["token_latency_ms_p50"] == pytest.approx(2.0)
    assert summary["token_latency_ms_p95"] == pytest.approx(3.0)
    assert summary["tokens_per_s"] == pytest.approx(2 * 4 / 0.021)
    assert summary["decode_tokens_per_s"] == pytest.approx(2 * 3 / 0.006)
    assert (summary["new_tokens"], summary["repeats"]) == (4, 2)
    with pytest.raises(ValueError):
        latency_summary([[0.1, 0.2], [0.1]], batch=1)


def test_a_paired_speedup_is_the_geometric_mean_of_round_ratios_with_its_interval():
    teacher = [[0.1, 0.2, 0.4], [0.1, 0.3, 0.9], [0.2, 0.4, 0.6]]  # totals 0.4, 0.9, 0.6
    student = [[0.05, 0.1], [0.1, 0.2], [0.05, 0.15]]  # totals 0.1, 0.2, 0.15
    found = paired_speedup(student, teacher)
    ratios = [4.0, 4.5, 4.0]  # teacher total / student total, round by round
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 3
    sd = (sum((x - mean) ** 2 for x in logs) / 2) ** 0.5
    half = 4.303 * sd / 3**0.5  # t(0.975, 2 degrees of freedom)
    assert found["per_pair"] == pytest.approx(ratios)
    assert found["ratio"] == pytest.approx(math.exp(mean))
    assert (found["low"], found["high"]) == pytest.approx((math.exp(mean - half), math.exp(mean + half)))
    assert found["pairs"] == 3
    one = paired_speedup(student[:1], teacher[:1])
    assert one["ratio"] == pytest.approx(4.0) and one["low"] is None and one["high"] is None
    with pytest.raises(ValueError, match="pair them"):
        paired_speedup(student, teacher[:2])


class _FakeWorker:
    """A model whose every run costs `cost` seconds times the machine's load at that time:
    other work starts after the first 9 runs (the warm-up and two timed rounds of three
    models) and makes everything 6x slower."""

    order: list[str] = []

    def __init__(self, name, cost, max_batch=None):
        self.target = types.SimpleNamespace(name=name)
        self.cost, self.header = cost, {"max_batch": max_batch}

    def time(self, batch):
        load = 1.0 if len(_FakeWorker.order) < 9 else 6.0
        _FakeWorker.order.append(self.target.name)
        total = self.cost * batch * load
        return [total / 2, total]


def test_models_take_turns_so_a_change_of_load_cannot_skew_their_ratio():
    _FakeWorker.order = []
    workers = [
        _FakeWorker("teacher", 0.2),
        _FakeWorker("student", 0.05),
        _FakeWorker("gguf", 0.04, max_batch=1),
    ]
    config = BenchSection(batch_sizes=[1, 2], warmup=1, repeats=4)
    done = []
    runs = interleaved_runs(workers, config, lambda w: done.append(w.target.name))
    assert _FakeWorker.order[:6] == ["teacher", "student", "gguf", "gguf", "student", "teacher"]
    assert _FakeWorker.order[15:] == ["teacher", "student", "student", "teacher"] * 2 + [
        "teacher",
        "student",
    ]  # batch 2: llama.cpp's one-sequence runner sits out
    assert done == _FakeWorker.order
    assert {b: len(r) for b, r in runs["student"].items()} == {"1": 4, "2": 4}
    assert list(runs["gguf"]) == ["1"]
    ratios = speedups(runs)
    # the load rose sixfold after the second timed round: timed one model after the other,
    # the teacher's runs and the student's would have seen different loads; here each
    # round's pair saw the same one, so every pair says 4x (5x for gguf)
    assert ratios["student"]["1"]["per_pair"] == pytest.approx([4.0] * 4)
    assert ratios["student"]["2"]["ratio"] == pytest.approx(4.0)
    assert ratios["gguf"]["1"]["ratio"] == pytest.approx(5.0) and "2" not in ratios["gguf"]
    assert "teacher" not in ratios and speedups({"student": runs["student"]}) == {}


def test_efficiency_is_merged_into_eval_json_keeping_other_keys(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"kl_teacher_student": 0.5, "efficiency": {"old": 1}}))
    write_efficiency(path, {"efficiency": {}, "efficiency_setup": {"config": {}}})
    assert json.loads(path.read_text()) == {
        "kl_teacher_student": 0.5,
        "efficiency": {},
        "efficiency_setup": {"config": {}},
    }
    path.write_text(json.dumps({"student": {"accuracy": 0.9}}))
    write_efficiency(
        path,
        {
            "efficiency": {"student": {"tokens_per_s": 250.0}, "teacher": {"tokens_per_s": 50.0}, "onnx": {}},
            "efficiency_setup": {},
        },
    )
    merged = json.loads(path.read_text())
    assert merged["student"] == {"accuracy": 0.9, "bench_tokens_per_s_batch1": 250.0}
    assert merged["teacher"] == {"bench_tokens_per_s_batch1": 50.0}
    path.write_text("{not json")
    with pytest.raises(BenchError, match="not valid JSON"):
        write_efficiency(path, {})


def test_torch_benchmark_loop_generates_what_hf_generate_does(tiny_models):
    from distil.bench.worker import TorchGreedy

    runner = TorchGreedy(str(tiny_models["tiny-teacher"]), threads=1)
    prompts = [[3, 70, 71, 72, 1, 4], [3, 80, 4]]
    ticks = []
    ours = runner.generate_ids(prompts, 9, on_token=lambda: ticks.append(1))
    assert len(ticks) == 9
    for prompt, mine in zip(prompts, ours, strict=True):
        with torch.no_grad():
            reference = runner.model.generate(
                input_ids=torch.tensor([prompt]),
                do_sample=False,
                max_new_tokens=9,
                min_new_tokens=9,
                pad_token_id=0,
            )
        assert mine == reference[0, len(prompt) :].tolist()


def test_bench_run_times_every_model_and_writes_the_table(tmp_path_factory, tiny_models, monkeypatch):
    missing = "llama-cpp-python is not installed"  # so: ONNX only, here and where it is
    monkeypatch.setattr(
        "distil.bench.run.missing_runtime", lambda fmt: missing if fmt.name == "gguf" else None
    )
    run = exported_run_dir(tmp_path_factory, tiny_models["tiny-student"])
    (run / "eval.json").write_text(json.dumps({"top1_agreement": 0.5}))
    config = BenchSection(new_tokens=4, batch_sizes=[1, 2], warmup=1, repeats=2, threads=1)
    measured = bench_run(run, config)
    stored = json.loads((run / "eval.json").read_text())
    models = measured["efficiency"]
    assert stored == {
        "top1_agreement": 0.5,
        **measured,
        "teacher": {"bench_tokens_per_s_batch1": models["teacher"]["tokens_per_s"]},
        "student": {"bench_tokens_per_s_batch1": models["student"]["tokens_per_s"]},
    }
    assert list(models) == ["teacher", "student", "onnx", "onnx-int8"]  # deployable ONNX only
    assert models["teacher"]["model"] == "tiny-teacher"
    assert models["teacher"]["params"] == count_parameters(build_tiny("tiny-teacher")[0])
    assert (
        models["student"]["params"]
        == models["onnx-int8"]["params"]
        == count_parameters(build_tiny("tiny-student")[0])
    )
    assert models["onnx-int8"]["bytes"] < models["onnx"]["bytes"]
    assert models["student"]["bytes"] == weight_bytes(run / "student") > 0
    for name, figures in models.items():
        assert figures["peak_memory_bytes"] > 10 * 2**20
        assert figures["torch_imported"] is (figures["runtime"] == "pytorch"), name
        for batch in ("1", "2"):
            timing = figures["batch"][batch]
            assert timing["ttft_ms"] > 0 and timing["tokens_per_s"] > 0
            assert 0 < timing["token_latency_ms_p50"] <= timing["token_latency_ms_p95"]
            assert (timing["new_tokens"], timing["repeats"]) == (4, 2)
        assert figures["tokens_per_s"] == figures["batch"]["1"]["tokens_per_s"]
        assert figures["latency_ms_p50"] == figures["batch"]["1"]["token_latency_ms_p50"]
        if name != "teacher":
            paired = figures["speedup_vs_teacher"]["2"]
            assert paired["pairs"] == 2 and paired["low"] <= paired["ratio"] <= paired["high"]
            assert paired["ratio"] == pytest.approx(math.prod(paired["per_pair"]) ** 0.5)
    assert measured["efficiency_setup"]["config"]["threads"] == 1
    assert measured["efficiency_setup"]["not_timed"] == {"gguf-f16": missing, "gguf-q8_0": missing}
    assert measured["efficiency_setup"]["order"] == "interleaved"
    assert [m["dtype"] for m in models.values()] == ["float32", "float32", "float32", "int8"]


def test_a_half_precision_variant_is_timed_in_its_own_dtype(tmp_path_factory, tiny_models):
    from distil.bench.worker import open_model

    run = exported_run_dir(tmp_path_factory, tiny_models["tiny-student"])
    targets = find_targets(run, None, ["hf-float16", "onnx-int8"])
    assert [(t.name, t.runtime) for t in targets] == [
        ("student", "pytorch"),
        ("hf-float16", "pytorch"),
        ("onnx-int8", "onnxruntime"),
    ]
    opened = {t.name: open_model({"opener": t.opener, "model": t.model, "threads": 1}) for t in targets}
    assert [precision for _, _, precision in opened.values()] == ["float32", "float16", "int8"]
    runner = opened["hf-float16"][0]
    assert len(runner.generate_ids([[3, 70, 4]], 3)[0]) == 3
    with pytest.raises(BenchError, match="not an exported variant"):
        find_targets(run, None, ["parity.json"])


def test_distil_bench_takes_the_runs_recipe_settings_unless_an_option_is_given(tmp_path, monkeypatch):
    import yaml

    from distil import cli
    from distil.recipe import dump_recipe, validate_recipe

    raw = {
        "seed": 7,
        "teacher": {"model": "tiny-teacher"},
        "student": {"model": "tiny-student"},
        "data": {"train": "x.jsonl"},
        "bench": {"repeats": 5, "batch_sizes": [2]},
    }
    (tmp_path / "recipe.yaml").write_text(dump_recipe(validate_recipe(raw)))
    assert yaml.safe_load((tmp_path / "recipe.yaml").read_text())["bench"]["seed"] == 7
    seen = {}
    monkeypatch.setattr(
        "distil.bench.bench_run", lambda run_dir, config, teacher=None: seen.update(config=config)
    )
    cli.bench(
        tmp_path,
        teacher=None,
        new_tokens=None,
        repeats=None,
        warmup=2,
        batch=None,
        threads=None,
        variant=None,
    )
    config = seen["config"]
    assert (config.repeats, config.batch_sizes, config.warmup, config.seed) == (5, [2], 2, 7)
