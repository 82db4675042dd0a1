"""What an API error means for the run: retry it, record it on its row, or stop everything.

    failure = classify(err, where)
    failure.kind      # "retry" (429, 5xx, timeout, dropped, malformed), "reject" (other 4xx),
                      # or "fatal" (bad key, no access, unknown model or endpoint)

Messages never contain the API key: `scrub` removes it from any text before it is kept.
"""

import json
from dataclasses import dataclass
from typing import Literal

import openai
import pydantic

from distil.teachers.api_parse import MalformedResponse
from distil.teachers.ratelimit import retry_after_seconds

RETRY_STATUSES = {408, 409, 425, 429}


@dataclass(frozen=True)
class Failure:
    """One failed attempt: what to do about it and why, in words."""

    kind: Literal["retry", "reject", "fatal"]
    cause: str
    retry_after: float | None = None
    label: str = "error"
    """Short counter name: rate_limited, server_error, timeout, connection, unreachable,
    malformed, rejected, refused."""
    status: int | None = None
    """HTTP status, when the server answered."""


@dataclass(frozen=True)
class Where:
    """The endpoint a request went to, to name it in messages."""

    base_url: str
    model: str
    endpoint: str
    api_key_env: str | None


def classify(err: BaseException, where: Where) -> Failure | None:
    """The meaning of an exception raised by one request; None when it is not an API error."""
    if isinstance(err, openai.APITimeoutError):
        return Failure("retry", "timed out", label="timeout")
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__ or err
        name = type(cause).__name__
        said = _first_line(cause)
        # ConnectError: nothing accepted the connection (refused, unknown host)
        label = "unreachable" if name == "ConnectError" else "connection"
        return Failure(
            "retry",
            f"connection failed ({name}: {said})" if said else f"connection failed ({name})",
            label=label,
        )
    if isinstance(err, openai.APIStatusError):
        return _status_failure(err, where)
    if isinstance(
        err,
        MalformedResponse
        | json.JSONDecodeError
        | pydantic.ValidationError
        | openai.APIResponseValidationError,
    ):
        return Failure(
            "retry", f"malformed response ({type(err).__name__}: {_first_line(err)})", label="malformed"
        )
    return None


def _status_failure(err: "openai.APIStatusError", where: Where) -> Failure:
    status = err.status_code
    detail = f"{status}: {_api_message(err)}"
    if status == 401:
        fix = (
            f"set the environment variable {where.api_key_env} to a valid key"
            if where.api_key_env
            else "set teacher.api.api_key_env to the name of the environment variable holding the key"
        )
        return Failure(
            "fatal",
            f"the teacher at {where.base_url} refused the API key ({detail}); {fix}",
            label="refused",
            status=status,
        )
    if status == 403:
        return Failure(
            "fatal",
            f"the teacher at {where.base_url} refused access to model "
            f"{where.model!r} ({detail}); check the key's permissions",
            label="refused",
            status=status,
        )
    if status == 404:
        return Failure(
            "fatal",
            f"model {where.model!r} or the {where.endpoint} endpoint was not found "
            f"at {where.base_url} ({detail}); check teacher.model, "
            "teacher.api.base_url and teacher.api.endpoint",
            label="not_found",
            status=status,
        )
    retry_after = retry_after_seconds(err.response.headers)
    if status in RETRY_STATUSES:
        label = "rate_limited" if status == 429 else "server_error"
        return Failure("retry", f"HTTP {detail}", retry_after, label=label, status=status)
    if status >= 500:
        return Failure("retry", f"server error ({detail})", retry_after, label="server_error", status=status)
    return Failure("reject", f"rejected by the server ({detail})", label="rejected", status=status)


def _api_message(err: "openai.APIStatusError") -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return _first_line(str(message))
    return _first_line(err.message)


def _first_line(value: object) -> str:
    text = str(value).strip()
    line = text.splitlines()[0] if text else ""
    return line[:300]


def scrub(text: str, secret: str | None) -> str:
    """`text` with every occurrence of the secret (and its short forms) replaced by ***."""
    if not secret or len(secret) < 6:
        return text
    text = text.replace(secret, "***")
    return text.replace(secret[-12:], "***") if len(secret) > 16 else text
