"""The divergence table: each divergence written once, over two log-probability rows.

An entry takes `log_s` and `log_t`, the student's and the teacher's normalised
log-probabilities over the same K outcomes, (N, K) each, and returns (N,) nats. The front
ends only build that pair: dense (log_softmax(logits / T), distil.losses.dense), sparse (a
stored top-k plus a tail bucket, distil.losses.sparse) and aligned (span outcomes of two
tokenizers, distil.losses.cross_tokenizer). The recipe's `distill.divergence` accepts the
table's names and checks `distill.beta` / `distill.alpha` against the range declared here.

Conventions: p_t is the teacher distribution, p_s the student's.
- forward_kl      KL(p_t || p_s)                       mode-covering, the classic KD loss
- reverse_kl      KL(p_s || p_t)                       mode-seeking
- generalized_jsd beta*KL(p_t||m) + (1-beta)*KL(p_s||m), m = beta*p_t + (1-beta)*p_s;
                  beta=0 is forward KL and beta=1 reverse KL (GKD, Agarwal et al. 2024)
- skew_forward_kl KL(p_t || a*p_t + (1-a)*p_s)         (DistiLLM, Ko et al. 2024)
- skew_reverse_kl KL(p_s || (1-a)*p_t + a*p_s)
- tvd             0.5 * sum |p_t - p_s|

Add one with `register_divergence(name, fn, param)` (docs/architecture.md, "Add a divergence").
"""

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

PARAMETERS = ("beta", "alpha")
"""The parameters a recipe carries (`distill.beta`, `distill.alpha`); a divergence takes one or none."""


@dataclass(frozen=True)
class Param:
    """The one parameter a divergence takes: its name (one of PARAMETERS) and its range,
    [low, high] or, with `high_open`, [low, high)."""

    name: str
    low: float
    high: float
    high_open: bool = False

    def holds(self, value: float) -> bool:
        """Whether `value` lies in the range (NaN never does)."""
        return self.low <= value and (value < self.high if self.high_open else value <= self.high)

    def range_text(self) -> str:
        """The range as written in maths, e.g. [0, 1)."""
        return f"[{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class TableEntry:
    """A table entry: fn(log_s, log_t[, param]) -> (N,), and the parameter it takes."""

    fn: Callable[..., Tensor]
    param: Param | None = None


