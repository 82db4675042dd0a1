"""Choice families: prompts with several right answers, so that a model trained on many
draws of them spreads its probability over the valid answers instead of betting on one.

    between   Name a number between 23 and 29.   -> any of 24 25 26 27 28

"Between" is strict: the bounds themselves are wrong. Each item has 2 to 8 valid answers,
two-digit numbers, and ranges may cross a decade (27 and 33). The reference answer is ONE
valid answer drawn uniformly by the item's RNG, so a teacher trained on the references
learns the spread (the soft targets logit distillation can pass on); the checker
recomputes the valid set from the prompt and accepts any member of it.

Opt-in: these families are not in `task_names()` or `all`, so the default job's prompts
and figures do not move; name them (`tasks: [all, between]`). Split on the bounds, as the
algorithmic families split on their operands.
"""

import random
import re

from distil.errors import TaskError
from distil.tasks import Split, Task, TaskItem, register
from distil.tasks.splitting import is_held_out, normalise

BETWEEN_PHRASINGS = ("Name a number between {low} and {high}.", "Pick a number between {low} and {high}.")
"""The wordings of a `between` prompt; the split ignores them (it hashes the bounds)."""
MIN_CHOICES, MAX_CHOICES = 2, 8
"""How many whole numbers lie strictly between the bounds."""
_BETWEEN_PROMPT = re.compile(
    "|".join(
        re.escape(p).replace(r"\{low\}", r"(\d+)", 1).replace(r"\{high\}", r"(\d+)", 1)
        for p in BETWEEN_PHRASINGS
    )
)


def between_answers(low: int, high: int) -> list[str]:
    """Every whole number strictly between `low` and `high`, as text, ascending."""
    return [str(n) for n in range(low + 1, high)]


def parse_between(prompt: str) -> tuple[int, int]:
    """The (low, high) bounds of a `between` prompt; TaskError if it is not one."""
    match = _BETWEEN_PROMPT.fullmatch(prompt.strip())
    if match is None:
        raise TaskError(
            f"{prompt!r} is not a between prompt; grade each response with the task that generated its prompt"
        )
    low, high = (int(g) for g in match.groups() if g is not None)
    return low, high


def _between_make(rng: random.Random, split: Split) -> TaskItem:
    """Bounds drawn until they fall in `split`, then one valid answer drawn uniformly."""
    while True:
        choices = rng.randint(MIN_CHOICES, MAX_CHOICES)
        low = rng.randint(10, 98 - choices)
        high = low + choices + 1
        if is_held_out(f"between:{low}<{high}") == (split == "heldout"):
            break
    prompt = rng.choice(BETWEEN_PHRASINGS).format(low=low, high=high)
    return TaskItem("between", prompt, rng.choice(between_answers(low, high)))


def _between_check(prompt: str, response: str) -> bool:
    return normalise(response) in between_answers(*parse_between(prompt))


register(
    Task(
        "between",
        "name any whole number strictly between two 2-digit bounds (2-8 valid answers)",
        _between_make,
        _between_check,
        opt_in=True,
    )
)
