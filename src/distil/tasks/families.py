"""The built-in task families (each registers itself with `distil.tasks.register`)."""

import random

from distil.tasks import Split, Task, TaskItem, register


def _held_out(text: str) -> bool:
    """A deterministic fifth of all prompts belongs to the held-out split."""
    return sum(text.encode()) % 5 == 0


def _reverse_make(rng: random.Random, split: Split) -> TaskItem:
    letters = "abcdefghijklmnopqrstuvwxyz"
    while True:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 7)))
        prompt = f"Reverse the word: {word}"
        if _held_out(prompt) == (split == "heldout"):
            return TaskItem("reverse", prompt, word[::-1])


def _reverse_check(prompt: str, response: str) -> bool:
    return response.strip() == prompt.rsplit(" ", 1)[-1][::-1]


register(Task("reverse", "reverse a short lowercase word", _reverse_make, _reverse_check))
