"""The divergence table: one parameter check for every front end, registration, the recipe."""

import math

import pytest
import torch

from distil import losses
from distil.errors import DistilError
from distil.losses import Param, register_divergence, teacher_top_k, unregister_divergence
from distil.losses.cross_tokenizer import aligned_divergence
from distil.recipe import validate_recipe
from tests.conftest import recipe_dict
from tests.losses.test_cross_tokenizer import MAP, inputs, library_span_inputs

OUT_OF_RANGE = [
    ("generalized_jsd", {"beta": 1.5}, r"generalized_jsd takes beta in \[0, 1\]"),
    ("generalized_jsd", {"beta": -0.1}, r"generalized_jsd takes beta in \[0, 1\]"),
    ("generalized_jsd", {"beta": math.nan}, r"generalized_jsd takes beta in \[0, 1\]"),
    ("skew_forward_kl", {"alpha": 1.0}, r"skew_forward_kl takes alpha in \[0, 1\)"),
    ("skew_reverse_kl", {"alpha": math.nan}, r"skew_reverse_kl takes alpha in \[0, 1\)"),
]


def _front_ends():
    """name, params -> the divergence through each front end, on small random inputs."""
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    span_inputs = library_span_inputs(*inputs(seed=1), temperature=1.0)
    return {
        "dense": lambda name, p: losses.divergence(name, student, teacher, **p),
        "sparse": lambda name, p: losses.sparse_divergence(name, student, teacher_top_k(teacher, 3), **p),
        "aligned": lambda name, p: aligned_divergence(name, *span_inputs, torch.tensor(MAP), **p),
        "fused": lambda name, p: losses.fused_linear_divergence(
            student, torch.eye(7), teacher, torch.eye(7), divergence=name, **p
        ),
    }


@pytest.mark.parametrize("front_end", ["dense", "sparse", "aligned", "fused"])
@pytest.mark.parametrize("name,params,message", OUT_OF_RANGE)
def test_every_front_end_refuses_a_parameter_outside_the_declared_range(front_end, name, params, message):
    """The aligned path had no check of its own: beta = 1.5 or alpha = 1 failed on a bare
    `math domain error` from the mixture's log, and a NaN parameter gave NaN losses."""
    with pytest.raises(ValueError, match=message):
        _front_ends()[front_end](name, params)


@pytest.mark.parametrize("front_end", ["dense", "sparse", "aligned", "fused"])
def test_every_front_end_refuses_an_unknown_name(front_end):
    with pytest.raises(ValueError, match=r"unknown divergence 'kl'; choose one of \['forward_kl'"):
        _front_ends()[front_end]("kl", {})


def _scaled_tvd(log_s, log_t, beta):
    """A toy taking beta over a range of its own, [0, 2]: beta * TVD."""
    return beta * 0.5 * (log_t.exp() - log_s.exp()).abs().sum(dim=-1)


@pytest.fixture
def scaled_tvd():
    register_divergence("scaled_tvd", _scaled_tvd, Param("beta", 0.0, 2.0))
    yield "scaled_tvd"
    unregister_divergence("scaled_tvd")


def test_a_registered_divergence_gets_its_parameter_through_every_front_end(scaled_tvd):
    for front_end, fn in _front_ends().items():
        half, doubled = fn(scaled_tvd, {"beta": 0.5}), fn(scaled_tvd, {"beta": 1.0})
        torch.testing.assert_close(doubled, 2 * half, msg=front_end)
        torch.testing.assert_close(fn(scaled_tvd, {"beta": 1.0}), fn("tvd", {}), msg=front_end)
        with pytest.raises(ValueError, match=r"scaled_tvd takes beta in \[0, 2\]"):
            fn(scaled_tvd, {"beta": 2.5})


def test_the_front_end_tables_list_registered_names_while_registered(scaled_tvd):
    assert "scaled_tvd" in losses.DIVERGENCES and "scaled_tvd" in losses.SPARSE_DIVERGENCES
    assert losses.divergence_names()[-1] == "scaled_tvd"
    unregister_divergence("scaled_tvd")
    assert "scaled_tvd" not in losses.DIVERGENCES and "scaled_tvd" not in losses.divergence_names()
    register_divergence("scaled_tvd", _scaled_tvd, Param("beta", 0.0, 2.0))  # for the teardown


def _recipe(tmp_path, **distill):
    return validate_recipe(recipe_dict(tmp_path, tmp_path / "data.jsonl", distill=distill))


def test_the_recipe_reads_names_and_ranges_from_the_table(tmp_path, scaled_tvd):
    """beta = 1.5 lies outside generalized_jsd's [0, 1] but inside scaled_tvd's [0, 2]."""
    assert _recipe(tmp_path, divergence="scaled_tvd", beta=1.5).distill.divergence == "scaled_tvd"
    with pytest.raises(DistilError, match=r"distill.beta: scaled_tvd takes beta in \[0, 2\]"):
        _recipe(tmp_path, divergence="scaled_tvd", beta=2.5)
    with pytest.raises(DistilError, match=r"distill.beta: generalized_jsd takes beta in \[0, 1\]"):
        _recipe(tmp_path, divergence="generalized_jsd", beta=1.5)
    with pytest.raises(DistilError, match=r"distill.alpha: skew_reverse_kl takes alpha in \[0, 1\)"):
        _recipe(tmp_path, divergence="skew_reverse_kl", alpha=1.0)
    unregister_divergence("scaled_tvd")
    with pytest.raises(DistilError, match=r"distill.divergence: Input should be 'forward_kl'.* or 'tvd'"):
        _recipe(tmp_path, divergence="scaled_tvd")
    register_divergence("scaled_tvd", _scaled_tvd, Param("beta", 0.0, 2.0))  # for the teardown


def test_a_parameter_the_divergence_does_not_take_is_not_checked(tmp_path):
    assert _recipe(tmp_path, divergence="forward_kl", alpha=1.0).distill.alpha == 1.0


@pytest.mark.parametrize(
    "name,param,message",
    [
        ("forward_kl", None, "pick a new name"),
        ("with space", None, "pick a new name"),
        ("gamma_kl", Param("gamma", 0.0, 1.0), "a recipe carries only beta and alpha"),
    ],
)
def test_bad_registrations_are_refused(name, param, message):
    with pytest.raises(ValueError, match=message):
        register_divergence(name, _scaled_tvd, param)
    assert name not in losses.divergence_names() or name == "forward_kl"


def test_built_in_divergences_cannot_be_unregistered():
    with pytest.raises(ValueError, match="not a registered divergence"):
        unregister_divergence("tvd")
    assert "tvd" in losses.DIVERGENCES
