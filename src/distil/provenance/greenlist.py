"""Keyed green lists (Kirchenbauer et al., 2023): which tokens a watermark favours after a context.

A context is the `context_width` tokens before a position. Its seed is a keyed hash of them,
BLAKE2b in keyed mode (a MAC) under a digest of the secret key; a token is green after that
context when a 64-bit mix of (seed, token) falls below `gamma` of its range. So, over keys,
every (context, token) is green with probability exactly `gamma`, independently of the other
tuples, whatever the text: the null distribution the detector's p-values rest on. The green
list of a context is about `gamma * V` tokens (each token in with probability gamma), not a
fixed count, so that testing one tuple never needs the whole vocabulary.

Integer arithmetic only: the same key gives the same lists on every machine; another key
gives an independent list. The context seed and the (seed, token) hash serve the
distortion-free scheme too (`distil.provenance.exponential`); `WatermarkSpec.scheme` names
which of the two a watermark uses.
"""

import numpy as np
import torch

from distil.provenance.spec import WatermarkError, WatermarkKey, WatermarkSpec

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TWO_53 = float(2**53)


def context_seeds(key: WatermarkKey, contexts: np.ndarray) -> np.ndarray:
    """Keyed seeds of contexts. contexts: (N, H) token ids -> (N,) uint64."""
    rows = np.ascontiguousarray(contexts, dtype="<i8")
    return np.fromiter((key.seed(row.tobytes()) for row in rows), dtype=np.uint64, count=len(rows))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads every input bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX_1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX_2
    return x ^ (x >> np.uint64(31))


def token_hash(seeds: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The 64-bit hash of each (context seed, token). seeds (N,) uint64 and tokens (N,) or
    (N, V) broadcastable -> uint64 of the broadcast shape."""
    with np.errstate(over="ignore"):
        tokens = np.asarray(tokens).astype(np.uint64)
        return _mix(np.asarray(seeds, dtype=np.uint64) ^ _mix(tokens * _GOLDEN + _GOLDEN))


def is_green(seeds: np.ndarray, tokens: np.ndarray, gamma: float) -> np.ndarray:
    """Whether each token is green after its context. seeds (N,) uint64 and tokens (N,) or
    (N, V) broadcastable -> bool of the broadcast shape."""
    return (token_hash(seeds, tokens) >> np.uint64(11)).astype(np.float64) < gamma * _TWO_53


def green_mask(key: WatermarkKey, spec: WatermarkSpec, contexts: np.ndarray, vocab_size: int) -> np.ndarray:
    """The green lists after contexts. contexts (N, H>=context_width), only the last
    `context_width` tokens used -> (N, V) bool."""
    contexts = np.asarray(contexts)[:, -spec.context_width :]
    seeds = context_seeds(key, contexts)
    return is_green(seeds[:, None], np.arange(vocab_size)[None, :], spec.gamma)


def green_bias(
    key: WatermarkKey, spec: WatermarkSpec, contexts: torch.Tensor, vocab_size: int
) -> torch.Tensor:
    """The KGW logit bias: +delta on each context's green tokens. contexts (N, H) long ->
    (N, V) float32 on the contexts' device."""
    if contexts.shape[1] < spec.context_width:
        raise WatermarkError(f"a context needs {spec.context_width} tokens, got {contexts.shape[1]}")
    mask = green_mask(key, spec, contexts.detach().cpu().numpy(), vocab_size)
    return torch.from_numpy(mask.astype(np.float32) * spec.delta).to(contexts.device)
