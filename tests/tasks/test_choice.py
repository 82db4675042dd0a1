"""The opt-in `between` family: several right answers, drawn uniformly, all accepted; and the
default families, prompts and recipes exactly as they were without it."""

import hashlib
import json
import random
from collections import Counter

import pytest

from distil.errors import RecipeError, TaskError
from distil.evaluate.tasks import heldout_items
from distil.recipe import validate_recipe
from distil.synth.prompts import seed_prompts
from distil.tasks import TASKS, check, generate_items, resolve_tasks, task_names
from distil.tasks.choice import MAX_CHOICES, MIN_CHOICES, between_answers, parse_between
from distil.tasks.splitting import is_held_out

DEFAULT_FAMILIES = ["arithmetic", "sort", "reverse", "convert", "count", "capital", "element"]


def _digest(items: list) -> str:
    return hashlib.sha256(json.dumps([[i.task, i.prompt, i.answer] for i in items]).encode()).hexdigest()


def test_between_is_opt_in_and_the_defaults_are_unchanged():
    assert task_names() == DEFAULT_FAMILIES
    assert task_names(include_opt_in=True)[: len(DEFAULT_FAMILIES) + 1] == [*DEFAULT_FAMILIES, "between"]
    assert resolve_tasks(["all"]) == DEFAULT_FAMILIES
    assert resolve_tasks(["all", "between", "sort"]) == [*DEFAULT_FAMILIES, "between"]
    held = generate_items("heldout", 5, seed=0)  # digests taken before `between` existed
    assert _digest(held) == "41443a0b0de29debb2e3549c49278c24751de3bb02f53d5bb27ebb9645965443"
    train = generate_items("train", 300, seed=0)
    assert _digest(train) == "4bdbe2af2ef564a3d94e661b2d55a71c95f6a26c772709a403f5ffe7167b4871"
    assert generate_items("train", 300, seed=0, tasks=["all"]) == train
    with_between = generate_items("heldout", 5, seed=0, tasks=["all", "between"])
    assert with_between[: len(held)] == held and {i.task for i in with_between[len(held) :]} == {"between"}


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_items_are_valid_two_digit_ranges_with_two_to_eight_answers(split):
    items = generate_items(split, 150, seed=2, tasks=["between"])
    crossing = 0
    for item in items:
        low, high = parse_between(item.prompt)
        valid = between_answers(low, high)
        assert 10 <= low < high <= 99 and MIN_CHOICES <= len(valid) <= MAX_CHOICES, item
        assert item.answer in valid and check("between", item.prompt, f" {item.answer}\n")
        crossing += low // 10 != high // 10
    assert crossing > len(items) // 4  # ranges often cross a decade


def test_answers_are_spread_over_the_valid_ones():
    rng = random.Random(0)
    split = "heldout" if is_held_out("between:27<33") else "train"
    answers = Counter()
    while sum(answers.values()) < 2000:
        item = TASKS["between"].make(rng, split)
        if parse_between(item.prompt) == (27, 33):
            answers[item.answer] += 1
    assert set(answers) == {"28", "29", "30", "31", "32"}
    assert min(answers.values()) > 2000 / 5 * 0.75  # roughly uniform


def test_checker_accepts_every_valid_answer_and_nothing_else():
    prompt = "Name a number between 27 and 33."
    for answer in ("28", "29", "30", "31", "32", "  30 "):
        assert check("between", prompt, answer)
    for wrong in ("27", "33", "26", "34", "", "3 0", "030", "30.", "thirty", "28 29", "-30"):
        assert not check("between", prompt, wrong), wrong
    assert check("between", "Pick a number between 8 and 11.", "10")
    assert not check("between", "Pick a number between 5 and 6.", "5")  # nothing is between


def test_checker_refuses_a_prompt_of_another_family():
    with pytest.raises(TaskError, match="not a between prompt"):
        check("between", "What is 27+33?", "60")
    with pytest.raises(TaskError, match="not a between prompt"):
        check("between", "Name a number between 27 and 33", "30")


def test_train_and_heldout_bounds_are_disjoint():
    train = generate_items("train", 10_000, seed=0, tasks=["between"], at_most=True)
    held = generate_items("heldout", 10_000, seed=1, tasks=["between"], at_most=True)
    assert len(held) >= 100 and len(train) >= 4 * len(held) // 2
    train_bounds = {parse_between(i.prompt) for i in train}
    held_bounds = {parse_between(i.prompt) for i in held}
    assert not train_bounds & held_bounds


RECIPE = {"teacher": {"model": "tiny-teacher"}, "student": {"model": "tiny-student"}}


def test_recipes_may_name_between_for_synth_and_eval():
    recipe = validate_recipe(
        {
            **RECIPE,
            "synth": {"prompts": {"tasks": ["all", "between"], "per_task": 3}},
            "eval": {"tasks": ["between"], "per_task": 4},
        }
    )
    prompts, _ = seed_prompts(recipe.synth.prompts, seed=0)
    sources = Counter(p.source for p in prompts)
    assert sources == {f"task:{name}": 3 for name in [*DEFAULT_FAMILIES, "between"]}
    assert [i.task for i in heldout_items(recipe.eval, seed=0)] == ["between"] * 4
    both = validate_recipe(
        {**RECIPE, "data": {"train": "x.jsonl"}, "eval": {"tasks": ["all", "between"], "per_task": 2}}
    )
    assert Counter(i.task for i in heldout_items(both.eval, seed=0)) == {
        name: 2 for name in [*DEFAULT_FAMILIES, "between"]
    }


def test_all_still_means_the_default_families_in_recipes():
    recipe = validate_recipe(
        {
            **RECIPE,
            "synth": {"prompts": {"tasks": ["all"], "per_task": 3}},
            "eval": {"tasks": ["all"], "per_task": 2},
        }
    )
    prompts, _ = seed_prompts(recipe.synth.prompts, seed=0)
    assert [p.text for p in prompts] == [i.prompt for i in generate_items("train", 3, seed=0)]
    assert heldout_items(recipe.eval, seed=0) == generate_items("heldout", 2, seed=0)


@pytest.mark.parametrize(
    "section",
    [
        {"synth": {"prompts": {"tasks": ["all", "betwen"]}}},
        {"data": {"train": "x.jsonl"}, "eval": {"tasks": ["betwen"]}},
    ],
)
def test_recipes_refuse_an_unknown_family_and_name_the_field(section):
    field = "synth.prompts.tasks" if "synth" in section else "eval.tasks"
    with pytest.raises(RecipeError, match=rf"unknown task families \['betwen'\] in {field}"):
        validate_recipe({**RECIPE, **section})
