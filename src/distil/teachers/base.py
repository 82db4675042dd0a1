"""The teacher protocol: what every teacher backend offers the stages.

A stage holds a `Teacher` and never knows whether it is a local model or an API:

    completions = teacher.generate(["What is 2+3?"], Sampling(max_new_tokens=32, top_logprobs=5))
    scored = teacher.score("What is 2+3?", "5")          # per-token top-k logprobs, if supported

Logprobs are those of the model's raw distribution (temperature 1), whatever the sampling
temperature: the distribution a student is distilled towards.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from distil.errors import DistilError

Message = Mapping[str, str]
Prompt = str | Sequence[Message]
"""A user message, or a whole chat (a list of {"role": ..., "content": ...})."""


class TeacherError(DistilError):
    """A teacher cannot do what was asked (unreachable, refused, unsupported)."""


class NotSupportedError(TeacherError):
    """The backend does not offer this capability (e.g. scoring behind an API)."""


@dataclass(frozen=True)
class Sampling:
    """How to generate; the same fields mean the same for every backend."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    """Return the sampled token's logprob at every position."""
    top_logprobs: int = 0
    """Also return the k most likely tokens and their logprobs at every position (implies logprobs)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for provenance columns and request keys."""
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class TopLogprob:
    """One candidate token at a position: id (None when only the text is known), text, logprob."""

    token_id: int | None
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """The token at one position with its logprob, and the top-k alternatives."""

    token_id: int | None
    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """One generated response."""

    text: str
    token_ids: tuple[int, ...] | None
    """Ids of the generated tokens; None when the backend gives only text. A local teacher
    leaves the end-of-turn token out; an API teacher gives what its server returns (`distil
    serve` and vLLM include it, with its logprobs)."""
    finish_reason: Literal["stop", "length"] | str
    usage: Usage = field(default_factory=Usage)
    logprobs: tuple[TokenLogprob, ...] | None = None
    end_of_turn: TokenLogprob | None = None
    """The end-of-turn token that closed the answer, with its logprobs, when a local teacher
    generated one and logprobs were asked for (it is in neither `token_ids` nor `logprobs`)."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can return; probed once at start for API teachers. A stage asks for
    what it needs with `distil.teachers.require`, never for the backend by name."""

    logprobs: bool
    max_top_logprobs: int
    """Largest top-k the backend returns per position (0: none)."""
    can_score: bool
    """Whether `score` works (teacher-forced logprobs of a given completion)."""
    token_ids: bool
    """Whether tokens come with ids in the teacher's vocabulary (else only strings)."""
    logits: bool = False
    """White-box: the teacher is a model in this process whose full logits a stage can read
    (`teacher.loaded`, a `distil.models.LoadedModel`): live distillation, local capture, eval."""
    hidden_states: bool = False
    """Whether its hidden states can be read too (distill.hidden)."""
    can_generate: bool = True
    """Whether `generate` works (synth, audit of an API)."""


@runtime_checkable
class Teacher(Protocol):
    """What a teacher backend offers. Implementations: `LocalTeacher`, the API teacher; every
    stage opens one through `distil.teachers.open_teacher`."""

    name: str
    """Model id (folder, hub id or served model name), for provenance."""

    @property
    def capabilities(self) -> Capabilities: ...

    def describe(self) -> dict[str, Any]:
        """Provenance of this teacher: backend, model id, revision, endpoint."""
        ...

    def offers(self) -> list[str]:
        """What this teacher offers, in plain words, one line each (for the stage's log)."""
        ...

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        """One completion per prompt, in order."""
        ...

    def score(self, prompt: Prompt, completion: str, top_logprobs: int) -> list[TokenLogprob]:
        """Teacher-forced logprobs of `completion`'s tokens after `prompt`, with top-k."""
        ...

    def close(self) -> None:
        """Release what the teacher holds open (an API client's connection and loop)."""
        ...


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A prompt as a chat: a bare string is one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(message) for message in prompt]
