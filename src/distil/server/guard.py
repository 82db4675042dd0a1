"""What every request passes before it reaches an endpoint: the API key and the body limit.

A pure ASGI middleware, so a refused request costs nothing: a missing or wrong key is
answered 401 before the body is read, a body over the limit 413 before it is parsed. It
also counts the status of every answer under /v1 (`RequestStats.statuses`).
The key is compared in constant time and never logged or echoed.
"""

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from distil.server.protocol import APIError
from distil.server.stats import RequestStats

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
PROTECTED = ("/v1", "/admin")
"""Path prefixes that need the API key (when the server has one); /health never does."""


class Guard:
    """Bearer-key auth for PROTECTED paths and a request-body size limit for all."""

    def __init__(
        self, app: Callable, *, api_key: str | None, max_body_bytes: int, stats: RequestStats
    ) -> None:
        self.app, self.api_key, self.max_body_bytes, self.stats = app, api_key, max_body_bytes, stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"].startswith("/v1"):
            send = self._counting(send)
        if self.api_key is not None and scope["path"].startswith(PROTECTED):
            refusal = _refusal(_header(scope, b"authorization"), self.api_key)
            if refusal is not None:
                return await send_error(send, refusal)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await send_error(send, self._too_large())
        body = bytearray()
        more = scope["method"] in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                return await send_error(send, self._too_large())
            more = message.get("more_body", False)
        return await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self) -> APIError:
        return APIError(
            413,
            f"the request body is larger than this server's limit of "
            f"{self.max_body_bytes} bytes; send fewer or shorter prompts",
            code="request_too_large",
        )

    def _counting(self, send: Send) -> Send:
        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.stats.count_status(message["status"])
            await send(message)

        return counting_send


def _refusal(authorization: str | None, api_key: str) -> APIError | None:
    """None when the header carries the key; else the 401 to answer (which never echoes it)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return APIError(
            401,
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer KEY'.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), api_key.encode()):
        return APIError(
            401, "Incorrect API key provided.", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )
    return None


async def send_error(send: Send, error: APIError) -> None:
    """Answer an APIError directly over ASGI."""
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that first gives the body already read, then defers to the real one."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
