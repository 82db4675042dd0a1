"""What a `distil serve` server allows: limits, batching, auth, and the checks made at start.

    settings = ServerSettings(served_name="tiny-teacher", max_top_logprobs=20)
    start = StartSettings(host="127.0.0.1", port=0)   # where it listens, how it loads the model
    key = api_key_from_env()                      # DISTIL_SERVE_API_KEY, never argv
    check_exposure("0.0.0.0", key)                # raises ServeError without a key

Every field and default is written once, here (the watermark's in
`distil.provenance.WatermarkSpec`); `distil serve`'s options and their help are built from
them (distil.commands.serve).
"""

import ipaddress
import os

from pydantic import BaseModel, ConfigDict, Field

from distil.errors import DistilError
from distil.provenance.spec import KEY_ENV, Scheme, WatermarkSpec
from distil.recipe.section import EnvName

API_KEY_ENV = "DISTIL_SERVE_API_KEY"
"""The environment variable holding the server's API key (there is no flag for it)."""


HEADER_TIMEOUT_S = 10.0
"""Default `ServerSettings.header_timeout_s`."""


class ServeError(DistilError):
    """The server cannot start as asked (exposed without a key, port taken, bad limits)."""


class ServerSettings(BaseModel):
    """Limits and behaviour of one server; the defaults suit a teacher endpoint on one host."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    served_name: str = Field(min_length=1)
    """The model id clients send in `model` and that /v1/models lists."""
    max_top_logprobs: int = Field(20, ge=0)
    """Largest `top_logprobs` (chat) or `logprobs` (completions) a request may ask for."""
    max_tokens: int = Field(1024, ge=1)
    """Largest `max_tokens` a request may ask for; also the default when it asks for none."""
    max_prompt_tokens: int | None = Field(None, ge=1)
    """Longest prompt in tokens; None: the model's context window."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest request body; bigger ones are answered 413."""
    max_prompts: int = Field(64, ge=1)
    """Most prompts one /v1/completions request may carry (a list of prompts)."""
    max_batch_size: int = Field(16, ge=1)
    """Most requests generated together in one batched model call."""
    batch_wait_ms: float = Field(5.0, ge=0)
    """How long the first request of a batch waits for others to join it."""
    max_pending: int = Field(1024, ge=1)
    """Requests queued beyond this are answered 503 with Retry-After."""
    header_timeout_s: float = Field(HEADER_TIMEOUT_S, gt=0)
    """Seconds a client has to send a request's headers, from connecting or from starting the
    request; a slower connection is closed (idle keep-alive connections close after 5 s)."""
    refuse_logprobs: bool = False
    """Answer any request for logprobs with the 400 a provider without them gives (for tests)."""
    admin: bool = False
    """Serve GET /admin/stats: request counters (per request key) and batching figures."""
    watermark: bool = False
    """Mark what the model serves with a keyed watermark of `watermark_scheme`
    (docs/provenance.md). The key comes from the variable named by `watermark_key_env`."""
    watermark_scheme: Scheme = WatermarkSpec.scheme
    """kgw: a green-list logit bias; generation, sampled or greedy, and the logprobs returned
    are those of the marked distribution. exp-min: distortion-free keyed sampling; only sampled
    text is marked, greedy answers and the logprobs returned are the model's own, and gamma
    and delta are unused."""
    watermark_gamma: float = Field(WatermarkSpec.gamma, gt=0, lt=1)
    """Share of the vocabulary that is green after each context (kgw)."""
    watermark_delta: float = Field(WatermarkSpec.delta, ge=0)
    """Added to the logits of green tokens (kgw; more: easier to detect, more change to answers)."""
    watermark_context_width: int = Field(WatermarkSpec.context_width, ge=1)
    """Tokens before a position whose keyed hash picks its green list (or, exp-min, its draw)."""
    watermark_key_env: EnvName = KEY_ENV
    """The environment variable holding the watermark key (its name; the key is never logged,
    saved or returned)."""


class StartSettings(BaseModel):
    """How `distil serve` starts: the address it listens on, how it loads the model, what it logs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    host: str = Field("127.0.0.1", min_length=1)
    """Address to listen on; beyond loopback the API key (env DISTIL_SERVE_API_KEY) is required."""
    port: int = Field(8000, ge=0, le=65535)
    """Port to listen on (0: any free port)."""
    dtype: str = Field("auto", min_length=1)
    """Weights dtype: auto, float32, bfloat16, ..."""
    device: str | None = Field(None, min_length=1)
    """cpu, cuda, cuda:1, ... Default: cuda if available."""
    log_requests: bool = False
    """Log one line per request (never headers or keys)."""


def api_key_from_env() -> str | None:
    """The API key from `DISTIL_SERVE_API_KEY` (None when unset), without surrounding
    whitespace: a key read from a secret file often ends in a newline no client sends."""
    return clean_api_key(os.environ.get(API_KEY_ENV))


def clean_api_key(key: str | None) -> str | None:
    """`key` stripped of surrounding whitespace; a ServeError when nothing is left."""
    if key is None:
        return None
    if not key.strip():
        raise ServeError(
            f"the API key ({API_KEY_ENV}) is empty or only whitespace; put the key "
            "in it, or unset it to serve without a key (loopback only)"
        )
    return key.strip()


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (an unknown name is not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond loopback without an API key."""
    if api_key is None and not is_loopback(host):
        raise ServeError(
            f"refusing to listen on {host} without an API key: anyone who can reach "
            f"it could use the model; set {API_KEY_ENV} in the environment, or bind "
            "to 127.0.0.1"
        )
