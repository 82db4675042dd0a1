"""Skills tasks: seeded prompt generators with exact answer checkers.

Each task family registers a `Task`: a generator that makes (prompt, answer) items from a
seeded RNG, split into `train` and `heldout` with no prompt in both, and a checker that
says whether a model's response holds the right answer. The prompt is the user message;
callers render it with the model's chat template. Families: `algorithmic` (arithmetic,
sort, reverse, convert, count) and `facts` (capital, element); how items are split is
explained in `distil.tasks.splitting` and `distil.tasks.facts`. Opt-in families (`choice`:
between, a question with several right answers) are left out of `task_names()`, `all` and
the default `generate_items`; a caller names them (`tasks=["all", "between"]`), or their
group: `instruct` (`distil.tasks.instruct`: plural, capital_city, ..., short questions a
general chat model answers in a sentence, graded by the answer the response names).

    items = generate_items("heldout", per_task=50, seed=0)
    ok = check(items[0].task, items[0].prompt, model_response)
    scores = accuracy(items, responses)      # {"overall": 0.93, "arithmetic": 0.9, ...}
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from distil.errors import TaskError

Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class TaskItem:
    """One prompt of a task family and its reference answer (full response text)."""

    task: str
    prompt: str
    answer: str


@dataclass(frozen=True)
class Task:
    """A task family: `make(rng, split)` draws one item; `check(prompt, response)` grades."""

    name: str
    description: str
    make: Callable[[random.Random, Split], TaskItem]
    check: Callable[[str, str], bool]
    opt_in: bool = False
    """Left out of `task_names()` and `all`: generated only where a caller names it."""
    group: str | None = None
    """A name that stands for every family of the group in `resolve_tasks` (`instruct`)."""
    size: Callable[[Split], int] | None = None
    """How many distinct prompts the family has for a split, where it has few: generation
    stops once it has them all instead of drawing on in search of more."""


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task family to the registry (called by each task module at import)."""
    groups = {other.group for other in TASKS.values()}
    if task.group in {"all", task.name, *TASKS} or task.name in groups:
        raise TaskError(
            f"task {task.name!r} in group {task.group!r}: a group name must differ "
            "from `all` and from every family name"
        )
    TASKS[task.name] = task
    return task


def task_names(include_opt_in: bool = False) -> list[str]:
    """Names of the registered task families, which `all` stands for: the shipped ones in
    FAMILY_MODULES order, then any other in registration order. Opt-in families only with
    `include_opt_in` (every name a recipe may use)."""
    _load_families()
    return [name for name, task in TASKS.items() if include_opt_in or not task.opt_in]


def task_groups() -> dict[str, list[str]]:
    """Each group name and its families, in registry order (`{"instruct": ["plural", ...]}`)."""
    _load_families()
    groups: dict[str, list[str]] = {}
    for name, task in TASKS.items():
        if task.group:
            groups.setdefault(task.group, []).append(name)
    return groups


def resolve_tasks(names: list[str]) -> list[str]:
    """Family names with `all` replaced by `task_names()` and a group name by its families,
    in place, and repeats dropped; TaskError for an unknown name."""
    groups = {"all": task_names(), **task_groups()}
    expanded = [n for name in names for n in groups.get(name, [name])]
    _require_known(expanded)
    return list(dict.fromkeys(expanded))


def unknown_tasks_error(names: list[str], field: str) -> str | None:
    """What is wrong with the family names a recipe gives in `field`, or None when every one
    is `all`, a group or a family (opt-in families included)."""
    known = task_names(include_opt_in=True)
    groups = task_groups()
    unknown = sorted(set(names) - {"all", *groups, *known})
    if not unknown:
        return None
    grouped = "".join(f", or {group} for {members}" for group, members in groups.items())
    return (
        f"unknown task families {unknown} in {field}; choose from {known}, or all for {task_names()}{grouped}"
    )


