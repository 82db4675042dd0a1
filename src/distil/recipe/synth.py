"""Recipe sections of the synth stage: `synth` with its prompts, sampling, dedup and filters.

    synth:
      prompts: {file: data/seed_prompts.jsonl, tasks: [all], per_task: 100, expand: 50}
      sampling: {max_new_tokens: 256, temperature: 0.7, top_logprobs: 5}

See docs/synth.md; `distil recipe docs` prints every field.
"""

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from distil.recipe.section import TEACHER_IDENTITY, Section, StageInputs
from distil.tasks import unknown_tasks_error

REFUSAL_PATTERNS = [
    r"^\W*(i'?m|i am) (so |very )?sorry\b",
    r"\bas an ai\b",
    r"\bi (cannot|can'?t|won'?t|am unable to|'?m unable to|am not able to) "
    r"(help|assist|comply|provide|fulfil|do that)",
]


class SynthPromptsSection(Section):
    """Where synth prompts come from; sources add up, in this order: file, tasks, expansion."""

    file: str | None = None
    """Seed prompts: a .jsonl or .parquet file with a `prompt` column (see `field`), or a
    .txt file with one prompt per line. Relative paths are read from the recipe's folder."""
    field: str = "prompt"
    """Column of `file` holding the prompt text."""
    tasks: list[str] = []
    """Task families (distil.tasks) whose train-split prompts to add; `[all]` for every
    default family, `[all, between]` adds an opt-in one. Only prompts are taken, never the
    reference answers; held-out prompts never."""
    per_task: Annotated[int, Field(ge=1)] = 100
    """Prompts drawn from each task family."""
    expand: Annotated[int, Field(ge=0)] = 0
    """Self-instruct expansion: ask the teacher for this many new prompts, each request
    showing it `expand_examples` seeds (from the file and tasks) to vary on."""
    expand_examples: Annotated[int, Field(ge=1)] = 3
    """Seed prompts shown in each expansion request."""
    expand_temperature: Annotated[float, Field(ge=0)] = 1.0
    """Sampling temperature of expansion requests (higher: more varied prompts)."""


class SynthSamplingSection(Section):
    """How the teacher answers each prompt."""

    max_new_tokens: Annotated[int, Field(ge=1)] = 256
    """Longest response in tokens; a response cut here has finish_reason `length`."""
    temperature: Annotated[float, Field(ge=0)] = 0.7
    """Sampling temperature; 0 is greedy."""
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Nucleus sampling mass."""
    stop: list[str] = []
    """Strings that end a response."""
    logprobs: bool = False
    """Keep the logprob of each sampled token (column `token_logprobs`)."""
    top_logprobs: Annotated[int, Field(ge=0)] = 0
    """Also keep the k most likely tokens and their logprobs at each position; an API
    teacher that refuses logprobs stops the run at start with a clear message."""


class DedupSection(Section):
    """Near-duplicate prompts are dropped before any request is sent (rejects: near_duplicate)."""

    minhash_threshold: Annotated[float, Field(gt=0, le=1)] | None = 0.9
    """Drop a prompt whose estimated Jaccard similarity (MinHash over word n-grams) to an
    earlier kept prompt is at least this; empty turns MinHash deduplication off."""
    ngram: Annotated[int, Field(ge=1)] = 2
    """Words per shingle for MinHash."""
    num_perm: Annotated[int, Field(ge=16)] = 128
    """MinHash permutations: more is a closer Jaccard estimate, slower."""
    rouge_l: Annotated[float, Field(gt=0, le=1)] | None = None
    """Also drop a prompt whose ROUGE-L F-measure with an earlier kept prompt is at least
    this (Self-Instruct used 0.7); exact, quadratic in the prompt count. Empty: off."""


class FiltersSection(Section):
    """Which teacher responses are dropped (each kept in RUN/data/rejects.jsonl with its reason)."""

    drop_empty: bool = True
    """Drop empty or whitespace-only responses."""
    drop_truncated: bool = True
    """Drop responses cut at max_new_tokens (finish_reason `length`). Kept (false), each is
    trained on without an end-of-turn token, since the teacher never ended it."""
    refusal_patterns: list[str] = REFUSAL_PATTERNS
    """Regular expressions (case-insensitive) that mark a refusal; [] turns the filter off."""
    min_chars: Annotated[int, Field(ge=0)] = 1
    """Shortest response kept, in characters (surrounding whitespace ignored)."""
    max_chars: Annotated[int, Field(ge=1)] | None = None
    """Longest response kept, in characters; empty: no bound."""
    min_tokens: Annotated[int, Field(ge=0)] = 0
    """Fewest completion tokens kept (as the teacher reports them)."""
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    """Most completion tokens kept; empty: no bound."""

    @field_validator("refusal_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a valid regular expression ({err})") from None
        return patterns


class SynthSection(Section):
    """Build the training set from the teacher's answers (`distil synth`): prompts in,
    RUN/data/train.parquet, rejects.jsonl and the dataset card README.md out."""

    prompts: SynthPromptsSection = SynthPromptsSection()
    """Prompt sources."""
    samples_per_prompt: Annotated[int, Field(ge=1)] = 1
    """Responses requested per prompt (each with its own seed; needs temperature > 0)."""
    sampling: SynthSamplingSection = SynthSamplingSection()
    """Generation settings."""
    dedup: DedupSection = DedupSection()
    """Near-duplicate prompt removal."""
    filters: FiltersSection = FiltersSection()
    """Response filters."""
    max_failed_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Largest share of the run's requests that may still have failed after their retries
    for the stage to count as done. Above it (by default: any failed request) `distil synth`
    writes what it has, exits non-zero and the stage is not marked done, so `distil run`
    does not train on partial data; a rerun sends only the failed requests."""
    batch_size: Annotated[int, Field(ge=1)] = 16
    """Prompts per generate call for a local teacher (an API teacher is paced by
    teacher.api.concurrency instead)."""
    generator: Literal["hf", "vllm"] = "hf"
    """Engine a local teacher answers with: `hf` (transformers' generate) or `vllm` (vLLM's
    in-process engine, `vllm.LLM`, loading teacher.model's safetensors; a GGUF or packaged
    model from distil's converted copy). Both render the prompts alike and give the same
    rows (greedy answers and their top logprobs equal); each row's `backend` names the
    engine and version. `vllm` needs the vllm package and a CUDA GPU and is refused in one
    line otherwise, as for a built-in tiny model (no files to load). Tested on CPU against
    a stand-in of vLLM's API; not yet run with real vLLM on a GPU. Or serve the teacher with
    `vllm serve` and reach it through teacher.api."""
    license: str | None = None
    """Terms the teacher's outputs come under (e.g. the provider's terms of use URL, or the
    model's licence); written on every row and in the dataset card."""

    @model_validator(mode="after")
    def _consistent(self) -> "SynthSection":
        p = self.prompts
        if not p.file and not p.tasks:
            raise ValueError("synth needs prompts: set synth.prompts.file and/or synth.prompts.tasks")
        if self.samples_per_prompt > 1 and self.sampling.temperature == 0:
            raise ValueError(
                "samples_per_prompt > 1 with temperature 0 would repeat one greedy "
                "response; set synth.sampling.temperature above 0"
            )
        if problem := unknown_tasks_error(p.tasks, "synth.prompts.tasks"):
            raise ValueError(problem)
        return self


INPUTS = StageInputs(fields=("seed", *TEACHER_IDENTITY, "teacher.terms", "synth"))
"""What decides the synth data (its rows record the teacher's terms); pacing, retries, prices
and budget caps do not."""
