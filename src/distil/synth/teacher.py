"""The recipe's teacher for synthesis, opened by the one factory (distil.teachers), probed
at start when it is an API endpoint; a local teacher with `synth.generator: vllm` is opened
in vLLM's engine (distil.teachers.vllm_engine).

    teacher, notes = open_synth_teacher(recipe, journal)
    # notes: what the teacher offers, in words (the API probe's findings)

An API teacher's budget counts from what the journal holds, and records each billed
attempt (the probe's too) in the journal before sending it.

Requests are keyed by `endpoint_id(recipe)` and `model_id(recipe)`, which need no
connection (a dry run computes them too). A local teacher's endpoint is `local`, or
`local (vllm)` under vLLM, so the journal never answers one engine's request with the
other's reply (their rows name the engine that wrote them).
"""

from typing import Any

from distil.models import model_revision
from distil.recipe import Recipe
from distil.teachers import Teacher, endpoint_of, open_teacher, require
from distil.teachers.journal import Journal

VLLM_ENDPOINT = "local (vllm)"


def endpoint_id(recipe: Recipe) -> str:
    """Where requests go: "<base_url> (<endpoint>)" for an API, "local" for a local model,
    "local (vllm)" for a local model in vLLM's engine."""
    return VLLM_ENDPOINT if _in_vllm(recipe) else endpoint_of(recipe.teacher)


def _in_vllm(recipe: Recipe) -> bool:
    return recipe.synth is not None and recipe.synth.generator == "vllm"


def model_id(recipe: Recipe) -> str:
    """The teacher model, with its revision when one is pinned (a GGUF file's sha256 pins
    it too, so the journal never answers for a changed file)."""
    spec = recipe.teacher
    revision = spec.revision if spec.api is not None else model_revision(spec.model, spec.revision)
    return f"{spec.model}@{revision}" if revision else spec.model


def open_synth_teacher(
    recipe: Recipe, journal: Journal | None = None, http_client: Any = None
) -> tuple[Teacher, list[str]]:
    """The teacher to synthesise with, and lines saying what it offers.

    `http_client`: an HTTP client for the API teacher (a proxy, a test transport)."""
    synth = recipe.synth
    teacher = open_teacher(
        recipe.teacher,
        seed=recipe.seed,
        journal=journal,
        http_client=http_client,
        batch_size=synth.batch_size if synth is not None else 16,
        probe_top_logprobs=synth.sampling.top_logprobs if synth is not None else 0,
        engine=synth.generator if synth is not None else "hf",
        top_logprobs=synth.sampling.top_logprobs if synth is not None else 0,
    )
    try:
        require(teacher, "can_generate", "synth")
    except BaseException:
        teacher.close()
        raise
    return teacher, teacher.offers()