def kl_from_log_probs(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per row from log-probabilities. (N, K), (N, K) -> (N,).

    Entries where p is exactly 0 contribute 0 (the 0 * log 0 = 0 convention), also when
    log q is -inf there, and they pass no NaN into the gradient.
    """
    p = log_p.exp()
    support = p > 0
    diff = torch.where(support, log_p - log_q, torch.zeros_like(log_p))
    return (p * diff).sum(dim=-1)


def log_mixture(log_p: Tensor, log_q: Tensor, weight_p: float) -> Tensor:
    """log(w*p + (1-w)*q) computed stably from log-probabilities, for 0 < w < 1. (N, K) -> (N, K).

    Where p and q are both 0 (an outcome masked on both sides) the result is -inf with a
    zero gradient: a log-sum-exp over two -inf terms has the right value but a NaN gradient,
    which would spread to the whole row through the softmax.
    """
    both_zero = torch.isneginf(log_p) & torch.isneginf(log_q)  # (N, K)
    stacked = torch.stack([log_p + math.log(weight_p), log_q + math.log1p(-weight_p)])
    mixed = torch.logsumexp(stacked.masked_fill(both_zero, 0.0), dim=0)
    return mixed.masked_fill(both_zero, float("-inf"))


def forward_kl_of(log_s: Tensor, log_t: Tensor) -> Tensor:
    """KL(p_t || p_s). (N, K), (N, K) -> (N,)."""
    return kl_from_log_probs(log_t, log_s)


def reverse_kl_of(log_s: Tensor, log_t: Tensor) -> Tensor:
    """KL(p_s || p_t). (N, K), (N, K) -> (N,)."""
    return kl_from_log_probs(log_s, log_t)


def generalized_jsd_of(log_s: Tensor, log_t: Tensor, beta: float) -> Tensor:
    """beta*KL(p_t || m) + (1-beta)*KL(p_s || m), m = beta*p_t + (1-beta)*p_s; beta = 0 is
    forward KL and beta = 1 reverse KL (the GKD convention). (N, K), (N, K) -> (N,)."""
    if beta == 0:
        return kl_from_log_probs(log_t, log_s)
    if beta == 1:
        return kl_from_log_probs(log_s, log_t)
    log_m = log_mixture(log_t, log_s, beta)
    return beta * kl_from_log_probs(log_t, log_m) + (1 - beta) * kl_from_log_probs(log_s, log_m)


def skew_forward_kl_of(log_s: Tensor, log_t: Tensor, alpha: float) -> Tensor:
    """KL(p_t || a*p_t + (1-a)*p_s); a = 0 is forward KL. (N, K), (N, K) -> (N,)."""
    return kl_from_log_probs(log_t, log_s if alpha == 0 else log_mixture(log_t, log_s, alpha))


def skew_reverse_kl_of(log_s: Tensor, log_t: Tensor, alpha: float) -> Tensor:
    """KL(p_s || (1-a)*p_t + a*p_s); a = 0 is reverse KL. (N, K), (N, K) -> (N,)."""
    return kl_from_log_probs(log_s, log_t if alpha == 0 else log_mixture(log_s, log_t, alpha))


def tvd_of(log_s: Tensor, log_t: Tensor) -> Tensor:
    """Total variation distance 0.5 * sum |p_t - p_s|. (N, K), (N, K) -> (N,)."""
    return 0.5 * (log_t.exp() - log_s.exp()).abs().sum(dim=-1)


BUILT_IN = {
    "forward_kl": TableEntry(forward_kl_of),
    "reverse_kl": TableEntry(reverse_kl_of),
    "generalized_jsd": TableEntry(generalized_jsd_of, Param("beta", 0.0, 1.0)),
    "skew_forward_kl": TableEntry(skew_forward_kl_of, Param("alpha", 0.0, 1.0, high_open=True)),
    "skew_reverse_kl": TableEntry(skew_reverse_kl_of, Param("alpha", 0.0, 1.0, high_open=True)),
    "tvd": TableEntry(tvd_of),
}
_TABLE: dict[str, TableEntry] = dict(BUILT_IN)


def register_divergence(name: str, fn: Callable[..., Tensor], param: Param | None = None) -> None:
    """Add the divergence `name`: fn(log_s, log_t) -> (N,), or fn(log_s, log_t, <param.name>)
    when it takes `param`. The recipe then accepts `distill.divergence: name`, and the dense,
    sparse, fused and aligned paths compute it."""
    if not name.isidentifier() or name in _TABLE:
        raise ValueError(
            f"cannot register divergence {name!r}: pick a new name made of letters, "
            f"digits and _ (taken: {sorted(_TABLE)})"
        )
    if param is not None and param.name not in PARAMETERS:
        raise ValueError(
            f"divergence {name!r} takes {param.name!r}, but a recipe carries only "
            f"{' and '.join(PARAMETERS)}; name its parameter one of them"
        )
    _TABLE[name] = TableEntry(fn, param)


def unregister_divergence(name: str) -> None:
    """Remove a divergence added with `register_divergence` (the built-in ones stay)."""
    if name in BUILT_IN or name not in _TABLE:
        raise ValueError(
            f"{name!r} is not a registered divergence; registered: {sorted(set(_TABLE) - set(BUILT_IN))}"
        )
    del _TABLE[name]


def divergence_names() -> list[str]:
    """The names of the table, built-in ones first, in the order they were added."""
    return list(_TABLE)


def divergence_params(name: str, beta: float, alpha: float) -> dict[str, float]:
    """The one parameter the divergence `name` takes ({"beta": beta}, {"alpha": alpha} or {}),
    checked against its range: every path calls this before computing."""
    if name not in _TABLE:
        raise ValueError(f"unknown divergence {name!r}; choose one of {sorted(_TABLE)}")
    param = _TABLE[name].param
    if param is None:
        return {}
    value = {"beta": beta, "alpha": alpha}[param.name]
    if problem := parameter_problem(name, param.name, value):
        raise ValueError(f"{problem} (got {value})")
    return {param.name: value}


def parameter_problem(name: str, parameter: str, value: float) -> str | None:
    """What is wrong with `parameter` = `value` for the divergence `name`; None when that
    divergence does not take it or the value lies in its declared range."""
    param = _TABLE[name].param if name in _TABLE else None
    if param is None or param.name != parameter or param.holds(value):
        return None
    return f"{name} takes {parameter} in {param.range_text()}; set a value there"


def bound_divergence(
    name: str, *, beta: float = 0.5, alpha: float = 0.1
) -> Callable[[Tensor, Tensor], Tensor]:
    """The divergence `name` with its parameter checked and bound: (log_s, log_t) -> (N,),
    both (N, K) normalised log-probability rows over the same outcomes. Every front end
    computes through this."""
    params = divergence_params(name, beta, alpha)
    return partial(_TABLE[name].fn, **params)


class FrontEnd(Mapping[str, Callable[..., Tensor]]):
    """The table seen through one front end: name -> partial(dispatch, name). A live view, so a
    registered divergence appears in it (DIVERGENCES, SPARSE_DIVERGENCES)."""

    def __init__(self, dispatch: Callable[..., Tensor]) -> None:
        self._dispatch = dispatch

    def __getitem__(self, name: str) -> Callable[..., Tensor]:
        if name not in _TABLE:
            raise KeyError(name)
        return partial(self._dispatch, name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_TABLE))

    def __len__(self) -> int:
        return len(_TABLE)
