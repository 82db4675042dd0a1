"""The student's Hugging Face model card (README.md with YAML front matter), written at export.

    write_model_card(export_dir / "hf-float16", run_dir)   # and export_dir/README.md

The front matter names what the student was made from: `base_model` (the student's starting
weights), `datasets` (its training data), `license` (the teacher's declared terms),
`tags: [distillation]`, the `teacher` and the training data's `data_fingerprint` (SHA-256 of
the file). The body repeats the teacher's terms, and when they forbid training on its
outputs, the acknowledgement the run went ahead on. Read from the run folder (RUN/recipe.yaml,
RUN/data/), so a model folder exported alone gets a card with what is known.
"""

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from distil.fsutil import atomic_write_text
from distil.recipe.terms import TermsSection, terms_lines

LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.\-+]*$")
"""What the Hub takes as a licence id (apache-2.0, llama3.1, cc-by-4.0); anything else is
written as `license: other` with `license_link`."""


def run_of(model_dir: Path) -> Path | None:
    """The run folder a model folder belongs to (RUN/student), if it has a recipe."""
    return model_dir.parent if (model_dir.parent / "recipe.yaml").is_file() else None


def write_model_card(folder: Path, run_dir: Path | None) -> Path:
    """Write `folder`/README.md; return its path."""
    path = Path(folder) / "README.md"
    atomic_write_text(path, model_card(run_dir))
    return path


def model_card(run_dir: Path | None) -> str:
    recipe = _saved_recipe(run_dir)
    teacher, student = recipe.get("teacher") or {}, recipe.get("student") or {}
    terms = TermsSection(**(teacher.get("terms") or {}))
    data = _training_data(run_dir, recipe)
    meta: dict[str, Any] = {"base_model": student.get("model"), "tags": ["distillation"],
                            "teacher": teacher.get("model"), **_license(terms)}
    if data is not None:
        meta["datasets"] = [str(data)]
        meta["data_fingerprint"] = "sha256:" + _sha256(data)
    meta = {k: v for k, v in meta.items() if v is not None}
    name = recipe.get("name", "student")
    layers = student.get("layers")
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {name}: a student distilled with distil", "",
             f"- teacher: `{teacher.get('model', 'unknown')}`"
             + (f" behind {teacher['api'].get('base_url')}" if teacher.get("api") else ""),
             f"- student started from: `{student.get('model', 'unknown')}`"
             + (f", decoder layers {layers}" if layers else ""),
             f"- training data: `{data}` ({meta.get('data_fingerprint', 'no fingerprint')})"
             if data is not None else "- training data: not found beside this model", "",
             "## The teacher's terms", "", *terms_lines(terms), "",
             "The student learnt from the teacher's outputs, so the teacher's terms may bind "
             "what this model is used for; read them before sharing or deploying it.", ""]
    return "\n".join(lines)


def _license(terms: TermsSection) -> dict[str, str]:
    if terms.license is None:
        return {"license": "unknown"}
    if LICENSE_ID.match(terms.license.lower()):
        return {"license": terms.license.lower()}
    return {"license": "other", "license_link": terms.license}


def _saved_recipe(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None or not (run_dir / "recipe.yaml").is_file():
        return {}
    raw = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    return raw if isinstance(raw, dict) else {}


def _training_data(run_dir: Path | None, recipe: dict[str, Any]) -> Path | None:
    """The training file: data.train of the recipe, else RUN/data/train.parquet."""
    named = (recipe.get("data") or {}).get("train")
    for candidate in ([Path(named)] if named else []) + ([run_dir / "data" / "train.parquet"]
                                                         if run_dir else []):
        if candidate.is_file():
            return candidate
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
