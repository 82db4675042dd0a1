"""The synth stage in the pipeline: first when the recipe has synth:, rerun only for what decides the data."""

from distil.pipeline import default_stages, stage_fingerprint
from distil.recipe import validate_recipe

API = {"base_url": "http://127.0.0.1:1/v1", "api_key_env": None}
RAW = {
    "teacher": {"model": "tiny-teacher", "api": API},
    "student": {"model": "tiny-student"},
    "distill": {"kd_weight": 0, "ce_weight": 1},
    "synth": {"prompts": {"tasks": ["all"]}},
}


def fingerprint(**changes) -> str:
    raw = {
        **RAW,
        "teacher": {**RAW["teacher"], "api": {**RAW["teacher"]["api"], **changes.pop("api", {})}},
        "synth": {**RAW["synth"], **changes},
    }
    return stage_fingerprint(validate_recipe(raw), "synth")


def test_synth_runs_first_and_only_with_a_synth_section():
    recipe = validate_recipe(RAW)
    enabled = [s.name for s in default_stages() if s.enabled(recipe)]
    assert enabled[:2] == ["synth", "train"]
    without = validate_recipe(
        {
            **RAW,
            "synth": None,
            "data": {"train": "x.jsonl"},
            "teacher": {"model": "tiny-teacher"},
            "distill": {},
        }
    )
    assert "synth" not in [s.name for s in default_stages() if s.enabled(without)]


def test_pacing_and_budget_do_not_change_the_data_fingerprint():
    base = fingerprint()
    assert fingerprint(api={"concurrency": 32, "timeout_s": 5, "budget": {"max_requests": 9}}) == base
    assert fingerprint(api={"base_url": "http://127.0.0.1:2/v1"}) != base
    assert fingerprint(sampling={"temperature": 0.2}) != base
