"""The start-up probe of an API teacher: what the endpoint offers, and what that means.

    report = teacher.probe(want_top_logprobs=5)     # runs run_probe on the teacher's loop
    report.capabilities          # Capabilities(logprobs=True, max_top_logprobs=5, can_score=False, ...)
    print("\\n".join(report.lines))
    # teacher gpt-x at https://... (chat endpoint)
    # it returns the top-5 logprobs per generated token: the student can learn from ...

Three small requests: the model list (is the model served? is the key accepted?), a
one-token generation asking for logprobs (stepping down the top-k until the server
accepts it), and a one-token completions `echo` (can it score given text?). An endpoint
that accepts no connection, a refused key or an unknown model stop the run here with one
clear message. Every finding is a definite answer from the server: transient failures
are retried with teacher.api.max_retries, and an endpoint that keeps failing stops the
probe with an error instead of being reported as lacking a capability.
"""

from dataclasses import dataclass
from typing import Any

from distil.teachers.api_client import ApiClient
from distil.teachers.api_parse import NoPromptLogprobs, chat_completion, echoed_logprobs, text_completion
from distil.teachers.base import Capabilities, Sampling, TeacherError, Usage

PROBE_PROMPT = "Say OK."
SCORE_TEXT = "The quick brown fox jumps over the lazy dog."
PROBE_TOKENS = 4


@dataclass(frozen=True)
class ProbeReport:
    """What the endpoint offers, and the same in plain words for the user."""

    capabilities: Capabilities
    served_models: tuple[str, ...] | None
    """Models the endpoint lists (None when it does not list them)."""
    logprobs_refusal: str | None
    """Why there are no logprobs (the server's refusal), when there are none."""
    scoring_refusal: str | None
    lines: tuple[str, ...]


async def run_probe(teacher: ApiClient, want_top_logprobs: int) -> ProbeReport:
    """Probe the endpoint; raise `TeacherError` when it cannot serve the run at all."""
    served = await _served_models(teacher)
    if served is not None and teacher.name not in served:
        listed = ", ".join(served[:10]) + (", ..." if len(served) > 10 else "")
        raise TeacherError(
            f"model {teacher.name!r} is not served at {teacher.base_url} (it serves: "
            f"{listed or 'nothing'}); set teacher.model to one of them"
        )
    has_logprobs, max_top, refusal = await _probe_logprobs(teacher, want_top_logprobs)
    can_score, scoring_refusal = await _probe_scoring(teacher)
    server_ids = teacher.counts.get("server_token_ids", 0) > 0
    caps = Capabilities(
        logprobs=has_logprobs,
        max_top_logprobs=max_top,
        can_score=can_score,
        token_ids=server_ids or teacher.token_map is not None,
    )
    lines = explain(teacher, caps, want_top_logprobs, refusal, scoring_refusal, server_ids)
    return ProbeReport(
        caps, None if served is None else tuple(served), refusal, scoring_refusal, tuple(lines)
    )


async def _served_models(teacher: ApiClient) -> list[str] | None:
    async def call() -> tuple[list[str], Usage, None]:
        page = await teacher.client.models.list(timeout=teacher.timeout_s)
        return [model.id for model in page.data], Usage(), None

    result = await teacher.attempts(
        call, 0, 0, billed=False, raise_fatal=False, give_up_on=frozenset({"unreachable"})
    )
    failure = result.failure
    if failure is None:
        return result.value
    if failure.kind == "retry":
        raise TeacherError(
            f"cannot reach the teacher at {teacher.base_url}: {result.cause}; check "
            "teacher.api.base_url and that the server is running"
        )
    if failure.status in (401, 403):
        raise TeacherError(result.cause or failure.cause)
    return None  # the endpoint does not list its models; the generation probe will tell


async def _probe_logprobs(teacher: ApiClient, want: int) -> tuple[bool, int, str | None]:
    """(logprobs offered, largest top-k accepted, refusal cause).

    Steps down a ladder of top-k values until one is accepted, then bisects between it and
    the last refused one, so a limit like 3 is found exactly (refusals cost no tokens).
    """
    refusal, refused = None, None
    for k in sorted({max(want, 20), want, 5, 1, 0}, reverse=True):
        accepted, cause = await _try_top_k(teacher, k)
        if accepted is None:
            refusal, refused = cause, k
            continue
        while refused is not None and refused - k > 1:
            middle = (k + refused) // 2
            found, _ = await _try_top_k(teacher, middle)
            if found is None:
                refused = middle
            else:
                k, accepted = middle, found
        if accepted < 0:
            return False, 0, "the server ignored the logprobs parameter"
        return True, accepted, None
    plain = await _generate(teacher, Sampling(max_new_tokens=PROBE_TOKENS))
    if plain.failure is None:
        return False, 0, refusal
    raise TeacherError(
        f"the teacher at {teacher.base_url} rejects a {PROBE_TOKENS}-token request "
        f"({plain.cause}); check teacher.model and teacher.api.endpoint"
    )