def generate_items(
    split: Split, per_task: int, seed: int = 0, tasks: list[str] | None = None, at_most: bool = False
) -> list[TaskItem]:
    """`per_task` distinct items of each family for `split`, reproducible from `seed`.

    `tasks` names the families (`all` for `task_names()`); none: `task_names()`. Train and
    held-out prompts never coincide, for any seeds. Asking for fewer items gives a prefix of
    the same sequence. A family that cannot make `per_task` distinct prompts raises
    TaskError, unless `at_most` is set: then it gives every prompt it could make.
    """
    items: list[TaskItem] = []
    for name in resolve_tasks(tasks) if tasks else task_names():
        items += _family_items(name, split, per_task, seed, at_most)
    return items


def _family_items(name: str, split: Split, per_task: int, seed: int, at_most: bool) -> list[TaskItem]:
    size = TASKS[name].size
    wanted = min(per_task, size(split)) if size and at_most else per_task
    if size and wanted > size(split):
        raise TaskError(
            f"task {name!r} cannot make {per_task} distinct {split} prompts "
            f"(it has {size(split)}); ask for fewer per task"
        )
    rng = random.Random(f"{seed}:{split}:{name}")
    seen: set[str] = set()
    items: list[TaskItem] = []
    attempts = 0
    while len(seen) < wanted:
        item = TASKS[name].make(rng, split)
        attempts += 1
        if item.prompt not in seen:
            seen.add(item.prompt)
            items.append(item)
        if attempts > 50 * per_task + 1000:
            if at_most:
                break
            raise TaskError(
                f"task {name!r} cannot make {per_task} distinct {split} prompts "
                f"(it made {len(seen)}); ask for fewer per task"
            )
    return items


def check(task: str, prompt: str, response: str) -> bool:
    """Whether `response` answers `prompt` of family `task` correctly."""
    _require_known([task])
    return TASKS[task].check(prompt, response)


def accuracy(items: list[TaskItem], responses: list[str]) -> dict[str, float]:
    """Share of correct responses per task family and overall (mean over items)."""
    if len(items) != len(responses):
        raise TaskError(
            f"{len(items)} items but {len(responses)} responses; pass one response "
            "per item, in the same order"
        )
    per_task: dict[str, list[bool]] = {}
    for item, response in zip(items, responses, strict=True):
        per_task.setdefault(item.task, []).append(check(item.task, item.prompt, response))
    scores = {name: sum(v) / len(v) for name, v in per_task.items()}
    flat = [ok for v in per_task.values() for ok in v]
    return {"overall": sum(flat) / len(flat) if flat else 0.0, **scores}


FAMILY_MODULES = (
    "distil.tasks.algorithmic",
    "distil.tasks.facts",
    "distil.tasks.choice",
    "distil.tasks.instruct",
)
"""The shipped task modules, in the order their families are listed and generated."""


def _load_families() -> None:
    """Import the task modules, which register themselves, and put the registry in its one
    order: which module a process happened to import first must not reorder the families
    (it reordered every generated prompt list, and with it synth data and eval items)."""
    from distil.tasks import algorithmic, choice, facts, instruct  # noqa: F401

    def rank(entry: tuple[int, tuple[str, Task]]) -> tuple[int, int]:
        index, (_, task) = entry
        module = _module_of(task)
        return (FAMILY_MODULES.index(module) if module in FAMILY_MODULES else len(FAMILY_MODULES), index)

    ordered = [item for _, item in sorted(enumerate(TASKS.items()), key=rank)]
    if [name for name, _ in ordered] != list(TASKS):
        TASKS.clear()
        TASKS.update(ordered)


def _module_of(task: Task) -> str:
    """The module that defines the family: its generator's, or for a method that of the
    class of the object it is bound to (a family object of a class defined elsewhere)."""
    owner = getattr(task.make, "__self__", None)
    return type(owner).__module__ if owner is not None else task.make.__module__


def _require_known(names: list[str]) -> None:
    _load_families()
    unknown = sorted(set(names) - set(TASKS))
    if unknown:
        raise TaskError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
