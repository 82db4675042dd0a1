"""Scoring token sequences against a key: de-duplicated (context, token) tuples, green count, p-value.

    score = score_sequences(key, spec, [ids_a, ids_b])  # one pooled test over both
    score.p_value, score.log10_p, score.green, score.kept
    # spec.scheme == "exp-min": an ExpMinScore (score.total_score instead of green)

A token is scored only after a full context of `context_width` tokens. Repeated (context,
token) tuples are counted once (Fernandez et al., 2023, "Three Bricks"): text repeats itself
(templates, lists, a model's favourite phrases), and a repeated tuple repeats its colour, so
counting it again would break the independence the binomial test assumes and flood
unmarked text with false positives. The exp-min scheme's test rests on the same
independence, so it scores the same de-duplicated tuples (`distil.provenance.exponential`).
"""

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from distil.provenance.exponential import ExpMinScore, exp_min_score
from distil.provenance.greenlist import context_seeds, is_green
from distil.provenance.spec import WatermarkKey, WatermarkSpec
from distil.provenance.stats import binomial_log10_sf


@dataclass(frozen=True)
class Score:
    """The outcome of one test."""

    tokens: int
    """Positions with a full context (before de-duplication)."""
    kept: int
    """Distinct (context, token) tuples scored."""
    green: int
    """Of those, how many are green."""
    gamma: float
    """The share expected green without the watermark."""
    log10_p: float
    """log10 of the exact binomial p-value P(X >= green), X ~ Binomial(kept, gamma)."""

    @property
    def p_value(self) -> float:
        return 10.0**self.log10_p

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "p_value": self.p_value}


def windows(ids: Sequence[int], context_width: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every (context, token) of a sequence whose token is at position `start` or later and
    whose context is whole: contexts (N, H) and tokens (N,). A prompt before `start` is
    context only, as it was when the marked model generated the rest."""
    ids = np.asarray(ids, dtype=np.int64)
    first = max(start, context_width)
    if len(ids) <= first:
        return np.zeros((0, context_width), np.int64), np.zeros(0, np.int64)
    contexts = np.lib.stride_tricks.sliding_window_view(ids, context_width)[
        first - context_width : len(ids) - context_width
    ]
    return np.ascontiguousarray(contexts), ids[first:]


def unique_tuples(contexts: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (context, token) rows, in order of first appearance."""
    if len(tokens) == 0:
        return contexts, tokens
    rows = np.concatenate([contexts, tokens[:, None]], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    keep = np.sort(first)
    return contexts[keep], tokens[keep]


def score_tuples(
    key: WatermarkKey, spec: WatermarkSpec, contexts: np.ndarray, tokens: np.ndarray, total: int | None = None
) -> Score | ExpMinScore:
    """Test tuples as given (already de-duplicated) by `spec.scheme`'s test. contexts (N, H),
    tokens (N,)."""
    if spec.scheme == "exp-min":
        return exp_min_score(key, contexts, tokens, total)
    green = int(is_green(context_seeds(key, contexts), tokens, spec.gamma).sum()) if len(tokens) else 0
    kept = len(tokens)
    return Score(
        tokens=kept if total is None else total,
        kept=kept,
        green=green,
        gamma=spec.gamma,
        log10_p=binomial_log10_sf(green, kept, spec.gamma),
    )


def pooled_tuples(
    sequences: Iterable[Sequence[int]], context_width: int, starts: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct tuples over all sequences (each scored from its `starts` entry, if
    given), and how many positions they came from."""
    sequences = list(sequences)
    starts = [0] * len(sequences) if starts is None else starts
    parts = [windows(ids, context_width, start) for ids, start in zip(sequences, starts, strict=True)]
    contexts = np.concatenate([c for c, _ in parts]) if parts else np.zeros((0, context_width), np.int64)
    tokens = np.concatenate([t for _, t in parts]) if parts else np.zeros(0, np.int64)
    unique_contexts, unique_tokens = unique_tuples(contexts, tokens)
    return unique_contexts, unique_tokens, len(tokens)


def score_sequences(
    key: WatermarkKey,
    spec: WatermarkSpec,
    sequences: Iterable[Sequence[int]],
    starts: Sequence[int] | None = None,
) -> Score | ExpMinScore:
    """One pooled, de-duplicated test over token sequences (a text, or many), each scored
    from its `starts` entry (its prompt before it is context only)."""
    contexts, tokens, total = pooled_tuples(sequences, spec.context_width, starts)
    return score_tuples(key, spec, contexts, tokens, total)
