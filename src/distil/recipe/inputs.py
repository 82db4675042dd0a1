"""What decides each stage's result: the recipe fields it reads, and the stages it reads from.

Every recipe module declares `INPUTS` for its stage, once. The pipeline skips a stage whose
inputs are unchanged and redoes one whose inputs changed; the trainer keeps the same values
in each checkpoint and resumes only checkpoints written under them. A field outside a
stage's inputs (pacing, progress, how often to log or save, where to write) never redoes it.
A teacher or student named by a GGUF file (or a packaged model) adds the file's sha256,
`teacher.model_sha256`: a changed file redoes the stages that read that model.

    values = input_values(recipe, "train")    # {"train.learning_rate": 0.003, ...}
"""

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distil.recipe.section import StageInputs

if TYPE_CHECKING:
    from distil.recipe.job import Recipe


def declared() -> dict[str, StageInputs]:
    """Every stage's declaration, from the recipe module of that stage, in pipeline order."""
    from distil.recipe import bench, capture, evaluate, export, job, synth, train

    return {
        "synth": synth.INPUTS,
        "capture": capture.INPUTS,
        "train": train.INPUTS,
        "eval": evaluate.INPUTS,
        "export": export.INPUTS,
        "bench": bench.INPUTS,
        "compare": job.COMPARE_INPUTS,
        "report": job.REPORT_INPUTS,
    }


def input_fields(stage: str) -> list[str]:
    """The stage's fields and those of every stage it reads from, transitively; sorted."""
    return sorted(field for name in _reached(stage) for field in declared()[name].fields)


def not_deciding(stage: str) -> list[str]:
    """Fields inside the stage's input sections that decide nothing, transitively; sorted."""
    return sorted(field for name in _reached(stage) for field in declared()[name].not_deciding)


def decides(stage: str, key: str) -> bool:
    """Whether the recipe field `key` (dotted) is one of the stage's inputs."""

    def within(fields: list[str]) -> bool:
        return any(key == f or key.startswith(f + ".") for f in fields)

    return within(input_fields(stage)) and not within(not_deciding(stage))


def _reached(stage: str) -> set[str]:
    """The stage and every stage it reads from, transitively."""
    table = declared()
    pending, seen = [stage], set()
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending += table[name].reads
    return seen


def input_values(recipe: "Recipe", stage: str) -> dict[str, Any]:
    """Each of the stage's input fields with its value in `recipe`, leaves spelled out."""
    dumped = recipe.model_dump(mode="json")
    values: dict[str, Any] = {}
    for key in input_fields(stage):
        _flatten(key, lookup(dumped, key), values)
    for key in not_deciding(stage):
        values.pop(key, None)
    values.update(_model_files(recipe, values))
    run = recipe.run_dir.resolve()
    return {key: _in_run(value, run) for key, value in values.items()}


def inputs_fingerprint(values: dict[str, Any]) -> str:
    """A stable hash of input values."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for each field whose value differs, sorted by key. A field that `old`
    does not hold (recorded by a distil before the field existed) and `new` holds at the
    field's default is no change: that distil worked as the default does."""
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in keys
        if old.get(k) != new.get(k) and not (k not in old and _at_default(k, new[k]))
    ]


def same_inputs(fingerprint: str, recorded: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether a result written under `fingerprint` (and `recorded` values, when it kept
    them) was made from the inputs `values`: the same hash, or recorded values that differ
    only by fields added since, at their defaults."""
    return fingerprint == inputs_fingerprint(values) or (
        bool(recorded) and not changed_fields(recorded, values)
    )


def _at_default(dotted: str, value: Any) -> bool:
    """Whether `value` is the recipe schema's default of the field `dotted` (False for a key
    that is not a field with a default)."""
    from pydantic_core import to_jsonable_python

    from distil.recipe.job import Recipe
    from distil.recipe.reference import section_model

    model: Any = Recipe
    *sections, leaf = dotted.split(".")
    for name in sections:
        field = model.model_fields.get(name) if model is not None else None
        model = section_model(field.annotation) if field is not None else None
    field = model.model_fields.get(leaf) if model is not None else None
    if field is None or field.is_required():
        return False
    return to_jsonable_python(field.get_default(call_default_factory=True)) == value


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a dumped recipe; None where a section is absent."""
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _model_files(recipe: "Recipe", values: dict[str, Any]) -> dict[str, str]:
    """`ROLE.model_sha256` of each model among `values` that a GGUF file holds."""
    from distil.models import model_sha256

    found = {}
    for role, section in (("teacher", recipe.teacher), ("student", recipe.student)):
        served = getattr(section, "api", None) is not None  # a name on a server, not a file
        sha = None if served or f"{role}.model" not in values else model_sha256(section.model)
        if sha is not None:
            found[f"{role}.model_sha256"] = sha
    return found


def _in_run(value: Any, run: Path) -> Any:
    """A path inside the run folder (data.train after synth) as RUN/..., so that a copied or
    moved run folder is still the same run; any other value as it is."""
    if not isinstance(value, str) or "/" not in value:
        return value
    path = Path(value).resolve()
    return f"RUN/{path.relative_to(run).as_posix()}" if path.is_relative_to(run) else value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _flatten(f"{prefix}.{key}", child, out)
    else:
        out[prefix] = value
