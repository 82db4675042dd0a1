"""The recipe's teacher for synthesis: a local model, or an API endpoint probed at start.

    teacher, notes = open_teacher(recipe, spent=journal.spent)
    # notes: what the teacher offers, in words (the API probe's findings)

Requests are keyed by `endpoint_id(recipe)` and `model_id(recipe)`, which need no
connection (a dry run computes them too).
"""

import importlib.util
from typing import Any

from distil.errors import ModelError
from distil.models import BUILTIN_MODELS, DEMO_TEACHER_DIR, byte_tokenizer
from distil.recipe import Recipe
from distil.synth import SynthError
from distil.teachers.base import Teacher
from distil.teachers.budget import Budget, Price, Spend, Spent
from distil.teachers.local import LocalTeacher


def endpoint_id(recipe: Recipe) -> str:
    """Where requests go: "<base_url> (<endpoint>)" for an API, "local" for a local model."""
    api = recipe.teacher.api
    return f"{api.base_url} ({api.endpoint})" if api is not None else "local"


def model_id(recipe: Recipe) -> str:
    """The teacher model, with its revision when one is pinned."""
    spec = recipe.teacher
    return f"{spec.model}@{spec.revision}" if spec.revision else spec.model


def load_tokenizer(name: str) -> Any:
    """A tokenizer alone: a built-in name, `demo`, a folder or a hub id."""
    if name in BUILTIN_MODELS:
        return byte_tokenizer()
    from transformers import AutoTokenizer

    source = str(DEMO_TEACHER_DIR) if name == "demo" else name
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load teacher.api.tokenizer {name!r}: {first}; name a tokenizer "
                         "folder, a hub id or a built-in model") from None


def open_teacher(recipe: Recipe, spent: Spent | None = None,
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
    teacher = api_teacher(recipe, spent, http_client)
    try:
        want = synth.sampling.top_logprobs if synth is not None else 0
        report = teacher.probe(want_top_logprobs=want)
    except BaseException:
        teacher.close()
        raise
    return teacher, list(report.lines)


def api_teacher(recipe: Recipe, spent: Spent | None = None, http_client: Any = None) -> Any:
    """An `ApiTeacher` from teacher.api (not yet probed); budget counted from `spent`."""
    if importlib.util.find_spec("openai") is None:
        raise SynthError("an API teacher needs the openai package: pip install 'distil[api]'")
    from distil.teachers.api import ApiTeacher

    spec = recipe.teacher
    api = spec.api
    assert api is not None
    tokenizer = load_tokenizer(api.tokenizer) if api.tokenizer else None
    spend = Spend(Budget(**api.budget.model_dump()), Price(**api.price.model_dump()), already=spent)
    return ApiTeacher(spec.model, api.base_url, api_key_env=api.api_key_env, endpoint=api.endpoint,
                      concurrency=api.concurrency, requests_per_minute=api.requests_per_minute,
                      tokens_per_minute=api.tokens_per_minute, timeout_s=api.timeout_s,
                      max_retries=api.max_retries, backoff_s=api.backoff_s,
                      backoff_max_s=api.backoff_max_s, tokenizer=tokenizer,
                      tokenizer_name=api.tokenizer, spend=spend, http_client=http_client,
                      seed=recipe.seed)
