"""The train / held-out split of task items: a stable hash of what an item asks.

A family decides which *key* an item is split on. Algorithmic families use the operands
(`"47+38"`), so a held-out question never appears in training in any wording. Fact
families use the (fact, phrasing) pair, so every fact is asked in training and held-out
prompts ask it in other words.
"""

import zlib

HELD_OUT_SHARE = 5
"""One key in this many belongs to the held-out split."""


def is_held_out(key: str) -> bool:
    """Whether items with this key belong to the held-out split (stable across runs)."""
    return zlib.crc32(key.encode()) % HELD_OUT_SHARE == 0


def normalise(response: str) -> str:
    """A response with surrounding whitespace removed and inner runs of spaces collapsed."""
    return " ".join(response.split())
