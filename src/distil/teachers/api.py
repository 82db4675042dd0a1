"""A teacher behind an OpenAI-compatible API, on the official `openai` SDK (async).

    teacher = ApiTeacher.from_section("gpt-4o-mini", recipe.teacher.api)
    report = teacher.probe(want_top_logprobs=5)     # what the endpoint offers, in words
    completions = teacher.generate(prompts, Sampling(max_new_tokens=256, top_logprobs=5))
    future = teacher.submit(prompt, sampling)       # -> Outcome: a completion or a failure

The connection, limits, retries and budget are `ApiClient`'s (`teachers/api_client.py`);
this adds the `Teacher` protocol on top: generation (journaled one request at a time by
the synth stage through `submit`), scoring through completions `echo`, and the start-up
probe (`teachers/api_probe.py`) that says what the endpoint offers.
"""

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from typing import Any

from distil.recipe.api import ApiSection
from distil.teachers.api_client import ApiClient
from distil.teachers.api_parse import chat_completion, echoed_logprobs, text_completion
from distil.teachers.api_probe import ProbeReport, run_probe
from distil.teachers.base import (
    Capabilities,
    Completion,
    NotSupportedError,
    Prompt,
    Sampling,
    TeacherError,
    TokenLogprob,
    Usage,
)
from distil.teachers.budget import Spend, Spent
from distil.teachers.outcome import Outcome
from distil.teachers.tokenmap import load_tokenizer


