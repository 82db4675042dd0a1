"""The opt-in instruct families: graded by the answer a chatty response names, split with no
shared prompt, named together as the group `instruct`, and `all` exactly as it was."""

from collections import Counter

import pytest

from distil.errors import RecipeError, TaskError
from distil.evaluate.tasks import heldout_items
from distil.recipe import validate_recipe
from distil.synth.prompts import seed_prompts
from distil.tasks import (
    TASKS,
    Task,
    check,
    generate_items,
    register,
    resolve_tasks,
    task_groups,
    task_names,
    unknown_tasks_error,
)
from distil.tasks.answers import named
from distil.tasks.instruct import FIRST_LETTER, NUMBER_DIGITS, InstructFamily, NamedAnswerFamily
from distil.tasks.splitting import is_held_out

INSTRUCT = [
    "plural",
    "past_tense",
    "opposite",
    "capital_city",
    "language",
    "continent",
    "occupation",
    "first_letter",
    "number_digits",
]
DEFAULT_FAMILIES = ["arithmetic", "sort", "reverse", "convert", "count", "capital", "element"]
ITEM_SPLIT = [FIRST_LETTER, NUMBER_DIGITS]
FACT_SPLIT = [TASKS[name].make.__self__ for name in INSTRUCT if TASKS[name].make.__self__ not in ITEM_SPLIT]


def _defined_prompts(family: InstructFamily, split: str) -> set[str]:
    """Every prompt of `split`, read off the family's table, phrasings and split rule."""
    return {
        phrasing.format(x=subject)
        for i, subject in enumerate(family.subjects)
        for j, phrasing in enumerate(family.phrasings)
        if family.held_out(i, j) == (split == "heldout")
    }


def _all_items(name: str, split: str) -> list:
    """Every item of `split` that `generate_items` makes: as many as the definition holds."""
    expected = _defined_prompts(TASKS[name].make.__self__, split)
    assert TASKS[name].size(split) == len(expected)
    items = generate_items(split, len(expected), seed=0, tasks=[name])
    assert {i.prompt for i in items} == expected
    assert generate_items(split, len(expected) + 5, seed=0, tasks=[name], at_most=True) == items
    with pytest.raises(TaskError, match=f"cannot make {len(expected) + 1} .* \\(it has {len(expected)}\\)"):
        generate_items(split, len(expected) + 1, seed=0, tasks=[name])
    return items


def test_the_group_names_the_instruct_families_and_all_is_unchanged():
    assert task_groups() == {"instruct": INSTRUCT}
    assert resolve_tasks(["instruct"]) == INSTRUCT
    assert resolve_tasks(["all", "instruct", "plural"]) == [*DEFAULT_FAMILIES, *INSTRUCT]
    assert task_names() == DEFAULT_FAMILIES
    assert task_names(include_opt_in=True) == [*DEFAULT_FAMILIES, "between", *INSTRUCT]
    assert resolve_tasks(["all"]) == DEFAULT_FAMILIES
    assert all(TASKS[name].opt_in and TASKS[name].description for name in INSTRUCT)
    assert generate_items("heldout", 3, seed=0, tasks=["all"]) == generate_items("heldout", 3, seed=0)


def test_unknown_names_are_refused_with_the_group_listed():
    assert unknown_tasks_error(["instruct", "all", "plural"], "eval.tasks") is None
    problem = unknown_tasks_error(["instrukt"], "eval.tasks")
    assert problem.startswith("unknown task families ['instrukt'] in eval.tasks")
    assert f"or instruct for {INSTRUCT}" in problem
    with pytest.raises(TaskError, match="unknown task"):
        resolve_tasks(["instrukt"])


@pytest.mark.parametrize("group", ["all", "sort", "plural"])
def test_a_group_name_must_not_be_all_or_a_family(group):
    task = Task("new_family", "x", TASKS["sort"].make, TASKS["sort"].check, group=group)
    with pytest.raises(TaskError, match="group name must differ"):
        register(task)
    with pytest.raises(TaskError, match="group name must differ"):
        register(Task("instruct", "x", TASKS["sort"].make, TASKS["sort"].check))
    assert "new_family" not in TASKS and "instruct" not in TASKS


RECIPE = {"teacher": {"model": "tiny-teacher"}, "student": {"model": "tiny-student"}}


def test_recipes_may_name_the_group_for_synth_and_eval():
    recipe = validate_recipe(
        {
            **RECIPE,
            "synth": {"prompts": {"tasks": ["instruct"], "per_task": 3}},
            "eval": {"tasks": ["instruct"], "per_task": 4},
        }
    )
    prompts, _ = seed_prompts(recipe.synth.prompts, seed=0)
    assert Counter(p.source for p in prompts) == {f"task:{name}": 3 for name in INSTRUCT}
    assert Counter(i.task for i in heldout_items(recipe.eval, seed=0)) == dict.fromkeys(INSTRUCT, 4)
    with pytest.raises(RecipeError, match=r"unknown task families \['instrukt'\] in eval.tasks"):
        validate_recipe({**RECIPE, "data": {"train": "x.jsonl"}, "eval": {"tasks": ["instrukt"]}})


def test_generation_is_deterministic_per_seed():
    first = generate_items("train", 30, seed=4, tasks=["instruct"])
    assert first == generate_items("train", 30, seed=4, tasks=["instruct"])
    assert first != generate_items("train", 30, seed=5, tasks=["instruct"])
    assert Counter(i.task for i in first) == dict.fromkeys(INSTRUCT, 30)


