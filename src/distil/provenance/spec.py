"""What names a watermark: its public settings (scheme, gamma, delta, context width) and its
secret key. No numpy or torch here, so settings models and the command line read the
defaults without loading them.

    spec = WatermarkSpec(gamma=0.25, delta=2.0, context_width=2)     # or scheme="exp-min"
    key = WatermarkKey.from_env("DISTIL_WATERMARK_KEY")              # its name, never the key
"""

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from distil.errors import DistilError

if TYPE_CHECKING:
    import numpy as np

Scheme = Literal["kgw", "exp-min"]
SCHEMES: tuple[str, ...] = get_args(Scheme)
"""The watermark schemes: KGW green lists, and distortion-free exponential-minimum sampling."""

KEY_ENV = "DISTIL_WATERMARK_KEY"
"""The environment variable `distil serve --watermark` and `distil audit` read the key from,
unless told another."""


class WatermarkError(DistilError):
    """A watermark key or setting is missing or invalid."""


@dataclass(frozen=True)
class WatermarkSpec:
    """The public settings of a watermark (everything but the key). Its defaults are those of
    `distil serve --watermark` and of `distil audit`."""

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
            raise WatermarkError(f"watermark scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
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
        """The key held in environment variable `variable` (its name, never the key, is passed).
        The key is the variable's bytes as the environment holds them, UTF-8 or not."""
        if not variable:
            raise WatermarkError(
                "no watermark key variable named; pass the name of the environment variable holding the key"
            )
        secret = os.environ.get(variable)
        if secret is None:
            raise WatermarkError(
                f"the watermark key variable {variable} is not set; export it "
                f"(export {variable}=...) or name another with the key-env option"
            )
        raw = os.fsencode(secret)  # undoes the escapes Python reads undecodable bytes into
        if not raw.strip():
            raise WatermarkError(f"the watermark key variable {variable} is empty; put the secret in it")
        return cls(raw)

    @classmethod
    def random(cls, rng: "np.random.Generator") -> "WatermarkKey":
        """A fresh random key (for the empirical null)."""
        return cls(rng.bytes(32).hex())

    def __repr__(self) -> str:
        return "WatermarkKey(<secret>)"

    __str__ = __repr__

    def seed(self, context: bytes) -> int:
        """The 64-bit keyed hash of a context's bytes."""
        return int.from_bytes(hashlib.blake2b(context, key=self._digest, digest_size=8).digest(), "little")
