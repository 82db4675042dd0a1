"""Algorithmic task families: the answer is computed from the prompt, never memorised.

    arithmetic  What is 47+38?           -> 85
    sort        Sort: 7 2 9 4            -> 2 4 7 9
    reverse     Reverse: KQZM            -> MZQK
    convert     Convert 7 km to m        -> 7000
    count       Count B in: BKBAB        -> 3

Each family splits on its operands (see `distil.tasks.splitting`), so held-out questions
are new computations, not new wordings of trained ones. Checkers recompute the answer
from the prompt and compare it with the whitespace-normalised response.
"""

import random
import re
import string
from collections.abc import Callable

from distil.errors import TaskError
from distil.tasks import Split, Task, TaskItem, register
from distil.tasks.splitting import is_held_out, normalise

LETTERS = string.ascii_uppercase
COUNT_ALPHABET = "ABCD"
UNITS = {("km", "m"): 1000, ("m", "cm"): 100, ("cm", "mm"): 10, ("kg", "g"): 1000, ("L", "mL"): 1000}
"""Conversions as (larger unit, smaller unit): factor. Both directions are asked."""


def _draw(
    split: Split, rng: random.Random, draw: Callable[[random.Random], tuple[str, str, str]], task: str
) -> TaskItem:
    """Draw (key, prompt, answer) until the key falls in `split`."""
    while True:
        key, prompt, answer = draw(rng)
        if is_held_out(f"{task}:{key}") == (split == "heldout"):
            return TaskItem(task, prompt, answer)


def _parse(pattern: str, prompt: str, task: str) -> re.Match[str]:
    match = re.fullmatch(pattern, prompt.strip())
    if match is None:
        raise TaskError(
            f"{prompt!r} is not a {task} prompt; grade each response with the task that generated its prompt"
        )
    return match


# arithmetic -----------------------------------------------------------------------------


def arithmetic_answer(a: int, op: str, b: int) -> str:
    """The exact result of `a op b` as text."""
    return str(a + b if op == "+" else a - b)


def _arithmetic_draw(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    op = rng.choice("+-")
    if op == "-" and b > a:
        a, b = b, a
    return f"{a}{op}{b}", f"What is {a}{op}{b}?", arithmetic_answer(a, op, b)


def _arithmetic_check(prompt: str, response: str) -> bool:
    a, op, b = _parse(r"What is (\d+)([+-])(\d+)\?", prompt, "arithmetic").groups()
    return normalise(response) == arithmetic_answer(int(a), op, int(b))


# sort -----------------------------------------------------------------------------------


def _sort_draw(rng: random.Random) -> tuple[str, str, str]:
    digits = [str(rng.randint(0, 9)) for _ in range(rng.randint(4, 6))]
    return "".join(digits), "Sort: " + " ".join(digits), " ".join(sorted(digits))


def _sort_check(prompt: str, response: str) -> bool:
    digits = _parse(r"Sort: (\d(?: \d)*)", prompt, "sort").group(1).split()
    return normalise(response) == " ".join(sorted(digits))


# reverse --------------------------------------------------------------------------------


def _reverse_draw(rng: random.Random) -> tuple[str, str, str]:
    word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 5)))
    return word, f"Reverse: {word}", word[::-1]


def _reverse_check(prompt: str, response: str) -> bool:
    word = _parse(r"Reverse: ([A-Z]+)", prompt, "reverse").group(1)
    return normalise(response) == word[::-1]


# convert --------------------------------------------------------------------------------


def convert_answer(value: int, source: str, target: str) -> str | None:
    """`value` in `source` units expressed in `target` units, or None if not a whole number."""
    if (source, target) in UNITS:
        return str(value * UNITS[source, target])
    factor = UNITS.get((target, source))
    if factor is None or value % factor:
        return None
    return str(value // factor)


def _convert_draw(rng: random.Random) -> tuple[str, str, str]:
    (large, small), factor = rng.choice(list(UNITS.items()))
    value = rng.randint(1, 999)
    if rng.random() < 0.5:
        source, target, amount = large, small, value
    else:
        source, target, amount = small, large, value * factor
    answer = convert_answer(amount, source, target)
    return f"{amount}{source}>{target}", f"Convert {amount} {source} to {target}", answer


def _convert_check(prompt: str, response: str) -> bool:
    amount, source, target = _parse(r"Convert (\d+) (\w+) to (\w+)", prompt, "convert").groups()
    answer = convert_answer(int(amount), source, target)
    return answer is not None and normalise(response) == answer


# count ----------------------------------------------------------------------------------


def _count_draw(rng: random.Random) -> tuple[str, str, str]:
    letter = rng.choice(COUNT_ALPHABET)
    text = "".join(rng.choice(COUNT_ALPHABET) for _ in range(rng.randint(4, 8)))
    return f"{letter}:{text}", f"Count {letter} in: {text}", str(text.count(letter))


def _count_check(prompt: str, response: str) -> bool:
    letter, text = _parse(r"Count ([A-Z]) in: ([A-Z]+)", prompt, "count").groups()
    return normalise(response) == str(text.count(letter))


def _family(
    name: str,
    description: str,
    draw: Callable[[random.Random], tuple[str, str, str]],
    check: Callable[[str, str], bool],
) -> Task:
    def make(rng: random.Random, split: Split) -> TaskItem:
        return _draw(split, rng, draw, name)

    return register(Task(name, description, make, check))


_family("arithmetic", "add or subtract two 2-digit numbers", _arithmetic_draw, _arithmetic_check)
_family("sort", "sort 4-6 digits in ascending order", _sort_draw, _sort_check)
_family("reverse", "reverse 3-5 capital letters", _reverse_draw, _reverse_check)
_family(
    "convert", "convert between metric units (km, m, cm, mm, kg, g, L, mL)", _convert_draw, _convert_check
)
_family("count", "count one letter's occurrences in a string of 4-8 letters", _count_draw, _count_check)
