"""recipes/data/instruct_seed_prompts.jsonl: short, varied, distinct general instructions that
the synth stage reads and self-instruct expands, none of them a task family's prompt."""

from collections import Counter
from pathlib import Path

import pytest

from distil.errors import TaskError
from distil.recipe import validate_recipe
from distil.synth.prompts import expansion_messages, seed_prompts
from distil.tasks import check, task_names
from distil.tasks.answers import words
from tests.conftest import REPO

SEEDS = REPO / "recipes" / "data" / "instruct_seed_prompts.jsonl"


def _recipe(path: Path):
    return validate_recipe(
        {
            "teacher": {"model": "tiny-teacher"},
            "student": {"model": "tiny-student"},
            "synth": {"prompts": {"file": str(path), "expand": 10}},
        }
    )


def test_the_synth_stage_reads_every_row_as_a_prompt():
    items, rejects = seed_prompts(_recipe(SEEDS).synth.prompts, seed=0)
    texts = [i.text for i in items]
    assert not rejects and 100 <= len(texts) <= 200
    assert len(set(texts)) == len(texts)
    assert all(len(t) <= 120 and len(words(t)) >= 3 for t in texts)
    message = expansion_messages(texts, index=0, examples=3, seed=0)[0]["content"]
    assert sum(text in message for text in texts) == 3


def test_the_prompts_are_varied():
    texts = [i.text for i in seed_prompts(_recipe(SEEDS).synth.prompts, seed=0)[0]]
    openings = Counter(tuple(words(t)[:2]) for t in texts)
    assert max(openings.values()) <= 0.2 * len(texts)  # not one template with nouns swapped
    assert len({words(t)[0] for t in texts}) >= 20
    assert len({w for t in texts for w in words(t)}) >= 400


def test_no_seed_prompt_is_a_task_prompt():
    texts = [i.text for i in seed_prompts(_recipe(SEEDS).synth.prompts, seed=0)[0]]
    for name in task_names(include_opt_in=True):
        for text in texts:  # a checker refuses any prompt its family cannot have made
            with pytest.raises(TaskError, match=f"not a {name} prompt"):
                check(name, text, "")
