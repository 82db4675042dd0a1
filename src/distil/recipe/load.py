"""The recipe: one YAML file that drives a run, as typed sections.

Each section is a pydantic model; each field is documented once, by the docstring under
it, and that text is what `distil recipe docs` prints. `load_recipe` reads the YAML,
applies `key.sub=value` overrides, resolves relative paths against the recipe's folder and
validates; every problem becomes a `RecipeError` naming the field and the fix.

    recipe = load_recipe("recipes/tiny.yaml", ["train.max_steps=20"])

"""

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from distil.errors import RecipeError
from distil.recipe.job import Recipe
from distil.recipe.reference import section_model
from distil.recipe.section import with_recipe_seed
from distil.recipe.trl import trl_hint


def load_recipe(
    path: str | os.PathLike[str], overrides: list[str] | None = None, training: bool = True
) -> Recipe:
    """Read, override, resolve and validate a recipe; raise `RecipeError` on any problem.

    `training=False` (a command that does not train: `distil synth`) skips the checks
    between the teacher and the training settings (distil.recipe.job)."""
    raw = _read_yaml(Path(path))
    for override in overrides or []:
        _apply_override(raw, override)
    _resolve_paths(raw, Path(path).parent)
    return validate_recipe(raw, source=str(path), training=training)


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A recipe file as a mapping, its relative paths resolved against its folder, not yet
    validated (for a caller that changes it first: distil.Distiller)."""
    path = Path(path)
    raw = _read_yaml(path)
    _resolve_paths(raw, path.parent)
    return raw


def validate_recipe(raw: dict[str, Any], source: str = "recipe", training: bool = True) -> Recipe:
    """Validate a recipe mapping, turning pydantic's errors into one readable `RecipeError`."""
    try:
        return Recipe.model_validate(raw, context={"training": training})
    except ValidationError as err:
        problems = [_describe(e) for e in err.errors()]
        raise RecipeError(f"{source}: " + "; ".join(problems)) from None


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML, every field spelled out (what a run actually used: export and bench
    show the seed they take from the recipe when they set none)."""
    used = {
        name: with_recipe_seed(getattr(recipe, name), recipe.seed)
        for name in ("export", "bench")
        if getattr(recipe, name) is not None
    }
    return yaml.safe_dump(recipe.model_copy(update=used).model_dump(mode="json"), sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(
            f"recipe file not found: {path}; pass the path of a YAML recipe, e.g. recipes/tiny.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise RecipeError(
            f"{path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at "
            f"offset {err.start}); save the recipe as UTF-8"
        ) from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{path} is not valid YAML{at}: {problem}; fix the syntax") from None
    if not isinstance(raw, dict):
        what = "nothing (the file is empty)" if raw is None else f"a {type(raw).__name__}"
        raise RecipeError(
            f"{path} must hold a YAML mapping of sections (teacher:, student:, data:, ...), not {what}"
        )
    return raw


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {override!r} is not of the form key.sub=value, e.g. train.max_steps=100")
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise RecipeError(f"override {override!r}: {where} is a value, not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        node[parts[-1]] = value


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make data paths, and model paths that exist there, relative to the recipe's folder."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "eval"):
            value = data.get(key)
            if isinstance(value, str) and not os.path.isabs(value) and (base / value).exists():
                data[key] = str(base / value)
    for role in ("teacher", "student"):
        spec = raw.get(role)
        if isinstance(spec, dict) and isinstance(spec.get("model"), str):
            value = spec["model"]
            if not os.path.isabs(value) and (base / value).is_dir():
                spec["model"] = str(base / value)
    _resolve_nested(raw, ("synth", "prompts", "file"), base)
    _resolve_nested(raw, ("teacher", "api", "tokenizer"), base)


def _resolve_nested(raw: dict[str, Any], keys: tuple[str, ...], base: Path) -> None:
    """Make the path at raw[k1][k2]... relative to the recipe's folder when it exists there."""
    node: Any = raw
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    value = node.get(keys[-1]) if isinstance(node, dict) else None
    if isinstance(value, str) and not os.path.isabs(value) and (base / value).exists():
        node[keys[-1]] = str(base / value)


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "recipe"
    if error["type"] == "extra_forbidden":
        return _unknown_key(where, error["loc"])
    if error["type"] == "missing":
        return f"{where} is required; add it (see `distil recipe docs`)"
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a check across sections: its message names the fields
        return message
    if error["type"] == "secret_value":  # never echo what may be a secret
        return f"{where}: {message}"
    return f"{where}: {message} (got {error.get('input')!r})"


def _unknown_key(where: str, loc: tuple[Any, ...]) -> str:
    """The message for a key no section has: the distil field of a TRL or transformers
    argument (distil.recipe.trl), else the closest name in its section, else the field of
    that name in another section."""
    if hint := trl_hint(str(loc[-1])):
        return f"unknown key {where}; {hint}"
    close = _close_in_section(loc) or _elsewhere(str(loc[-1]))
    suggestion = f" (did you mean {close}?)" if close else ""
    return f"unknown key {where}{suggestion}; remove it or fix its spelling"


def _close_in_section(loc: tuple[Any, ...]) -> str | None:
    """The field of the key's own section spelt most like it."""
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        section = section_model(getattr(field, "annotation", None))
        if section is None:
            return None
        model = section
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return close[0] if close else None


def _elsewhere(name: str) -> str | None:
    """The dotted field of that name (or spelt most like it) in another section."""
    fields = recipe_fields()
    same = [key for key in fields if key.rsplit(".", 1)[-1] == name]
    if same:
        return " or ".join(same[:3])
    close = difflib.get_close_matches(name, [key.rsplit(".", 1)[-1] for key in fields], n=1, cutoff=0.8)
    return next(key for key in fields if key.rsplit(".", 1)[-1] == close[0]) if close else None


def recipe_fields(model: type[BaseModel] = Recipe, prefix: str = "") -> list[str]:
    """Every field of the recipe as a dotted key (`train.batch_size`), sections' fields after
    their own key, in the order the models declare them."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        section = section_model(field.annotation)
        if section is not None:
            keys += recipe_fields(section, f"{prefix}{name}.")
    return keys


def saved_section(run_dir: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """The `name:` section of the recipe a run was made with (RUN/recipe.yaml), for commands
    that run one stage over a finished run (`distil export`, `distil bench`); empty when the
    run has none. Its seed, left at the default 0, is the recipe's (older runs' recipe.yaml
    did not spell out the seed a section took from the recipe)."""
    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RecipeError(
            f"{path} is not a readable recipe ({type(err).__name__}); fix it, or "
            "pass the model folder RUN/student instead"
        ) from None
    section = raw.get(name) if isinstance(raw, dict) else None
    if not isinstance(section, dict):
        return {}
    if section.get("seed", 0) == 0 and isinstance(raw.get("seed"), int):
        section = {**section, "seed": raw["seed"]}
    return section
