"""Task families: checkers grade exactly, splits are disjoint, generation is seeded."""

import random

import pytest

from distil.errors import TaskError
from distil.tasks import TASKS, TaskItem, accuracy, check, generate_items, task_names
from distil.tasks.facts import CAPITAL, ELEMENT, FactFamily

ALGORITHMIC = ["arithmetic", "sort", "reverse", "convert", "count"]


def test_at_least_six_families_with_descriptions():
    names = task_names()
    assert len(names) >= 6
    assert set(ALGORITHMIC + ["capital", "element"]) <= set(names)
    assert all(TASKS[n].description for n in names)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_checkers_accept_reference_answers(split):
    for item in generate_items(split, per_task=120, seed=3):
        assert check(item.task, item.prompt, item.answer), item
        assert check(item.task, item.prompt, f"  {item.answer}\n"), item


def _wrong_answers(item: TaskItem, other: TaskItem) -> list[str]:
    """Plausible mistakes: off by one, a dropped or extra character, garbage, another answer."""
    answer = item.answer
    wrong = [
        answer + "0",
        answer[:-1],
        "",
        "I do not know",
        answer + " " + answer,
        answer.lower() if answer != answer.lower() else answer.upper(),
    ]
    if answer.isdigit():
        wrong += [str(int(answer) + 1), str(int(answer) - 1) if int(answer) else "-1"]
    if len(answer.replace(" ", "")) > 1 and answer != answer[::-1]:
        wrong.append(answer[::-1])
    if other.answer != answer:
        wrong.append(other.answer)
    return [w for w in wrong if w.strip() != answer]


@pytest.mark.parametrize("task", ALGORITHMIC + ["capital", "element"])
def test_checkers_reject_wrong_and_garbled_answers(task):
    items = generate_items("heldout", per_task=80, seed=5, tasks=[task])
    for item, other in zip(items, items[1:] + items[:1], strict=True):
        for wrong in _wrong_answers(item, other):
            assert not check(task, item.prompt, wrong), (item, wrong)


@pytest.mark.parametrize(
    ("task", "prompt", "right", "wrong"),
    [
        ("arithmetic", "What is 347+85?", "432", "431"),
        ("arithmetic", "What is 905-917?", "-12", "12"),
        ("sort", "Sort: 7 2 9 2", "2 2 7 9", "2 7 9"),
        ("reverse", "Reverse: KQZM", "MZQK", "KQZM"),
        ("convert", "Convert 7 km to m", "7000", "700"),
        ("convert", "Convert 4000 mL to L", "4", "4000"),
        ("count", "Count B in: BKBAB", "3", "2"),
        ("capital", "Capital of Kenya?", "Nairobi", "Kampala"),
        ("element", "Which symbol stands for iron?", "Fe", "Ir"),
    ],
)
def test_checkers_on_hand_worked_examples(task, prompt, right, wrong):
    assert check(task, prompt, right)
    assert not check(task, prompt, wrong)


def test_convert_has_no_answer_for_a_fractional_result():
    assert not check("convert", "Convert 4500 mL to L", "4.5")
    assert not check("convert", "Convert 4500 mL to L", "4")


def test_checker_refuses_a_prompt_of_another_family():
    with pytest.raises(TaskError, match="not a sort prompt"):
        check("sort", "Reverse: ABC", "CBA")
    with pytest.raises(TaskError, match="not a capital prompt"):
        check("capital", "Capital of Atlantis?", "Poseidonia")
    with pytest.raises(TaskError, match="unknown task"):
        check("poetry", "Write a poem", "roses")


@pytest.mark.parametrize("task", ALGORITHMIC)
def test_train_and_heldout_prompts_are_disjoint(task):
    train = {i.prompt for i in generate_items("train", per_task=3000, seed=0, tasks=[task])}
    held = {i.prompt for i in generate_items("heldout", per_task=1000, seed=1, tasks=[task])}
    assert len(train) == 3000 and len(held) == 1000
    assert not train & held


@pytest.mark.parametrize("family", [CAPITAL, ELEMENT], ids=["capital", "element"])
def test_fact_split_teaches_every_fact_and_tests_it_in_other_words(family: FactFamily):
    n_facts, n_phrasings = len(family.table), len(family.phrasings)
    train = generate_items("train", n_facts * n_phrasings * 3 // 4, seed=0, tasks=[family.name])
    held = generate_items("heldout", n_facts * n_phrasings // 4, seed=0, tasks=[family.name])
    assert not {i.prompt for i in train} & {i.prompt for i in held}
    trained = [family.parse(i.prompt) for i in train]
    assert {subject for subject, _ in trained} == set(family.table)  # every fact is taught
    assert {number for _, number in trained} == set(range(n_phrasings))  # and every wording
    for item in held:
        subject, number = family.parse(item.prompt)
        taught_in = {n for s, n in trained if s == subject}
        assert number not in taught_in and len(taught_in) == n_phrasings * 3 // 4
    with pytest.raises(TaskError, match="cannot make"):
        generate_items("heldout", len(train), seed=0, tasks=[family.name])
    every = generate_items("train", 10 * len(train), seed=0, tasks=[family.name], at_most=True)
    assert len(every) == len(train) and every == train  # all the family has, same order


def test_fewer_items_are_a_prefix_of_more():
    few, many = (generate_items("train", n, seed=3, tasks=["sort", "capital"]) for n in (20, 60))
    assert few[:20] == many[:20] and few[20:] == many[60:80]


def test_generation_is_deterministic_per_seed():
    first = generate_items("train", per_task=40, seed=7)
    assert first == generate_items("train", per_task=40, seed=7)
    assert first != generate_items("train", per_task=40, seed=8)
    assert len({i.prompt for i in first}) == len(first)


def test_every_family_makes_only_its_own_split():
    for name in task_names():
        rng = random.Random(0)
        for split in ("train", "heldout"):
            items = [TASKS[name].make(rng, split) for _ in range(50)]
            assert all(i.task == name for i in items)


def test_accuracy_counts_per_family_and_overall():
    items = generate_items("heldout", per_task=4, seed=0, tasks=["sort", "reverse"])
    responses = [i.answer for i in items]
    responses[0] = "nonsense"  # one sort wrong
    responses[4] = ""  # one reverse wrong
    responses[5] = "nonsense"  # two reverse wrong
    scores = accuracy(items, responses)
    assert scores == {"overall": 5 / 8, "sort": 3 / 4, "reverse": 2 / 4}
    with pytest.raises(TaskError, match="one response per item"):
        accuracy(items, responses[:-1])


def test_unknown_task_name_is_a_task_error():
    with pytest.raises(TaskError, match="unknown task"):
        generate_items("train", per_task=1, tasks=["sort", "poetry"])


def test_the_family_order_does_not_depend_on_which_module_was_imported_first():
    import subprocess
    import sys

    script = (
        "import distil.tasks.facts\n"
        "from distil.tasks import generate_items, task_names\n"
        "print(task_names(), generate_items('heldout', 1, seed=0)[0].task)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = ["arithmetic", "sort", "reverse", "convert", "count", "capital", "element"]
    assert result.stdout.strip() == f"{expected} arithmetic"
