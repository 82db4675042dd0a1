"""The synth stage: prompts in; the teacher's filtered answers, with provenance, out.

    result = run_synth(recipe)                 # RUN/data/train.parquet, rejects.jsonl, README.md (the card)
    estimate = run_synth(recipe, dry_run=True) # requests, tokens and cost; nothing is sent

Steps: seed prompts (file, tasks) → self-instruct expansion → near-duplicate removal →
one request per prompt and sample → filters → outputs. Every request goes through the
journal (RUN/synth/journal.jsonl), so a rerun sends only what is missing or failed. A
budget cap, or more failed requests than synth.max_failed_fraction allows, stops the run
with an error after writing out what was done: the stage is then not done.
"""

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distil import __version__
from distil.fsutil import atomic_write_json
from distil.generators import check_synth_generator
from distil.progress import console
from distil.recipe import Recipe
from distil.recipe.api import PriceSection
from distil.recipe.synth import SynthSection
from distil.recipe.terms import terms_record
from distil.synth import SynthError, SynthIncompleteError
from distil.synth.card import write_card
from distil.synth.driver import Request, SendReport, send_missing
from distil.synth.estimate import estimate
from distil.synth.filters import judge
from distil.synth.output import reject_row, response_row, utc, write_jsonl, write_train
from distil.synth.plan import (
    collect_expansions,
    data_dir,
    expansion_requests,
    failure_reason,
    journal_path,
    require_synth,
    resend_rejected,
    response_requests,
    response_sampling,
)
from distil.synth.prompts import PromptItem, PromptReject, deduplicate, seed_prompts
from distil.synth.teacher import open_synth_teacher
from distil.teachers.base import Sampling, Teacher
from distil.teachers.budget import BudgetExhaustedError, cost_at, priced
from distil.teachers.journal import Journal


@dataclass
class SynthResult:
    """Where the data went and how much of it was kept."""

    train_path: Path
    kept: int
    rejected: int
    summary: dict[str, Any]


def run_synth(recipe: Recipe, dry_run: bool = False) -> Any:
    """Run the synth stage (or, with `dry_run`, estimate it); see the module docstring."""
    section = require_synth(recipe)
    seeds, prompt_rejects = seed_prompts(section.prompts, recipe.seed)
    if not seeds:
        raise SynthError(
            "no prompts: synth.prompts.file and synth.prompts.tasks gave none; point them at some"
        )
    if dry_run:
        return estimate(recipe, seeds, prompt_rejects)
    check_synth_generator(recipe)
    with Journal.open(journal_path(recipe)) as journal:
        teacher, notes = open_synth_teacher(recipe, journal)
        try:
            for line in notes:
                console.print(line, highlight=False)
            return _synthesise(recipe, teacher, notes, journal, seeds, prompt_rejects)
        finally:
            teacher.close()


def response_sampling_for(section: SynthSection, teacher: Teacher, seed: int) -> Sampling:
    """The run's sampling, refused when it needs logprobs the teacher does not give."""
    s = section.sampling
    caps = teacher.capabilities
    if (s.logprobs or s.top_logprobs) and not caps.logprobs:
        report = getattr(teacher, "probe_report", None)
        cause = getattr(report, "logprobs_refusal", None) or "none returned"
        raise SynthError(
            f"the teacher refuses logprobs ({cause}); set synth.sampling.top_logprobs=0 "
            "and synth.sampling.logprobs=false to collect text only (sequence-level KD)"
        )
    return response_sampling(section, seed, max_top_logprobs=caps.max_top_logprobs)


