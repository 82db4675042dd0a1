"""What a synth run asks the teacher: the requests, planned from the recipe alone.

    base = response_sampling(section, recipe.seed, max_top_logprobs=caps.max_top_logprobs)
    expansions = expansion_requests(recipe, seeds)          # self-instruct, before dedup
    planned = response_requests(recipe, prompts, base)      # [(prompt, sample index, request)]

Needs no connection: the run (`stage.py`) and its dry run (`estimate.py`) plan alike, so
every request has the same journal key in both.
"""

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from distil.recipe import Recipe
from distil.recipe.synth import SynthSection
from distil.synth import SynthError
from distil.synth.driver import Request, make_request
from distil.synth.filters import judge_instruction
from distil.synth.output import reject_row
from distil.synth.prompts import PromptItem, clean_expansion, expansion_messages, item
from distil.synth.teacher import endpoint_id, model_id
from distil.teachers.base import Sampling
from distil.teachers.journal import Entry


def journal_path(recipe: Recipe) -> Path:
    return recipe.run_dir / "synth" / "journal.jsonl"


def data_dir(recipe: Recipe) -> Path:
    return recipe.run_dir / "data"


def require_synth(recipe: Recipe) -> SynthSection:
    if recipe.synth is None:
        raise SynthError(
            "the recipe has no synth: section; add one with synth.prompts.file or "
            "synth.prompts.tasks (see docs/synth.md)"
        )
    return recipe.synth


def resend_rejected(recipe: Recipe) -> bool:
    """Whether requests the server rejected as invalid are sent again (teacher.api.resend_rejected)."""
    return recipe.teacher.api is not None and recipe.teacher.api.resend_rejected


def failure_reason(entry: Entry) -> str:
    """The reject reason of a request without an answer: rejected by the server, or failed."""
    return "request_rejected" if entry.rejected else "request_failed"


def response_sampling(section: SynthSection, seed: int, max_top_logprobs: int | None = None) -> Sampling:
    """The sampling of sample 0 (sample k uses seed + k); top-k clamped to what the teacher gives."""
    s = section.sampling
    top = s.top_logprobs if max_top_logprobs is None else min(s.top_logprobs, max_top_logprobs)
    return Sampling(
        max_new_tokens=s.max_new_tokens,
        temperature=s.temperature,
        top_p=s.top_p,
        seed=seed,
        stop=tuple(s.stop),
        logprobs=s.logprobs,
        top_logprobs=top,
    )


def expansion_requests(recipe: Recipe, seeds: list[PromptItem]) -> list[Request]:
    """The self-instruct requests (none when synth.prompts.expand is 0)."""
    section = require_synth(recipe)
    p, s = section.prompts, section.sampling
    texts = [i.text for i in seeds]
    return [
        make_request(
            endpoint_id(recipe),
            model_id(recipe),
            expansion_messages(texts, index, p.expand_examples, recipe.seed),
            Sampling(
                max_new_tokens=s.max_new_tokens,
                temperature=p.expand_temperature,
                top_p=s.top_p,
                seed=recipe.seed + index,
            ),
        )
        for index in range(p.expand)
    ]


def response_requests(
    recipe: Recipe, prompts: list[PromptItem], base: Sampling
) -> list[tuple[PromptItem, int, Request]]:
    """One request per prompt and sample, in prompt order."""
    section = require_synth(recipe)
    samplings = [replace(base, seed=recipe.seed + k) for k in range(section.samples_per_prompt)]
    return [
        (
            prompt,
            k,
            make_request(
                endpoint_id(recipe),
                model_id(recipe),
                [{"role": "user", "content": prompt.text}],
                samplings[k],
            ),
        )
        for prompt in prompts
        for k in range(section.samples_per_prompt)
    ]


def collect_expansions(
    requests: list[Request], entries: Mapping[str, Entry], section: SynthSection
) -> tuple[list[PromptItem], list[dict[str, Any]], int]:
    """New prompts from the journaled expansion replies, the rejected replies, and how many are unsent."""
    items, rejects, pending = [], [], 0
    for request in requests:
        entry = entries.get(request.key)
        if entry is None:
            pending += 1
        elif entry.completion is None:
            rejects.append(reject_row("expansion", failure_reason(entry), entry.error or "", entry=entry))
        else:
            text = clean_expansion(entry.completion.text)
            verdict = judge_instruction(
                entry.completion.text, text, entry.completion.finish_reason, section.filters
            )
            if verdict is None:
                items.append(item(text, "self_instruct"))
            else:
                rejects.append(reject_row("expansion", verdict.reason, verdict.detail, entry=entry))
    return items, rejects, pending
