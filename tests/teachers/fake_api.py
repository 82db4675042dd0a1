"""An in-process OpenAI-compatible endpoint for the API client's unit tests.

It answers through an HTTP transport mock (no socket, no server): the reply to a prompt is
the prompt reversed, one character per token, with made-up logprobs. Faults are scripted
per request number, so every test says exactly which request fails and how.
"""

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

try:  # the openai SDK is built on httpx2 in recent versions, on httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

Fault = Callable[[int, dict], Any]


class FakeApi:
    """Serves /v1/models, /v1/chat/completions and /v1/completions from memory."""

    def __init__(
        self,
        models: tuple[str, ...] = ("fake-teacher",),
        key: str | None = None,
        logprobs: bool = True,
        max_top: int = 20,
        echo: bool = True,
        fault: Fault | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.models, self.key, self.logprobs, self.max_top = models, key, logprobs, max_top
        self.echo, self.fault, self.delay_s = echo, fault, delay_s
        self.calls: list[tuple[float, str, dict]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def client(self) -> Any:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def generation_calls(self) -> list[dict]:
        return [body for _, path, body in self.calls if path.endswith("completions")]

    async def handle(self, request: Any) -> Any:
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        number = len(self.calls)
        self.calls.append((time.monotonic(), path, body))
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}})
        if self.fault is not None:
            injected = self.fault(number, body)
            if isinstance(injected, Exception):
                raise injected
            if injected is not None:
                return injected
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return self._answer(path, body)
        finally:
            self.in_flight -= 1

    def _answer(self, path: str, body: dict) -> Any:
        if path.endswith("/models"):
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in self.models
                    ],
                },
            )
        if body.get("model") not in self.models:
            return httpx.Response(404, json={"error": {"message": f"model {body.get('model')} not found"}})
        wants = body.get("logprobs") is not None and body.get("logprobs") is not False
        top = body.get("top_logprobs", 0) if path.endswith("chat/completions") else body.get("logprobs") or 0
        if wants and not self.logprobs:
            return httpx.Response(400, json={"error": {"message": "logprobs are not supported"}})
        if wants and top > self.max_top:
            return httpx.Response(400, json={"error": {"message": f"top_logprobs must be <= {self.max_top}"}})
        if path.endswith("chat/completions"):
            return httpx.Response(200, json=self._chat(body, wants, top))
        if body.get("echo") and not self.echo:
            return httpx.Response(400, json={"error": {"message": "echo is not supported"}})
        return httpx.Response(200, json=self._completion(body, wants, top))

    @staticmethod
    def reply(prompt: str, max_tokens: int) -> tuple[str, str]:
        text = prompt[::-1]
        return (text[:max_tokens], "length") if len(text) > max_tokens else (text, "stop")

    def _chat(self, body: dict, wants: bool, top: int) -> dict:
        prompt = body["messages"][-1]["content"]
        text, finish = self.reply(prompt, body.get("max_tokens", 16))
        logprobs = None
        if wants:
            logprobs = {
                "content": [
                    {
                        "token": ch,
                        "logprob": -0.1 * (i + 1),
                        "bytes": list(ch.encode()),
                        "top_logprobs": [
                            {"token": t, "logprob": v, "bytes": None} for t, v in _alternatives(ch, i, top)
                        ],
                    }
                    for i, ch in enumerate(text)
                ]
            }
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "logprobs": logprobs,
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt),
                "completion_tokens": len(text),
                "total_tokens": len(prompt) + len(text),
            },
        }

    def _completion(self, body: dict, wants: bool, top: int) -> dict:
        prompt = body["prompt"]
        text, finish = self.reply(prompt, body.get("max_tokens", 16))
        shown = prompt + text if body.get("echo") else text
        logprobs = None
        if wants:
            logprobs = {
                "tokens": list(shown),
                "token_logprobs": [
                    None if body.get("echo") and i == 0 else -0.1 * (i + 1) for i in range(len(shown))
                ],
                "top_logprobs": [
                    None if body.get("echo") and i == 0 else dict(_alternatives(ch, i, top))
                    for i, ch in enumerate(shown)
                ],
                "text_offset": list(range(len(shown))),
            }
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": finish, "text": shown, "logprobs": logprobs}],
            "usage": {
                "prompt_tokens": len(prompt),
                "completion_tokens": len(text),
                "total_tokens": len(prompt) + len(text),
            },
        }


def _alternatives(token: str, position: int, k: int) -> list[tuple[str, float]]:
    if k == 0:
        return []
    others = [c for c in "xyzwvutsrqponmlkjihgfedcba0123456789" if c != token]
    return [(token, -0.1 * (position + 1))] + [(c, -1.0 - j) for j, c in enumerate(others)][: max(k - 1, 0)]


def status(code: int, message: str = "injected", headers: dict | None = None) -> Any:
    return httpx.Response(code, json={"error": {"message": message}}, headers=headers or {})


def malformed() -> Any:
    return httpx.Response(
        200, content=b'{"id": "x", "choices": [', headers={"content-type": "application/json"}
    )


def without_logprobs(body: dict) -> Any:
    """A well-formed completions answer that carries no logprobs (a server that ignores echo)."""
    return httpx.Response(
        200,
        json={
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length", "text": "x", "logprobs": None}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
        },
    )


def dropped(request_body: dict | None = None) -> Exception:
    return httpx.RemoteProtocolError("Server disconnected without sending a response.")


def timed_out() -> Exception:
    return httpx.ReadTimeout("The read operation timed out")
