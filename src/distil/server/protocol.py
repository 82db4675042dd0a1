"""The OpenAI wire format the server accepts, and its error answers.

Requests are validated strictly: a value of the wrong JSON type is refused, never coerced
(`"max_tokens": "8"`, `"logprobs": "yes"`), a field the server does not know is refused (as OpenAI
does), and a known field it cannot honour (streaming, `n > 1`, penalties, tools) is refused
with a message naming it, never silently ignored. Harmless bookkeeping fields (`user`,
`metadata`, `store`, ...) are accepted and ignored.

A body must be UTF-8 JSON as RFC 8259 has it (declared `application/json`, or undeclared):
no NaN or Infinity, no lone UTF-16 surrogate (which no tokenizer can encode). Every error is
an `APIError`, answered as `{"error": {"message", "type", "param", "code"}}`.
"""

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class APIError(Exception):
    """An error answered to the client with an HTTP status and an OpenAI-style body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The JSON body of an error, as OpenAI sends it."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


INT64 = (-(2**63), 2**63 - 1)
"""The range of `seed`, as OpenAI documents it (a 64-bit signed integer)."""

MIN_TEMPERATURE = 0.01
"""Smallest sampling temperature above 0: dividing logits by less overflows them to inf."""

_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_content_type(content_type: str | None) -> None:
    """A 415 unless the body is declared JSON (`application/json`, `...+json`) or undeclared."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise APIError(
            415,
            f"the request body is declared {media_type}; send JSON with the "
            "header Content-Type: application/json",
            code="unsupported_media_type",
        )


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or a 400 saying why it is not (never a 500)."""
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")  # a byte order mark may be ignored
    except UnicodeDecodeError as err:
        raise bad_request(
            f"the request body is not UTF-8 ({err.reason} at byte {err.start}); send UTF-8 JSON",
            code="invalid_json",
        ) from None
    try:
        payload = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise bad_request(
            "the request body is nested too deeply to parse; send a flatter JSON object", code="invalid_json"
        ) from None
    except ValueError as err:  # JSONDecodeError, a NaN, an integer of over 4,300 digits
        reason = str(err).split(";")[0]
        raise bad_request(
            f"the request body is not valid JSON ({reason}); send a JSON object", code="invalid_json"
        ) from None
    if _ESCAPED_SURROGATE.search(text):
        _refuse_surrogates(payload)
    return payload


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _refuse_surrogates(payload: Any) -> None:
    """A 400 naming a string (or key) that holds a lone surrogate (unpaired \\ud800-\\udfff)."""
    pending: list[tuple[str, Any]] = [("", payload)]
    while pending:  # a loop, not recursion: the body may nest deeply
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                pending += [(f"{path}.{key}" if path else str(key), item), (path, str(key))]
        elif isinstance(value, list):
            pending += [(f"{path}.{index}", item) for index, item in enumerate(value)]
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise bad_request(
                f"{path or 'the request body'} holds a lone UTF-16 surrogate (an "
                "unpaired \\ud800-\\udfff escape); send valid Unicode text",
                path or None,
                "invalid_value",
            )


class OpenAIRequest(BaseModel):
    """Fields both generation endpoints share."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=INT64[0], le=INT64[1])
    stream: bool | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    return_token_ids: bool = False
    """Extension: also answer the prompt's and each choice's token ids."""
    # Accepted and ignored: they change nothing about what is generated.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    stream_options: dict[str, Any] | None = None

    def check_supported(self) -> None:
        """Refuse known fields the server cannot honour, naming each."""
        if self.temperature is not None and 0 < self.temperature < MIN_TEMPERATURE:
            raise bad_request(
                f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE} "
                f"(got {self.temperature}); use 0 for greedy decoding",
                "temperature",
                "invalid_value",
            )
        if self.stream:
            raise bad_request(
                "streaming is not supported by this server; set stream=false",
                "stream",
                "unsupported_parameter",
            )
        if (self.n or 1) > 1:
            raise bad_request(
                "only n=1 is supported; send one request per sample", "n", "unsupported_parameter"
            )
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                raise bad_request(
                    f"{name} is not supported by this server; leave it at 0", name, "unsupported_parameter"
                )
        if self.logit_bias:
            raise bad_request(
                "logit_bias is not supported by this server", "logit_bias", "unsupported_parameter"
            )

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise bad_request("at most 4 stop sequences are allowed", "stop")
        return tuple(s for s in stops if s)


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: str


_REPLAYED = {
    "tool_calls": "this server has no tools; send the exchange as plain text messages",
    "function_call": "this server has no tools; send the exchange as plain text messages",
    "refusal": "send the refusal's text as the message's content",
    "audio": "send text only",
    "annotations": "remove them",
}
"""Assistant-message fields a client sends back as it received them: accepted empty."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None
    audio: Any = None
    annotations: list[Any] | None = None

    def check_supported(self, index: int) -> None:
        """Refuse what the model would not see (a tool call, a refusal), naming it."""
        for name, fix in _REPLAYED.items():
            if getattr(self, name):
                raise bad_request(
                    f"{name} in messages.{index} is not supported: {fix}",
                    f"messages.{index}.{name}",
                    "unsupported_parameter",
                )

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ResponseFormat(BaseModel):
    type: Literal["text"]


class ChatRequest(OpenAIRequest):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0)
    response_format: ResponseFormat | None = None
    parallel_tool_calls: bool | None = None

    def check_supported(self) -> None:
        super().check_supported()
        for index, message in enumerate(self.messages):
            message.check_supported(index)


class CompletionRequest(OpenAIRequest):
    """POST /v1/completions (the legacy text endpoint; it is how clients score a text)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    logprobs: int | None = Field(None, ge=0)
    echo: bool | None = None
    best_of: int | None = Field(None, ge=1, le=1)
    suffix: str | None = None


def parse_request(model: type[BaseModel], payload: Any) -> Any:
    """Validate a JSON payload, turning the first problem into a 400 that names the field."""
    if not isinstance(payload, dict):
        raise bad_request("the request body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        param = _param_path(first["loc"])
        if first["type"] == "extra_forbidden":  # the field's own name, whatever its case
            param = ".".join(filter(None, [_param_path(first["loc"][:-1]), str(first["loc"][-1])]))
        if first["loc"][:1] == ("prompt",):
            raise bad_request(
                "prompt must be a string, a list of strings, a list of token ids "
                "or a list of lists of token ids",
                "prompt",
                "invalid_value",
            ) from None
        if first["type"] == "extra_forbidden":
            where = "request argument" if len(first["loc"]) == 1 else "field"
            raise bad_request(f"Unrecognized {where} supplied: {param}", param, "unknown_parameter") from None
        if first["type"] == "missing":
            raise bad_request(
                f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
            ) from None
        given = f" (got {_json_type(first['input'])})" if first["type"].endswith("_type") else ""
        raise bad_request(
            f"Invalid value for '{param}': {first['msg']}{given}", param, "invalid_value"
        ) from None


def _json_type(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words."""
    kinds = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }
    return kinds.get(type(value), type(value).__name__)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _param_path(loc: tuple[Any, ...]) -> str | None:
    """`messages.0.content` from a pydantic location, without its union-member tags."""
    parts = [
        str(part)
        for part in loc
        if isinstance(part, int)
        or (str(part).isidentifier() and part not in _TYPE_TAGS and not str(part)[0].isupper())
    ]
    return ".".join(parts) or None
