"""A divergence and an export format added from outside the package, used through a recipe
file: this module registers a divergence of its own and the toy format of
tests/export/toy_format.py, as a user's package would (docs/architecture.md); a recipe names
both, and `distil run` trains with the one and exports, checks, times and reports the other.
Without the registrations the same recipe is refused in one line."""

import json
import sys

import pytest
import torch
import yaml

from distil.errors import RecipeError
from distil.export_formats import register_format, unregister_format
from distil.losses import Param, register_divergence, unregister_divergence
from distil.recipe import load_recipe
from tests.conftest import recipe_dict, skill_rows, write_jsonl
from tests.export.toy_format import NAME as FORMAT
from tests.export.toy_format import TOY

DIVERGENCE = "power_tvd"
CALLS: list[tuple[int, ...]] = []
"""The shapes the divergence was called with."""


def power_tvd(log_s: torch.Tensor, log_t: torch.Tensor, beta: float) -> torch.Tensor:
    """(0.5 * sum |p_t - p_s|)^(1 + beta) per row. (N, K), (N, K) -> (N,)."""
    CALLS.append(tuple(log_s.shape))
    return (0.5 * (log_t.exp() - log_s.exp()).abs().sum(dim=-1)).clamp_min(1e-12) ** (1 + beta)


@pytest.fixture
def registered():
    register_divergence(DIVERGENCE, power_tvd, Param("beta", 0.0, 1.0))
    register_format(TOY)
    CALLS.clear()
    yield
    unregister_divergence(DIVERGENCE)
    unregister_format(FORMAT)


def _recipe_file(tmp_path, beta: float = 0.5):
    dataset = write_jsonl(tmp_path / "data.jsonl", skill_rows(32))
    raw = recipe_dict(
        tmp_path,
        dataset,
        distill={"divergence": DIVERGENCE, "beta": beta, "temperature": 1.5},
        train={"max_steps": 2, "save_every": 2, "log_every": 1},
        eval={"max_samples": 8},
        export={"formats": [FORMAT], "prompts_per_task": 1, "compared_prompts": 2, "max_new_tokens": 4},
        bench={"new_tokens": 2, "batch_sizes": [1], "repeats": 1, "warmup": 0},
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _distil(monkeypatch, *args: str) -> None:
    from distil import cli

    monkeypatch.setattr(sys, "argv", ["distil", *args])
    try:
        cli.main()
    except SystemExit as exit_info:
        assert not exit_info.code, f"distil {' '.join(args)} exited with {exit_info.code}"


def test_a_recipe_trains_with_a_registered_divergence_and_exports_a_registered_format(
    registered, tmp_path, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _distil(monkeypatch, "run", str(_recipe_file(tmp_path)))
    run = tmp_path / "run"

    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert (saved["distill"]["divergence"], saved["export"]["formats"]) == (DIVERGENCE, [FORMAT])
    assert CALLS and all(len(shape) == 2 for shape in CALLS)  # the training's loss called it
    losses = [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(0 < loss < 20 for loss in losses)

    (variant,) = json.loads((run / "export" / "parity.json").read_text())["variants"]
    assert (variant["name"], variant["format"], variant["passed"]) == (FORMAT, FORMAT, True)
    efficiency = json.loads((run / "eval.json").read_text())["efficiency"]
    assert FORMAT in efficiency and efficiency[FORMAT]["bytes"] > 0
    report = (run / "report.md").read_text()
    assert f"| {FORMAT} | " in report.split("## Export parity")[1]


def test_the_registered_range_is_checked_and_unregistered_names_are_refused(registered, tmp_path):
    with pytest.raises(RecipeError, match=r"distill\.beta.*\[0, 1\]"):
        load_recipe(_recipe_file(tmp_path, beta=1.5), [])
    path = _recipe_file(tmp_path)
    unregister_divergence(DIVERGENCE)
    try:
        with pytest.raises(
            RecipeError, match=f"distill.divergence: Input should be 'forward_kl'.*got '{DIVERGENCE}'"
        ):
            load_recipe(path, [])
    finally:
        register_divergence(DIVERGENCE, power_tvd, Param("beta", 0.0, 1.0))
    unregister_format(FORMAT)
    try:
        with pytest.raises(RecipeError, match=f"unknown export formats \\['{FORMAT}'\\]"):
            load_recipe(path, [])
    finally:
        register_format(TOY)
