"""`distil synth --dry-run`: what a run would send and what it could cost, sending nothing.

Prompt tokens are counted with teacher.api.tokenizer when the recipe names one, else
estimated at ~4 characters per token; completion tokens are the worst case
(max_new_tokens per request). Requests already answered in the journal cost nothing
again. Self-instruct prompts not yet generated are assumed to survive deduplication and to
be as long as the average seed prompt. The API key is not needed and nothing is sent.
"""

from typing import Any

from distil.progress import console
from distil.recipe import Recipe
from distil.synth.plan import (
    collect_expansions,
    expansion_requests,
    journal_path,
    require_synth,
    resend_rejected,
    response_requests,
    response_sampling,
)
from distil.synth.prompts import PromptItem, PromptReject, deduplicate
from distil.teachers.budget import Spent, cost_at, priced
from distil.teachers.journal import Journal, needs_sending
from distil.teachers.tokenmap import count_prompt_tokens, load_tokenizer


def estimate(recipe: Recipe, seeds: list[PromptItem], prompt_rejects: list[PromptReject]) -> dict[str, Any]:
    """Counts, tokens and cost of the run, printed and returned."""
    section = require_synth(recipe)
    api = recipe.teacher.api
    tokenizer = load_tokenizer(api.tokenizer) if api is not None and api.tokenizer else None
    entries, spent = Journal.read(journal_path(recipe))
    s = section.sampling
    base = response_sampling(section, recipe.seed)
    expansions = expansion_requests(recipe, seeds)
    expanded, _, _ = collect_expansions(expansions, entries, section)
    resend = resend_rejected(recipe)
    unexpanded = [r for r in expansions if needs_sending(entries.get(r.key), resend)]
    prompts, duplicates = deduplicate(seeds + expanded, section.dedup)
    planned = [r for _, _, r in response_requests(recipe, prompts, base)]
    to_send = [r for r in planned + expansions if needs_sending(entries.get(r.key), resend)]
    prompt_tokens = sum(count_prompt_tokens(r.chat, tokenizer) for r in to_send)
    average = sum(count_prompt_tokens(p.text, tokenizer) for p in seeds) / len(seeds)
    assumed = len(unexpanded) * section.samples_per_prompt
    prompt_tokens += round(assumed * average)
    requests = len(to_send) + assumed
    result = {
        "prompts": {
            "seeds": len(seeds),
            "dropped": len(prompt_rejects) + len(duplicates),
            "expansions_to_request": len(unexpanded),
            "kept_so_far": len(prompts),
        },
        "requests": {
            "planned": len(planned) + len(expansions) + assumed,
            "answered_in_journal": len(planned) + len(expansions) + assumed - requests,
            "to_send": requests,
        },
        "tokens": {
            "prompt": prompt_tokens,
            "completion_at_most": requests * s.max_new_tokens,
            "counted_with": api.tokenizer if tokenizer is not None else "~4 characters per token",
        },
    }
    result["cost"] = _cost(recipe, result, spent)
    _print(result)
    return result


def _cost(recipe: Recipe, result: dict[str, Any], spent: Spent) -> dict[str, Any]:
    api = recipe.teacher.api
    if api is None:
        return {"at_most": 0.0, "currency": "", "note": "local teacher: no per-token cost"}
    price = api.price
    tokens = result["tokens"]
    at_most = cost_at(price, tokens["prompt"], tokens["completion_at_most"])
    budget = api.budget
    cost: dict[str, Any] = {
        "at_most": round(at_most, 6),
        "currency": price.currency,
        "priced": priced(price),
        "within_budget": True,
    }
    checks = [
        (budget.max_requests, spent.requests + result["requests"]["to_send"], "max_requests"),
        (budget.max_tokens, spent.tokens + tokens["prompt"] + tokens["completion_at_most"], "max_tokens"),
        (budget.max_cost, cost_at(price, spent.prompt_tokens, spent.completion_tokens) + at_most, "max_cost"),
    ]
    over = [
        f"{name}={cap} (worst case {needed:,.4g})"
        for cap, needed, name in checks
        if cap is not None and needed > cap
    ]
    if over:
        cost["within_budget"] = False
        cost["note"] = "the run may stop at teacher.api.budget." + ", ".join(over)
    return cost


def _print(result: dict[str, Any]) -> None:
    p, r, t, c = result["prompts"], result["requests"], result["tokens"], result["cost"]
    console.print(
        f"prompts: {p['seeds']} seeds, {p['dropped']} dropped (empty or near-duplicate), "
        f"{p['expansions_to_request']} self-instruct expansions still to request",
        highlight=False,
    )
    console.print(
        f"requests: {r['planned']} planned, {r['answered_in_journal']} answered in the "
        f"journal, {r['to_send']} to send",
        highlight=False,
    )
    console.print(
        f"tokens: ~{t['prompt']:,} prompt ({t['counted_with']}), at most "
        f"{t['completion_at_most']:,} completion",
        highlight=False,
    )
    if c.get("currency"):
        priced = "" if c["priced"] else " (teacher.api.price is empty)"
        console.print(f"cost: at most {c['at_most']:.4f} {c['currency']}{priced}", highlight=False)
    if c.get("note"):
        console.print(c["note"], highlight=False)
