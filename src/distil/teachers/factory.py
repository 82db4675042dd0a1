"""One factory opens the recipe's teacher for every stage; capabilities say what it can do.

    teacher = open_teacher(recipe.teacher, seed=recipe.seed)            # synth, audit api
    teacher = open_teacher(recipe.teacher, in_process=True, device=d)   # eval, capture.source: local
    loaded = white_box(teacher, "evaluation (KL to the teacher)")       # its model and tokenizer
    require(teacher, "can_generate", "synth")                           # one refusal per capability

The section picks the backend, the first in `BACKENDS` that claims it: `api` when
teacher.api is set (an OpenAI-compatible endpoint, `ApiTeacher`, probed when asked), else
`local`, whatever `distil.models.load_model` opens (a folder, a hub id, `demo`, `tiny-*`, a
GGUF file) as a `LocalTeacher`, or with `engine="vllm"` (synth.generator) the same model's
files in vLLM's engine as a `VllmTeacher` (distil.teachers.vllm_engine). A stage never asks
which backend it holds: it asks for the capability it needs (`Capabilities`: `logits`,
`hidden_states`, `can_score`, `max_top_logprobs`, `can_generate`), and `require` refuses
with one line naming what is missing and the way on. A new backend is one `TeacherBackend`
(docs/architecture.md, "Add a teacher backend").
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from distil.models import LoadedModel, load_model
from distil.recipe.models import TeacherSection
from distil.teachers.base import Capabilities, Teacher, TeacherError
from distil.teachers.journal import Journal
from distil.teachers.local import LocalTeacher
from distil.teachers.vllm_engine import open_vllm_teacher


@dataclass(frozen=True)
class OpenOptions:
    """How a stage wants its teacher opened; each backend reads what applies to it."""

    seed: int = 0
    """Seed of a built-in tiny model's weights, and of an API teacher's sampled requests."""
    device: torch.device | str | None = None
    """Where a local model goes (default: cuda when available, else cpu)."""
    batch_size: int = 32
    """Prompts per batch of a local model's generation."""
    show_progress: bool = False
    journal: Journal | None = None
    """An API teacher's budget counts from it and records each billed attempt in it."""
    http_client: Any = None
    """An httpx client for an API teacher (a proxy, a test transport)."""
    probe_top_logprobs: int | None = None
    """Probe an API teacher at once, asking for this top-k (None: probe on first use)."""
    engine: Literal["hf", "vllm"] = "hf"
    """What generates a local model's answers: transformers (`hf`, a `LocalTeacher`) or
    vLLM's in-process engine (`vllm`, a `VllmTeacher`; synth.generator)."""
    top_logprobs: int = 0
    """The largest top-k a vLLM teacher will be asked for (it sizes the engine's cap)."""


@dataclass(frozen=True)
class TeacherBackend:
    """One way to reach a teacher: which sections it serves, and how it opens them."""

    name: str
    claims: Callable[[TeacherSection], bool]
    """Whether this backend serves a recipe's teacher section."""
    open: Callable[[TeacherSection, OpenOptions], Teacher]
    endpoint: Callable[[TeacherSection], str]
    """Where its requests go, known without opening it (request keys, provenance)."""


def _open_local(section: TeacherSection, options: OpenOptions) -> Teacher:
    if options.engine == "vllm":
        return open_vllm_teacher(section, seed=options.seed, top_logprobs=options.top_logprobs)
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(
        section.model,
        "teacher",
        revision=section.revision,
        dtype=section.dtype,
        trust_remote_code=section.trust_remote_code,
        device=device,
        seed=options.seed,
    )
    return LocalTeacher(loaded, batch_size=options.batch_size, show_progress=options.show_progress)


def _open_api(section: TeacherSection, options: OpenOptions) -> Teacher:
    from distil.teachers import ApiTeacher  # the `api` extra

    assert section.api is not None
    journal = options.journal
    teacher = ApiTeacher.from_section(
        section.model,
        section.api,
        spent=journal.spent if journal is not None else None,
        ledger=journal.record_attempt if journal is not None else None,
        http_client=options.http_client,
        seed=options.seed,
    )
    if options.probe_top_logprobs is not None:
        try:
            teacher.probe(want_top_logprobs=options.probe_top_logprobs)
        except BaseException:
            teacher.close()
            raise
    return teacher


def _api_endpoint(section: TeacherSection) -> str:
    assert section.api is not None
    return f"{section.api.base_url} ({section.api.endpoint})"


BACKENDS: list[TeacherBackend] = [
    TeacherBackend("api", lambda section: section.api is not None, _open_api, _api_endpoint),
    TeacherBackend("local", lambda section: True, _open_local, lambda section: "local"),
]
"""The backends, asked in order; the first that claims a section opens it (`local` last)."""


def register_backend(backend: TeacherBackend) -> None:
    """Add a backend ahead of the others (a plug-in, a test)."""
    BACKENDS.insert(0, backend)


def unregister_backend(name: str) -> None:
    """Remove the backend called `name`."""
    BACKENDS[:] = [b for b in BACKENDS if b.name != name]


def backend_for(section: TeacherSection) -> TeacherBackend:
    """The backend that serves `section`."""
    return next(b for b in BACKENDS if b.claims(section))


def open_teacher(section: TeacherSection, *, in_process: bool = False, **options: Any) -> Teacher:
    """Open the teacher `section` describes. `in_process`: run teacher.model here even when
    teacher.api names an endpoint (capture.source: local, eval's white-box metrics).
    `options`: the fields of `OpenOptions`."""
    if in_process:
        section = section.model_copy(update={"api": None})
    return backend_for(section).open(section, OpenOptions(**options))


def endpoint_of(section: TeacherSection) -> str:
    """Where the section's teacher is reached: "<base_url> (<endpoint>)", or "local"."""
    return backend_for(section).endpoint(section)


REFUSALS = {
    "logits": (
        "the teacher's full logits, which only a model run in this process gives",
        "name a local model in teacher.model (without teacher.api), or capture its top-k "
        "into a store first and train from it (signals.path: capture)",
    ),
    "hidden_states": (
        "the teacher's hidden states, which only a model run in this process gives",
        "set distill.hidden.weight=0, or name a local teacher model",
    ),
    "can_generate": (
        "a teacher that generates text",
        "name a teacher that generates (a local model or an API endpoint)",
    ),
}
"""What each capability a stage may require means, and the way on without it."""


def require(teacher: Teacher, capability: str, purpose: str) -> None:
    """Refuse, in one line, a teacher without `capability` (a `Capabilities` flag)."""
    ability: Capabilities = teacher.capabilities
    if not getattr(ability, capability):
        needed, fix = REFUSALS[capability]
        backend = teacher.describe().get("backend", "?")
        raise TeacherError(
            f"{purpose} needs {needed}; teacher {teacher.name} ({backend}) does not give it: {fix}"
        )


def white_box(teacher: Teacher, purpose: str, hidden_states: bool = False) -> LoadedModel:
    """The model and tokenizer of a teacher whose logits (and hidden states) a stage reads."""
    require(teacher, "logits", purpose)
    if hidden_states:
        require(teacher, "hidden_states", purpose)
    return teacher.loaded  # type: ignore[attr-defined]  # promised by `logits`
