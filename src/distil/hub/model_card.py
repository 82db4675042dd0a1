"""The student's Hugging Face model card (README.md with YAML front matter).

    write_model_card(run_dir / "student", run_dir)   # when training ends
    write_model_card(export_dir, run_of(model_dir))  # at export, and in each Hugging Face folder

The front matter names what the student was made from, in the fields the Hub reads:
`library_name: transformers`, `base_model` (the student's starting weights, when they are a
Hub model: a hub id, or a model distil knows the Hub source of) with `base_model_relation:
finetune`, `datasets` (the training data, when it is a hub dataset), `license` (the
teacher's declared terms), `tags: [distillation]`; and distil's own: `teacher`,
`teacher_terms` and the training data's `data_fingerprint` (SHA-256 of the file). The body
repeats the teacher's terms, and when they forbid training on its outputs, the
acknowledgement the run went ahead on. Read from the run folder (RUN/recipe.yaml,
RUN/data/), so a model folder exported alone gets a card with what is known; no path of
this machine is written: the training file is named relative to the run folder, a local
model by its folder's name (distil.hub.metadata.shown_model).
"""

import hashlib
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCardData

from distil.fsutil import atomic_write_text
from distil.hub.metadata import (
    front_matter,
    hub_dataset_id,
    hub_model_id,
    license_metadata,
    shown_model,
    terms_metadata,
)
from distil.recipe.terms import TermsSection, terms_lines


def run_of(model_dir: Path) -> Path | None:
    """The run folder a model folder belongs to (RUN/student), if it has a recipe."""
    return model_dir.parent if (model_dir.parent / "recipe.yaml").is_file() else None


def write_model_card(folder: Path, run_dir: Path | None) -> Path:
    """Write `folder`/README.md; return its path."""
    path = Path(folder) / "README.md"
    atomic_write_text(path, model_card(run_dir))
    return path


def model_card(run_dir: Path | None) -> str:
    """The card of the student of `run_dir` (None: a model with no run, little is known)."""
    recipe = _saved_recipe(run_dir)
    teacher, student = recipe.get("teacher") or {}, recipe.get("student") or {}
    terms = TermsSection(**(teacher.get("terms") or {}))
    data = _training_data(run_dir, recipe)
    shown = _shown(data, run_dir) if data is not None else None
    fingerprint = "sha256:" + _sha256(data) if data is not None else None
    meta = _metadata(teacher, student, terms, recipe.get("data") or {}, fingerprint)
    name = recipe.get("name", "student")
    layers = student.get("layers")
    lines = [
        front_matter(meta),
        f"# {name}: a student distilled with distil",
        "",
        f"- teacher: `{shown_model(teacher.get('model')) or 'unknown'}`"
        + (f" behind {teacher['api'].get('base_url')}" if teacher.get("api") else ""),
        f"- student started from: `{shown_model(student.get('model')) or 'unknown'}`"
        + (f", decoder layers {layers}" if layers else ""),
        f"- training data: `{shown}` ({fingerprint})"
        if data is not None
        else "- training data: not found beside this model",
        "",
        "## The teacher's terms",
        "",
        *terms_lines(terms),
        "",
        "The student learnt from the teacher's outputs, so the teacher's terms may bind "
        "what this model is used for; read them before sharing or deploying it.",
        "",
    ]
    return "\n".join(lines)


def _metadata(
    teacher: dict[str, Any],
    student: dict[str, Any],
    terms: TermsSection,
    data: dict[str, Any],
    fingerprint: str | None,
) -> ModelCardData:
    base = hub_model_id(student.get("model"))
    dataset = hub_dataset_id(data.get("train"))
    return ModelCardData(
        library_name="transformers",
        base_model=base,
        base_model_relation="finetune" if base else None,
        datasets=[dataset] if dataset else None,
        **license_metadata(terms.license),
        tags=["distillation"],
        pipeline_tag="text-generation",
        teacher=shown_model(teacher.get("model")),
        teacher_terms=terms_metadata(terms) or None,
        data_fingerprint=fingerprint,
    )


def _saved_recipe(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None or not (run_dir / "recipe.yaml").is_file():
        return {}
    raw = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    return raw if isinstance(raw, dict) else {}


def _training_data(run_dir: Path | None, recipe: dict[str, Any]) -> Path | None:
    """The training file: data.train of the recipe, else RUN/data/train.parquet."""
    named = (recipe.get("data") or {}).get("train")
    for candidate in ([Path(named)] if named else []) + (
        [run_dir / "data" / "train.parquet"] if run_dir else []
    ):
        if candidate.is_file():
            return candidate
    return None


def _shown(data: Path, run_dir: Path | None) -> str:
    """The training file as the card names it: inside the run folder relative to it, else
    by its file name (a card is shared; this machine's folders are nobody's business)."""
    if run_dir is not None and data.resolve().is_relative_to(run_dir.resolve()):
        return data.resolve().relative_to(run_dir.resolve()).as_posix()
    return data.name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
