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

import hashlib
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from distil.errors import DistilError

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TWO_53 = float(2**53)

SCHEMES = ("kgw", "exp-min")
"""The watermark schemes: KGW green lists, and distortion-free exponential-minimum sampling."""
Scheme = Literal["kgw", "exp-min"]


class WatermarkError(DistilError):
    """A watermark key or setting is missing or invalid."""


@dataclass(frozen=True)
class WatermarkSpec:
    """The public settings of a watermark (everything but the key)."""

    gamma: float = 0.25
    """Share of the vocabulary that is green after each context."""
    delta: float = 2.0
    """Added to the logits of green tokens."""
    context_width: int = 2
    """Tokens before a position that seed its green list (or, exp-min, its uniforms)."""
    scheme: Scheme = "kgw"
    """kgw: green lists and a logit bias; exp-min: keyed sampling, gamma and delta unused."""

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise WatermarkError(f"watermark scheme must be one of {', '.join(SCHEMES)}, got "
                                 f"{self.scheme!r}")
        if not 0 < self.gamma < 1:
            raise WatermarkError(f"watermark gamma must lie in (0, 1), got {self.gamma}")
        if self.delta < 0:
            raise WatermarkError(f"watermark delta must be >= 0, got {self.delta}")
        if self.context_width < 1:
            raise WatermarkError(f"watermark context width must be >= 1, got {self.context_width}")


class WatermarkKey:
    """A secret key, held as a digest; its repr and str never show it."""

    __slots__ = ("_digest",)

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw.strip():
            raise WatermarkError("the watermark key is empty; put a secret in the variable")
        self._digest = hashlib.sha256(b"distil-watermark-key\0" + raw.strip()).digest()

    @classmethod
    def from_env(cls, variable: str) -> "WatermarkKey":
        """The key held in environment variable `variable` (its name, never the key, is passed)."""
        secret = os.environ.get(variable)
        if secret is None:
            raise WatermarkError(f"the watermark key variable {variable} is not set; export it "
                                 f"(export {variable}=...) or name another with the key-env option")
        if not secret.strip():
            raise WatermarkError(f"the watermark key variable {variable} is empty; put the secret in it")
        return cls(secret)

    @classmethod
    def random(cls, rng: np.random.Generator) -> "WatermarkKey":
        """A fresh random key (for the empirical null)."""
        return cls(rng.bytes(32).hex())

    def __repr__(self) -> str:
        return "WatermarkKey(<secret>)"

    __str__ = __repr__

    def seed(self, context: bytes) -> int:
        """The 64-bit keyed hash of a context's bytes."""
        return int.from_bytes(hashlib.blake2b(context, key=self._digest, digest_size=8).digest(),
                              "little")


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


def green_mask(key: WatermarkKey, spec: WatermarkSpec, contexts: np.ndarray,
               vocab_size: int) -> np.ndarray:
    """The green lists after contexts. contexts (N, H>=context_width), only the last
    `context_width` tokens used -> (N, V) bool."""
    contexts = np.asarray(contexts)[:, -spec.context_width:]
    seeds = context_seeds(key, contexts)
    return is_green(seeds[:, None], np.arange(vocab_size)[None, :], spec.gamma)


def green_bias(key: WatermarkKey, spec: WatermarkSpec, contexts: torch.Tensor,
               vocab_size: int) -> torch.Tensor:
    """The KGW logit bias: +delta on each context's green tokens. contexts (N, H) long ->
    (N, V) float32 on the contexts' device."""
    if contexts.shape[1] < spec.context_width:
        raise WatermarkError(f"a context needs {spec.context_width} tokens, got {contexts.shape[1]}")
    mask = green_mask(key, spec, contexts.detach().cpu().numpy(), vocab_size)
    return torch.from_numpy(mask.astype(np.float32) * spec.delta).to(contexts.device)
