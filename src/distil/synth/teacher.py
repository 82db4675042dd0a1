"""The recipe's teacher for synthesis: a local model, or an API endpoint probed at start.

    teacher, notes = open_teacher(recipe, journal)
    # notes: what the teacher offers, in words (the API probe's findings)

An API teacher's budget counts from what the journal holds, and records each billed
attempt (the probe's too) in the journal before sending it.

Requests are keyed by `endpoint_id(recipe)` and `model_id(recipe)`, which need no
connection (a dry run computes them too).
"""

from typing import Any

from distil.models import model_revision
from distil.recipe import Recipe
from distil.teachers.base import Teacher
from distil.teachers.journal import Journal
from distil.teachers.local import LocalTeacher


def endpoint_id(recipe: Recipe) -> str:
    """Where requests go: "<base_url> (<endpoint>)" for an API, "local" for a local model."""
    api = recipe.teacher.api
    return f"{api.base_url} ({api.endpoint})" if api is not None else "local"


def model_id(recipe: Recipe) -> str:
    """The teacher model, with its revision when one is pinned (a GGUF file's sha256 pins
    it too, so the journal never answers for a changed file)."""
    spec = recipe.teacher
    revision = spec.revision if spec.api is not None else model_revision(spec.model, spec.revision)
    return f"{spec.model}@{revision}" if revision else spec.model


def open_teacher(recipe: Recipe, journal: Journal | None = None,
                 http_client: Any = None) -> tuple[Teacher, list[str]]:
    """The teacher to synthesise with, and lines saying what it offers.

    `http_client`: an HTTP client for the API teacher (a proxy, a test transport)."""
    spec = recipe.teacher
    synth = recipe.synth
    batch_size = synth.batch_size if synth is not None else 16
    if spec.api is None:
        teacher = LocalTeacher.load(spec.model, revision=spec.revision, dtype=spec.dtype,
                                    trust_remote_code=spec.trust_remote_code, batch_size=batch_size)
        return teacher, [f"teacher {spec.model} (local): full distributions; any top-k and "
                         "scoring available"]
    from distil.teachers import ApiTeacher

    teacher = ApiTeacher.from_section(
        spec.model, spec.api, spent=journal.spent if journal is not None else None,
        ledger=journal.record_attempt if journal is not None else None, http_client=http_client,
        seed=recipe.seed)
    try:
        want = synth.sampling.top_logprobs if synth is not None else 0
        report = teacher.probe(want_top_logprobs=want)
    except BaseException:
        teacher.close()
        raise
    return teacher, list(report.lines)
