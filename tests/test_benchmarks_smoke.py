"""The loss and step benchmarks run end to end at tiny sizes (their figures are not checked:
speed targets live in benchmarks/README.md, measured by hand)."""

import importlib.util
import math

import pytest
import torch

from tests.conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bench_loss_runs_every_path_and_they_agree(one_thread, tmp_path):
    results = _load("bench_loss").main(
        [
            "--tokens",
            "48",
            "--vocab",
            "97",
            "--student-hidden",
            "8",
            "--teacher-hidden",
            "12",
            "--scale",
            "0.5",
            "--repeat",
            "1",
            "--chunk-sizes",
            "0,16",
            "--json",
            str(tmp_path / "loss.json"),
        ]
    )
    by_path = {(r["path"], r.get("chunk_size")): r for r in results}
    assert {"dense", "fused", "liger", "trl"} <= {path for path, _ in by_path}
    measured = [r for r in results if "seconds" in r]
    assert len(measured) >= 3 and all(r["seconds"] > 0 for r in measured)
    dense = by_path[("dense", None)]["loss"]
    for r in measured:  # liger and trl too, where installed
        assert math.isclose(r["loss"], dense, rel_tol=1e-4), r
    for r in results:
        assert "failed" not in r, r
    assert (tmp_path / "loss.json").is_file()


def test_bench_step_runs_the_plain_live_and_stored_steps(one_thread, tmp_path):
    results = _load("bench_step").main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--variants",
            "finetune,live,store",
            "--warmup",
            "0",
            "--steps",
            "1",
            "--json",
            str(tmp_path / "step.json"),
        ]
    )
    assert [r["variant"] for r in results] == ["finetune", "live", "store"]
    for r in results:
        assert "failed" not in r, r
        assert r["tokens_per_s"] > 0 and r["mfu"] is None  # no known peak on a CPU


def test_bench_packing_times_both_layouts_on_the_same_rows(one_thread, tmp_path):
    import yaml

    from tests.conftest import recipe_dict, skill_rows, write_jsonl

    recipe = tmp_path / "recipe.yaml"
    data = write_jsonl(tmp_path / "data.jsonl", skill_rows(32))
    recipe.write_text(yaml.safe_dump(recipe_dict(tmp_path, data)))
    results = _load("bench_packing").main(
        ["--recipe", str(recipe), "--steps", "2", "--rounds", "1", "--warmup", "0"]
    )
    padded, packed = results
    assert (padded["layout"], packed["layout"]) == ("padded", "packed")
    assert packed["timed_tokens"] == padded["timed_tokens"] > 0
    assert packed["positions_per_token"] < padded["positions_per_token"]
    assert math.isclose(packed["first_step_loss"], padded["first_step_loss"], rel_tol=1e-5)


def test_bench_streaming_measures_both_files_in_every_case(tmp_path):
    results = _load("bench_streaming").main(
        [
            "--large-mb",
            "0.5",
            "--small-mb",
            "0.05",
            "--steps",
            "2",
            "--dir",
            str(tmp_path),
            "--json",
            str(tmp_path / "streaming.json"),
        ]
    )
    assert [(r["file"], r["case"]) for r in results] == [
        ("small.jsonl", "train, streamed"),
        ("small.jsonl", "full pass"),
        ("large.jsonl", "train, streamed"),
        ("large.jsonl", "full pass"),
    ]
    assert all(r["peak_rss_mib"] > 50 and r["seconds"] > 0 for r in results)
    large = (tmp_path / "large.jsonl").stat().st_size
    assert 0.5 * 2**20 <= large < 0.6 * 2**20
    assert (tmp_path / "streaming.json").is_file()


def test_bench_int8_speed_ratio_is_taken_within_each_round():
    figures = _load("bench_int8").speed_figures([30.0, 10.0, 24.0], baseline=[20.0, 5.0, 16.0])
    # rounds' ratios 1.5, 2.0, 1.5: the ratio of the medians (24 / 16) would hide the spread
    assert figures == {"tokens_per_s": 24.0, "speedup": 1.5, "speedup_min": 1.5, "speedup_max": 2.0}


def test_bench_int8_probe_finds_exact_sums_in_the_chosen_kernel(tmp_path):
    rows = _load("bench_int8").main(["--probe", "--json", str(tmp_path / "probe.json")])
    chosen = [r for r in rows if "(chosen)" in r["kernel"]]
    assert sorted(r["rows"] for r in chosen) == [1, 3]
    assert all(r["relative_error"] < 1e-5 for r in chosen)  # float rounding, nothing clipped
    assert (tmp_path / "probe.json").is_file()


def test_bench_int8_measures_the_block_and_smoothing_alternatives_on_a_tiny_model(tmp_path, monkeypatch):
    bench = _load("bench_int8")
    monkeypatch.setattr(bench, "models", lambda paths: iter([_tiny_student()]))
    rows = bench.main(
        ["--choices", "block 16", "--choices", "smoothed", "--choices", "table float"]
        + ["--prompts-per-task", "1", "--compared", "2", "--rounds", "0", "--tasks", "reverse"]
    )
    assert [r["choice"] for r in rows] == [
        "8-bit head + table, int8 activations, block 16",
        "8-bit head only (table float), int8 activations, block 32",
        "8-bit head + table, block 32, smoothed head (alpha 0.5)",
    ]
    assert all(r["positions"] > 0 and 0.5 <= r["top1_agreement"] <= 1 for r in rows)


def _tiny_student():
    from distil.models import build_tiny
    from distil.models.loading import LoadedModel

    model, tokenizer = build_tiny("tiny-student")
    return LoadedModel(model.float().eval(), tokenizer, "tiny-student"), "tiny-student"