def assemble(
    planned: list[tuple[PromptItem, int, Request]],
    journal: Journal,
    section: SynthSection,
    context: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Training rows, rejected responses, and requests not answered yet (budget stop)."""
    rows, rejects, pending = [], [], 0
    with_logprobs = section.sampling.logprobs or section.sampling.top_logprobs > 0
    for prompt, k, request in planned:
        entry = journal.get(request.key)
        if entry is None:
            pending += 1
            continue
        if entry.completion is None:
            rejects.append(
                reject_row(
                    "response",
                    failure_reason(entry),
                    entry.error or "",
                    prompt=prompt,
                    entry=entry,
                    sample_index=k,
                )
            )
            continue
        verdict = judge(entry.completion, section.filters, request.sampling.max_new_tokens)
        if verdict is not None:
            rejects.append(
                reject_row(
                    "response", verdict.reason, verdict.detail, prompt=prompt, entry=entry, sample_index=k
                )
            )
            continue
        rows.append(
            response_row(entry, prompt=prompt, sample_index=k, context=context, with_logprobs=with_logprobs)
        )
    return rows, rejects, pending


def _synthesise(
    recipe: Recipe,
    teacher: Teacher,
    notes: list[str],
    journal: Journal,
    seeds: list[PromptItem],
    prompt_rejects: list[PromptReject],
) -> SynthResult:
    section = require_synth(recipe)
    base = response_sampling_for(section, teacher, recipe.seed)
    expansions = expansion_requests(recipe, seeds)
    resend = resend_rejected(recipe)
    expand_report = (
        send_missing(teacher, expansions, journal, "expand", section.batch_size, resend)
        if expansions
        else SendReport()
    )
    expanded, expand_rejects, expand_pending = collect_expansions(expansions, journal.entries, section)
    prompts, duplicates = deduplicate(seeds + expanded, section.dedup)
    planned = response_requests(recipe, prompts, base)
    report = send_missing(
        teacher, [r for _, _, r in planned], journal, "responses", section.batch_size, resend
    )
    rows, response_rejects, pending = assemble(planned, journal, section, _context(recipe, teacher))
    rejects = (
        [reject_row("prompt", r.reason, r.detail, prompt=r.item) for r in prompt_rejects + duplicates]
        + expand_rejects
        + response_rejects
    )
    stopped = _exact(teacher, expand_report.stopped or report.stopped)
    incomplete = failed_requests(recipe, expand_rejects + response_rejects, len(expansions) + len(planned))
    summary = _summary(
        recipe,
        teacher,
        notes,
        journal,
        base,
        {
            "seeds": seeds,
            "expanded": expanded,
            "prompts": prompts,
            "rejects": rejects,
            "rows": rows,
            "planned": len(planned),
            "pending": pending,
            "expand_pending": expand_pending,
            "sent": [expand_report, report],
            "stopped": stopped,
            "incomplete": incomplete,
        },
    )
    train_path = _write_outputs(recipe, rows, rejects, summary)
    if stopped is not None:
        raise BudgetExhaustedError(
            f"{stopped}; {len(rows)} rows so far in {train_path}, "
            f"{pending + expand_pending} requests not sent yet"
        )
    if incomplete is not None:
        raise SynthIncompleteError(incomplete)
    if not rows:
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(r["reason"] for r in rejects).most_common())
        raise SynthError(
            f"no response was kept ({reasons}); see {data_dir(recipe) / 'rejects.jsonl'} "
            "and loosen synth.filters or raise synth.sampling.max_new_tokens"
        )
    return SynthResult(train_path, len(rows), len(rejects), summary)


def _exact(teacher: Teacher, stopped: BudgetExhaustedError | None) -> BudgetExhaustedError | None:
    """A budget stop worded with the totals reached after the requests in flight finished."""
    spend = getattr(teacher, "spend", None)
    return spend.restate(stopped) if stopped is not None and spend is not None else stopped


def failed_requests(recipe: Recipe, rejects: list[dict[str, Any]], requests: int) -> str | None:
    """Why the stage is not done when more requests failed (after their retries, or rejected
    by the server as invalid) than synth.max_failed_fraction allows."""
    failed = [r for r in rejects if r["reason"] == "request_failed"]
    refused = [r for r in rejects if r["reason"] == "request_rejected"]
    allowed = require_synth(recipe).max_failed_fraction
    if len(failed) + len(refused) <= allowed * requests:
        return None
    said = []
    if failed:
        said.append(
            f"{len(failed)} of {requests} requests to the teacher failed after their "
            f"retries (first: {failed[0]['detail'][:200]}): a rerun sends only those (the "
            f"answered ones are kept in {journal_path(recipe)})"
        )
    if refused:
        said.append(
            f"{len(refused)} of {requests} requests were rejected by the server as invalid "
            f"(first: {refused[0]['detail'][:200]}): a rerun does not send them again "
            "(shorter prompts or another synth.sampling.max_new_tokens are new requests); "
            "once the server's limits allow them, rerun with "
            "teacher.api.resend_rejected=true"
        )
    return (
        f"{'; '.join(said)}; the stage is not done, so nothing trains on this data; or set "
        f"synth.max_failed_fraction to accept a share of failures; each failure is in "
        f"{data_dir(recipe) / 'rejects.jsonl'}"
    )


def _context(recipe: Recipe, teacher: Teacher) -> dict[str, Any]:
    described = teacher.describe()
    return {
        "teacher": recipe.teacher.model,
        "backend": described.get("backend"),
        "endpoint": described.get("endpoint"),
        "revision": described.get("revision"),
        "toolkit_version": __version__,
        "license": require_synth(recipe).license,
        "terms": terms_record(recipe.teacher.terms),
    }


def _summary(
    recipe: Recipe, teacher: Teacher, notes: list[str], journal: Journal, base: Sampling, got: dict[str, Any]
) -> dict[str, Any]:
    section = require_synth(recipe)
    api = recipe.teacher.api
    price = api.price if api is not None else PriceSection()
    spend = getattr(teacher, "spend", None)
    spent = spend.spent if spend is not None else journal.spent
    token_map = getattr(teacher, "token_map", None)
    by_reason = Counter(f"{r['kind']}:{r['reason']}" for r in got["rejects"])
    return {
        "teacher": {**teacher.describe(), "notes": notes},
        "sampling": {**base.as_dict(), "seed": None},
        "seed": recipe.seed,
        "samples_per_prompt": section.samples_per_prompt,
        "prompts": {
            "sources": dict(Counter(p.source for p in got["seeds"] + got["expanded"])),
            "expansion_requests": section.prompts.expand,
            "expansion_not_sent": got["expand_pending"],
            "kept": len(got["prompts"]),
        },
        "responses": {"requested": got["planned"], "kept": len(got["rows"]), "not_sent": got["pending"]},
        "rejected": dict(sorted(by_reason.items())),
        "sent_this_run": sum(r.ok + r.failed for r in got["sent"]),
        "failed_this_run": sum(r.failed for r in got["sent"]),
        "spent": {
            "requests": spent.requests,
            "prompt_tokens": spent.prompt_tokens,
            "completion_tokens": spent.completion_tokens,
            "cost": round(cost_at(price, spent.prompt_tokens, spent.completion_tokens), 6),
            "currency": price.currency,
            "priced": priced(price),
        },
        "attempts": dict(getattr(teacher, "counts", {})),
        "token_mapping": token_map.report() if token_map is not None else None,
        "stopped": str(got["stopped"]) if got["stopped"] is not None else None,
        "incomplete": got["incomplete"],
        "dedup": section.dedup.model_dump(),
        "filters": section.filters.model_dump(),
        "license": section.license,
        "terms": recipe.teacher.terms.model_dump(),
        "created": utc(time.time()),
        "toolkit_version": __version__,
    }


def _write_outputs(
    recipe: Recipe, rows: list[dict[str, Any]], rejects: list[dict[str, Any]], summary: dict[str, Any]
) -> Path:
    section = require_synth(recipe)
    out = data_dir(recipe)
    train_path = out / "train.parquet"
    write_train(train_path, rows, section.sampling.logprobs or section.sampling.top_logprobs > 0)
    write_jsonl(out / "rejects.jsonl", rejects)
    atomic_write_json(out / "synth_summary.json", summary)
    write_card(out, recipe, summary)
    return train_path