def test_at_least_500_heldout_prompts_and_60_per_family():
    held = {name: _all_items(name, "heldout") for name in INSTRUCT}
    assert min(len(items) for items in held.values()) >= 60
    assert sum(len(items) for items in held.values()) >= 500
    assert len(generate_items("heldout", 60, seed=0, tasks=["instruct"])) == 540


@pytest.mark.parametrize("name", INSTRUCT)
def test_train_and_heldout_prompts_are_disjoint_and_references_pass(name):
    train, held = _all_items(name, "train"), _all_items(name, "heldout")
    assert not {i.prompt for i in train} & {i.prompt for i in held}
    for item in train + held:
        assert check(name, item.prompt, item.answer), item
        assert check(name, item.prompt, f"The answer is {item.answer}."), item


@pytest.mark.parametrize("family", ITEM_SPLIT, ids=lambda f: f.name)
def test_item_split_families_hold_out_words_never_asked_in_training(family: InstructFamily):
    train = {family.subject_of(i.prompt) for i in _all_items(family.name, "train")}
    held = {family.subject_of(i.prompt) for i in _all_items(family.name, "heldout")}
    assert train | held == set(family.table) and not train & held
    assert held == {s for s in family.table if is_held_out(f"{family.name}:{s}")}


@pytest.mark.parametrize("family", FACT_SPLIT, ids=lambda f: f.name)
def test_fact_split_families_teach_every_fact_and_test_it_in_other_words(family: InstructFamily):
    trained = {family.parse(i.prompt) for i in _all_items(family.name, "train")}
    assert {subject for subject, _ in trained} == set(family.table)
    for item in _all_items(family.name, "heldout"):
        subject, phrasing = family.parse(item.prompt)
        assert (subject, phrasing) not in trained


def test_no_prompt_belongs_to_two_families():
    owners: dict[str, str] = {}
    for name in task_names(include_opt_in=True):
        family = getattr(TASKS[name].make, "__self__", None)
        for split in ("train", "heldout"):
            prompts = (
                _defined_prompts(family, split)
                if family is not None
                else {i.prompt for i in generate_items(split, 200, seed=0, tasks=[name])}
            )
            for prompt in prompts:
                assert owners.setdefault(prompt, name) == name, (prompt, name)


@pytest.mark.parametrize("family", FACT_SPLIT, ids=lambda f: f.name)
def test_no_prompt_names_its_own_answer(family: NamedAnswerFamily):
    for item in _all_items(family.name, "train") + _all_items(family.name, "heldout"):
        subject = family.subject_of(item.prompt)
        assert not named(item.prompt, family.accepted[subject]), item


@pytest.mark.parametrize(
    ("task", "prompt", "right", "wrong"),
    [
        (
            "plural",
            "What is the plural of 'mouse'?",
            ["The plural of 'mouse' is 'mice'.", "Mice."],
            [
                "The plural of 'mouse' is 'mouses'.",
                "mice or mouses",
                "The plural of mouse is mouse.",
                "mice, geese and teeth",
            ],
        ),
        (
            "past_tense",
            "What is the past tense of 'go'?",
            ['The past tense of "go" is "went".'],
            ['The past tense of "go" is "goed".', "went or gone", "gone", "It is go."],
        ),
        (
            "opposite",
            "What is the opposite of 'hot'?",
            ["The opposite of 'hot' is 'cold'.", "cold"],
            ["The opposite of hot is warm.", "cold, small or dark", "The opposite of hot is not hot."],
        ),
        (
            "capital_city",
            "What is the capital city of France?",
            ["The capital of France is Paris.", "Paris"],
            ["The capital of France is Lyon, not Paris or Berlin.", "Berlin", "France is in Europe."],
        ),
        (
            "capital_city",
            "What is the capital city of Australia?",
            ["Canberra is the capital of Australia."],
            ["Sydney", "Canberra or Sydney", "Canberra, Melbourne, Sydney"],
        ),
        ("capital_city", "What is the capital city of Colombia?", ["Bogotá."], ["Medellín and Lima"]),
        (
            "language",
            "What language is spoken in Brazil?",
            ["The main language of Brazil is Portuguese."],
            ["Spanish", "Portuguese and Spanish", "People in Brazil speak many languages."],
        ),
        (
            "continent",
            "Which continent is Peru in?",
            ["Peru is located in South America, on the Pacific coast."],
            ["North America", "Peru is in the Americas.", "South America or Africa"],
        ),
        (
            "occupation",
            "What do you call a person who bakes bread and cakes?",
            ["A baker!", "Such a person is called a baker."],
            ["A chef or a baker.", "A cook.", "Someone who loves bread."],
        ),
        (
            "first_letter",
            "What is the first letter of the word 'tiger'?",
            ["The first letter of the word 'tiger' is 'T'.", "t", "It's T."],
            ["The first letter of the word 'tiger' is 'E'.", "T, I, G, E, R", "Tiger starts with a T or G."],
        ),
        (
            "number_digits",
            "Write 'seventy-six' as a number.",
            ["Seventy-six is 76.", "76"],
            ["67", "76 or 67", "Seventy-six is 7 and 6.", "seventy-six"],
        ),
    ],
)
def test_checkers_on_realistic_answers(task, prompt, right, wrong):
    for response in right:
        assert check(task, prompt, response), response
    for response in wrong:
        assert not check(task, prompt, response), response


def test_checker_refuses_a_prompt_of_another_family():
    with pytest.raises(TaskError, match="not a plural prompt"):
        check("plural", "What is the capital city of France?", "Paris")
    with pytest.raises(TaskError, match="not a number_digits prompt"):
        check("number_digits", "Write 'one hundred' as a number.", "100")
