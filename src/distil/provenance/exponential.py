"""The distortion-free watermark (Aaronson, 2022): keyed exponential-minimum sampling and its test.

    tokens = exp_min_choice(seeds, log_probs)       # (N,): the keyed sample from each row of p
    score = exp_min_score(key, contexts, tokens)    # sum of -log(1 - r), exact gamma p-value

After a context, every token v gets a keyed uniform r_v in (0, 1): the context's keyed seed
and the (seed, token) hash of `greenlist`, its top 52 bits read as (m + 0.5) / 2^52, so that r
and 1 - r are both exact doubles and never 0 or 1. Sampling picks argmax_v r_v^(1/p_v), that
is argmin_v -log(r_v) / p_v: the first arrival of independent exponential clocks with rates
p_v, which is token v with probability exactly p_v. Over keys the sample is drawn from p
itself, so the served distribution is unchanged; under the key it is a fixed function of the
context and p, and the chosen tokens have large r.

The test scores a distinct (context, token) by -log(1 - r_token): Exp(1) without the key's
influence, independently of every other distinct tuple, so n tuples sum to Gamma(n, 1) and
the p-value is its exact upper tail (Fernandez et al., 2023, "Three Bricks").
"""

from dataclasses import asdict, dataclass

import numpy as np

from distil.provenance.greenlist import context_seeds, token_hash
from distil.provenance.spec import WatermarkKey
from distil.provenance.stats import gamma_log10_sf

_DOMAIN = np.uint64(0x6578702D6D696E00)  # b"exp-min\0": a key's uniforms are unrelated to its green lists
_TWO_52 = float(2**52)


@dataclass(frozen=True)
class ExpMinScore:
    """The outcome of one exp-min test."""

    tokens: int
    """Positions with a full context (before de-duplication)."""
    kept: int
    """Distinct (context, token) tuples scored."""
    total_score: float
    """Sum of -log(1 - r) over the kept tuples; `kept` expected without the watermark."""
    log10_p: float
    """log10 of the exact p-value P(X >= total_score), X ~ Gamma(kept, 1)."""

    @property
    def p_value(self) -> float:
        return 10.0**self.log10_p

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "p_value": self.p_value}


def _grid(seeds: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The top 52 bits of each (seed, token) hash, as exact float64 integers m in [0, 2^52)."""
    seeds = np.asarray(seeds, dtype=np.uint64) ^ _DOMAIN
    return (token_hash(seeds, tokens) >> np.uint64(12)).astype(np.float64)


def keyed_uniforms(seeds: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """r = (m + 0.5) / 2^52 in (0, 1) for each (context seed, token). seeds (N,) uint64 and
    tokens (N,) or (N, V) broadcastable -> float64 of the broadcast shape."""
    return (_grid(seeds, tokens) + 0.5) / _TWO_52


def tuple_scores(seeds: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """-log(1 - r) of each (context seed, token), 1 - r computed exactly from the hash.
    seeds (N,), tokens (N,) -> (N,) float64, each Exp(1) over keys."""
    return -np.log((_TWO_52 - 0.5 - _grid(seeds, tokens)) / _TWO_52)


def exp_min_choice(seeds: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """The keyed sample from each row: argmin_v -log(r_v) / p_v, taken as
    argmax_v log p_v - log(-log r_v) (a token with p_v = 0 is never chosen).
    seeds (N,) uint64, log_probs (N, V) float64 -> (N,) int64 token ids."""
    clocks = -np.log(
        keyed_uniforms(np.asarray(seeds)[:, None], np.arange(log_probs.shape[1])[None, :])
    )  # (N, V), Exp(1)
    return np.argmax(log_probs - np.log(clocks), axis=1)


def exp_min_score(
    key: WatermarkKey, contexts: np.ndarray, tokens: np.ndarray, total: int | None = None
) -> ExpMinScore:
    """Test tuples as given (already de-duplicated). contexts (N, H), tokens (N,)."""
    kept = len(tokens)
    score = float(tuple_scores(context_seeds(key, contexts), tokens).sum()) if kept else 0.0
    return ExpMinScore(
        tokens=kept if total is None else total,
        kept=kept,
        total_score=score,
        log10_p=gamma_log10_sf(kept, score),
    )
