"""Recipe sections of a teacher behind an OpenAI-compatible API: `teacher.api` and its price and budget.

    teacher:
      model: gpt-4o-mini
      api: {base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY, concurrency: 16}

See docs/api-teacher.md; `distil recipe docs` prints every field.
"""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.section import EnvName, HttpUrl, PositiveFloat, Section


class PriceSection(Section):
    """What the provider charges, to estimate (`distil synth --dry-run`) and cap the cost."""

    input_per_million: Annotated[float, Field(ge=0)] = 0.0
    """Price of one million prompt (input) tokens; 0 when unknown or free."""
    output_per_million: Annotated[float, Field(ge=0)] = 0.0
    """Price of one million completion (output) tokens."""
    currency: str = "USD"
    """Currency the prices are in, for reports."""


class BudgetSection(Section):
    """Caps on what a run may spend. Counted over the run folder's request journal, so a
    rerun gets no fresh allowance; reaching one stops the run cleanly, keeping what was done."""

    max_requests: Annotated[int, Field(ge=1)] | None = None
    """Most requests to send, retries and start-up probes included; empty: no cap."""
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    """Most prompt + completion tokens; a request is only sent if its worst case fits."""
    max_cost: Annotated[float, Field(gt=0)] | None = None
    """Most money to spend at teacher.api.price; a request is only sent if its worst case fits."""


class ApiSection(Section):
    """An OpenAI-compatible endpoint serving the teacher (`teacher.model` is the served model name)."""

    base_url: HttpUrl
    """Root of the API, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1."""
    api_key_env: EnvName | None = "OPENAI_API_KEY"
    """Name of the environment variable that holds the API key (never the key itself);
    empty for a server that needs no key."""
    endpoint: Literal["chat", "completions"] = "chat"
    """`chat` sends messages to /chat/completions; `completions` sends the prompt, rendered
    with teacher.api.tokenizer's chat template when it has one, to /completions."""
    concurrency: Annotated[int, Field(ge=1)] = 8
    """Most requests in flight at once."""
    requests_per_minute: PositiveFloat | None = None
    """Token-bucket limit on requests per minute; empty: none."""
    tokens_per_minute: PositiveFloat | None = None
    """Token-bucket limit on prompt + completion tokens per minute (worst case reserved,
    corrected by the reported usage); empty: none."""
    timeout_s: PositiveFloat = 60.0
    """Seconds one request may take before it is abandoned and retried."""
    max_retries: Annotated[int, Field(ge=0)] = 6
    """Retries of a request after 429, 5xx, timeouts, dropped connections or malformed
    replies; then it is recorded as failed (with its cause) and a rerun sends it again."""
    resend_rejected: bool = False
    """Send again the requests the server refused as invalid in an earlier run (a 4xx other
    than 408, 409, 425 and 429, e.g. a prompt longer than its context). Such a request is
    never retried: it is journaled as rejected, and by default a rerun does not send it
    again (it would be refused again) but says how many there are and why. Set it once the
    cause is fixed on the server's side (a longer context, another deployment)."""
    backoff_s: PositiveFloat = 1.0
    """Wait before the first retry; it doubles each retry (with jitter, up to backoff_max_s).
    A Retry-After header from the server takes precedence and pauses every request."""
    backoff_max_s: PositiveFloat = 60.0
    """Longest wait between two retries of a request."""
    tokenizer: str | None = None
    """The teacher's tokenizer (folder, hub id or built-in name), to map the token strings
    the API returns to ids and to count prompt tokens; empty: tokens stay strings."""
    price: PriceSection = PriceSection()
    """Prices per million tokens, for cost estimates and max_cost."""
    budget: BudgetSection = BudgetSection()
    """Spending caps."""