class ApiTeacher(ApiClient):
    """An OpenAI-compatible endpoint as a `Teacher`: text, sampled and top-k logprobs, scoring."""

    probe_report: ProbeReport | None = None
    """What the start-up probe found (None until `probe` runs)."""

    @classmethod
    def from_section(
        cls,
        model: str,
        api: ApiSection,
        *,
        spent: Spent | None = None,
        ledger: Callable[[str], None] | None = None,
        http_client: Any = None,
        seed: int = 0,
    ) -> "ApiTeacher":
        """The teacher the recipe's `teacher.api` section describes (not yet probed).

        Loads teacher.api.tokenizer when named; counts the budget from `spent` (what
        earlier runs spent) and records each billed attempt with `ledger` before sending it
        (see `Spend`). `http_client`: an httpx client for the SDK (a proxy, a test)."""
        tokenizer = load_tokenizer(api.tokenizer) if api.tokenizer else None
        spend = Spend(api.budget, api.price, already=spent, ledger=ledger)
        return cls(model, api, tokenizer=tokenizer, spend=spend, http_client=http_client, seed=seed)

    # -- the Teacher protocol -------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """What the endpoint offers (probed on first use)."""
        report = self.probe_report if self.probe_report is not None else self.probe()
        return report.capabilities

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "api",
            "model": self.name,
            "revision": None,
            "endpoint": f"{self.base_url} ({self.endpoint})",
        }

    def offers(self) -> list[str]:
        """The start-up probe's findings (none before it ran)."""
        return list(self.probe_report.lines) if self.probe_report is not None else []

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        futures = [self.submit(prompt, sampling) for prompt in prompts]
        try:
            outcomes = [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        failed = [o for o in outcomes if o.completion is None]
        if failed:
            raise TeacherError(
                f"{len(failed)} of {len(prompts)} requests to {self.base_url} failed; "
                f"first: {failed[0].error}"
            )
        return [o.completion for o in outcomes if o.completion is not None]

    def score(self, prompt: Prompt, completion: str, top_logprobs: int) -> list[TokenLogprob]:
        caps = self.capabilities
        if not caps.can_score:
            raise NotSupportedError(
                f"the teacher at {self.base_url} cannot score given text (its completions endpoint "
                "gives no echo with logprobs); capture logprobs while generating instead"
            )
        if top_logprobs > caps.max_top_logprobs:
            raise NotSupportedError(
                f"asked for the top-{top_logprobs} logprobs; the teacher at "
                f"{self.base_url} gives at most {caps.max_top_logprobs}"
            )
        return self.run(self.ascore(prompt, completion, top_logprobs)).result()

    # -- requests --------------------------------------------------------------------------

    def submit(
        self, prompt: Prompt, sampling: Sampling, key: str | None = None
    ) -> "concurrent.futures.Future[Outcome]":
        """Schedule one request from any thread; the future holds its `Outcome`.

        `key` (e.g. the journal key) is sent as the Idempotency-Key header of every attempt.
        The future raises only when the whole run must stop: a budget cap
        (`BudgetExhaustedError`) or a problem no retry can fix (bad key, unknown model).
        """
        return self.run(self.arequest(prompt, sampling, key))

    async def arequest(self, prompt: Prompt, sampling: Sampling, key: str | None = None) -> Outcome:
        """One generation with retries, limits and budget; failures come back as an `Outcome`."""
        prompt_tokens = self.estimate_prompt_tokens(prompt)
        options: dict[str, Any] = {"timeout": self.timeout_s}
        if key is not None:
            options["extra_headers"] = {"Idempotency-Key": key}

        async def call() -> tuple[Completion, Usage, str | None]:
            if self.endpoint == "chat":
                response = await self.client.chat.completions.create(
                    **self.chat_params(prompt, sampling), **options
                )
                completion = chat_completion(response, self.id_of, prompt_tokens)
            else:
                response = await self.client.completions.create(
                    **self.completion_params(prompt, sampling), **options
                )
                completion = text_completion(response, self.id_of, prompt_tokens)
            return completion, completion.usage, getattr(response, "model", None)

        result = await self.attempts(call, prompt_tokens, sampling.max_new_tokens, label=key or "request")
        failure = result.failure
        rejected = failure is not None and failure.kind == "reject" and 400 <= (failure.status or 0) < 500
        return Outcome(
            result.value,
            result.cause,
            result.attempts,
            result.started,
            time.time(),
            result.served_model,
            attempts_recorded=self.spend.ledger is not None,
            rejected=rejected,
        )

    async def ascore(self, prompt: Prompt, completion: str, top_logprobs: int) -> list[TokenLogprob]:
        """Teacher-forced logprobs of `completion` after `prompt`, through completions `echo`."""
        scored, _, _ = await self.ascore_billed(prompt, completion, top_logprobs)
        return scored

    async def ascore_billed(
        self, prompt: Prompt, completion: str, top_logprobs: int, key: str | None = None
    ) -> tuple[list[TokenLogprob], Usage, int]:
        """`ascore`, with the tokens the server billed and the attempts it took; each attempt
        is recorded in the budget's ledger under `key` (a journal key) before it is sent."""
        prompt_text = self.render(prompt)
        full = prompt_text + completion
        estimate = self.estimate_prompt_tokens(full)

        async def call() -> tuple[tuple[list[TokenLogprob], Usage], Usage, str | None]:
            response = await self.client.completions.create(
                model=self.name,
                prompt=full,
                echo=True,
                logprobs=top_logprobs,
                max_tokens=1,
                temperature=0,
                timeout=self.timeout_s,
            )
            scored = echoed_logprobs(response, len(prompt_text), len(full), self.id_of)
            usage = response.usage
            billed = Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(estimate, 1)
            return (scored, billed), billed, getattr(response, "model", None)

        result = await self.attempts(call, estimate, 1, label=key or "score")
        if result.failure is not None:
            raise TeacherError(f"scoring through {self.base_url} failed: {result.cause}")
        scored, billed = result.value
        return scored, billed, result.attempts

    # -- start-up probe and context ---------------------------------------------------------

    def probe(self, want_top_logprobs: int = 0) -> ProbeReport:
        """Ask the endpoint what it offers; returns (and keeps) a `ProbeReport`."""
        self.probe_report = self.run(run_probe(self, want_top_logprobs)).result()
        return self.probe_report

    def __enter__(self) -> "ApiTeacher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