async def _try_top_k(teacher: ApiClient, k: int) -> tuple[int | None, str | None]:
    """(top-k the answer carried, or -1 for an answer without logprobs; None if refused)."""
    result = await _generate(teacher, Sampling(max_new_tokens=PROBE_TOKENS, logprobs=True, top_logprobs=k))
    if result.failure is None:
        logprobs = result.value.logprobs
        if logprobs is None:
            return -1, None
        if logprobs and all(t.token_id is not None for t in logprobs):  # parsed without a tokenizer
            teacher.counts["server_token_ids"] += 1
        return max((len(t.top) for t in logprobs), default=k), None
    if result.failure.kind != "reject":
        raise TeacherError(
            f"the teacher at {teacher.base_url} did not answer the start-up probe: {result.cause}"
        )
    return None, result.cause


async def _generate(teacher: ApiClient, sampling: Sampling) -> Any:
    prompt_tokens = teacher.estimate_prompt_tokens(PROBE_PROMPT)

    async def call() -> tuple[Any, Usage, str | None]:
        if teacher.endpoint == "chat":
            response = await teacher.client.chat.completions.create(
                **teacher.chat_params(PROBE_PROMPT, sampling), timeout=teacher.timeout_s
            )
            completion = chat_completion(response, None, prompt_tokens)
        else:
            response = await teacher.client.completions.create(
                **teacher.completion_params(PROBE_PROMPT, sampling), timeout=teacher.timeout_s
            )
            completion = text_completion(response, None, prompt_tokens)
        return completion, completion.usage, getattr(response, "model", None)

    return await teacher.attempts(call, prompt_tokens, PROBE_TOKENS, label="probe")


async def _probe_scoring(teacher: ApiClient) -> tuple[bool, str | None]:
    """(can score, why not), from a definite answer only.

    No means the server said so: a 4xx refusal, or a well-formed echo without prompt
    logprobs. Transient failures (5xx, 429, timeouts, dropped connections, malformed
    replies) are retried like any request; if they never stop, the probe raises rather than
    guess, since `capture.source: auto` would otherwise fall back to generation logprobs.
    """
    estimate = teacher.estimate_prompt_tokens(SCORE_TEXT)

    async def call() -> tuple[tuple[bool, str | None], Usage, str | None]:
        response = await teacher.client.completions.create(
            model=teacher.name,
            prompt=SCORE_TEXT,
            echo=True,
            logprobs=1,
            max_tokens=1,
            temperature=0,
            timeout=teacher.timeout_s,
        )
        usage = response.usage
        billed = Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage()
        try:
            scored = echoed_logprobs(response, 1, len(SCORE_TEXT), None)
        except NoPromptLogprobs as err:
            return (False, str(err)), billed, None
        return (True, None) if scored else (False, "no prompt logprobs in the echo"), billed, None

    result = await teacher.attempts(call, estimate, 1, label="probe", raise_fatal=False)
    if result.failure is None:
        return result.value
    if result.failure.kind != "retry":
        return False, result.cause
    raise TeacherError(
        f"could not tell whether the teacher at {teacher.base_url} can score given "
        f"text: every attempt failed ({result.cause}); rerun when the endpoint "
        "answers, or raise teacher.api.max_retries"
    )


def explain(
    teacher: ApiClient,
    caps: Capabilities,
    want: int,
    refusal: str | None,
    scoring_refusal: str | None,
    server_ids: bool = False,
) -> list[str]:
    """What the probe found, in words, with what it means for distillation."""
    lines = [f"teacher {teacher.name} at {teacher.base_url} ({teacher.endpoint} endpoint)"]
    k = caps.max_top_logprobs
    if not caps.logprobs:
        lines.append(
            f"this endpoint returns no logprobs ({refusal}): the student can be trained "
            "on text only (sequence-level KD)"
        )
    elif k == 0:
        lines.append(
            "it returns the sampled token's logprob but no alternatives: the student "
            "learns from text (sequence-level KD); the logprobs can only weigh or filter samples"
        )
    else:
        lines.append(
            f"it returns the top-{k} logprobs per generated token: the student can learn "
            f"from captured top-{k} distributions (sparse KD) as well as from the text"
        )
        if want > k:
            lines.append(
                f"asked for the top-{want}, it gives at most {k}: rows carry {k} alternatives per token"
            )
    if caps.can_score:
        lines.append(
            "it scores given text (completions echo): teacher-forced logprobs of any response can be captured"
        )
    else:
        lines.append(
            f"it cannot score given text ({scoring_refusal}): only its own generations carry logprobs"
        )
    if server_ids:
        lines.append("it sends the token ids with the logprobs: tokens need no mapping")
    elif teacher.token_map is not None:
        lines.append(
            f"token strings are mapped to ids with {teacher.token_map.name}; mismatches "
            "are counted and reported"
        )
    else:
        lines.append(
            "no teacher.api.tokenizer: tokens stay strings without ids (name the "
            "teacher's tokenizer to get ids)"
        )
    return lines
