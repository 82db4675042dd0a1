"""A fault-injection proxy for loopback tests: what a flaky provider does, at seeded rates.

    with FaultProxy(server.url, FaultRates(rate_limit=0.1, drop=0.05), seed=0) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=..., timeout=1.0)
        ...
        proxy.stats()     # {"received": ..., "forwarded": ..., "faults": {"drop": 3, ...}}

    python -m distil.server.faults --upstream http://127.0.0.1:8000 --port 8100 --rate-limit 0.1

It forwards HTTP/1.1 requests to a real upstream server. Each POST to a generation endpoint
draws its fault, in arrival order, from a generator seeded with `seed`:

    rate_limit    429 with Retry-After (and retry-after-ms); not forwarded
    server_error  500 with an OpenAI-style error body; not forwarded
    drop          the connection is closed without an answer; not forwarded
    timeout       forwarded (the upstream does the work), the answer held back `delay_s`
    malformed     forwarded, answered 200 with the upstream's JSON cut in half

So the first three cost the upstream nothing, while `timeout` and `malformed` are paid
requests whose answers the client never gets. `GET /_proxy/stats` (never faulted) and
`FaultProxy.stats()` count what happened.
"""

import argparse
import asyncio
import contextlib
import http
import json
import math
import random
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from types import TracebackType
from typing import Any

import httpx

from distil.errors import DistilError
from distil.server.run import bind, url_of
from distil.server.settings import ServeError

FAULT_PATHS = ("/v1/chat/completions", "/v1/completions")
STATS_PATH = "/_proxy/stats"
# fmt: off
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host",
               "content-length", "content-encoding", "proxy-authorization", "proxy-connection"}
# fmt: on


@dataclass(frozen=True)
class FaultRates:
    """Probability of each fault per generation request; they sum to at most 1."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    timeout: float = 0.0
    malformed: float = 0.0
    drop: float = 0.0

    def __post_init__(self) -> None:
        rates = asdict(self)
        bad = [name for name, rate in rates.items() if not 0 <= rate <= 1]
        if bad or sum(rates.values()) > 1 + 1e-9:
            raise ServeError(
                f"fault rates must each lie in [0, 1] and sum to at most 1 (got {rates}); lower them"
            )


class FaultSchedule:
    """The fault of each request in arrival order: a pure function of the rates and the seed."""

    def __init__(self, rates: FaultRates, seed: int) -> None:
        self._thresholds = []
        total = 0.0
        for name, rate in asdict(rates).items():
            total += rate
            self._thresholds.append((total, name))
        self._random = random.Random(seed)

    def next(self) -> str | None:
        draw = self._random.random()
        return next((name for total, name in self._thresholds if draw < total), None)


@dataclass
class _Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name), None)

    @property
    def keep_alive(self) -> bool:
        return (self.header("connection") or "").lower() != "close"


class FaultProxy:
    """The proxy; `start()` runs it on a background thread, `run()` in the foreground."""

    def __init__(
        self,
        upstream: str,
        rates: FaultRates,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        delay_s: float = 5.0,
        retry_after_s: float = 0.05,
        paths: tuple[str, ...] = FAULT_PATHS,
    ) -> None:
        self.upstream, self.rates, self.seed = upstream.rstrip("/"), rates, seed
        self.delay_s, self.retry_after_s, self.paths = delay_s, retry_after_s, paths
        self._schedule = FaultSchedule(rates, seed)
        self._sock = bind(host, port)
        self.url = url_of(self._sock)
        self.base_url = self.url + "/v1"
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    def stats(self) -> dict[str, Any]:
        """received, forwarded (sent upstream), upstream_answered, relayed (passed on
        untouched), and `faults` by kind."""
        with self._lock:
            counts = dict(self._counts)
        faults = {f.name: counts.pop(f"fault:{f.name}", 0) for f in fields(FaultRates)}
        return {
            "received": 0,
            "forwarded": 0,
            "upstream_answered": 0,
            "relayed": 0,
            **counts,
            "faults": faults,
        }

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def start(self, timeout: float = 10.0) -> "FaultProxy":
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="distil-fault-proxy", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ServeError(f"the fault proxy on {self.url} did not start within {timeout:.0f} s")
        return self

    def run(self) -> None:
        """Serve in the foreground until Ctrl-C."""
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self._serve())

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        connections: set[asyncio.Task] = set()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await self._connection(reader, writer, client)
            except asyncio.CancelledError:
                pass  # shutting down; asyncio 3.11 logs a cancelled connection task as an error
            finally:
                connections.discard(task)
                writer.close()

        async with httpx.AsyncClient(base_url=self.upstream, timeout=600.0) as client:
            server = await asyncio.start_server(on_connection, sock=self._sock)
            self._ready.set()
            await self._stopping.wait()
            server.close()
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: httpx.AsyncClient
    ) -> None:
        while True:
            try:
                request = await _read_request(reader)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
                return
            if request is None:
                return
            if not await self._answer(request, writer, client) or not request.keep_alive:
                return

    async def _answer(
        self, request: _Request, writer: asyncio.StreamWriter, client: httpx.AsyncClient
    ) -> bool:
        """Answer one request; False when the connection must close."""
        path = request.target.split("?", 1)[0]
        if request.method == "GET" and path == STATS_PATH:
            return await _write(
                writer,
                200,
                [("content-type", "application/json")],
                json.dumps(self.stats()).encode(),
                request.keep_alive,
            )
        self._count("received")
        fault = self._schedule.next() if request.method == "POST" and path in self.paths else None
        if fault is not None:
            self._count(f"fault:{fault}")
        if fault == "drop":
            writer.transport.abort()
            return False
        if fault in ("rate_limit", "server_error"):
            status, headers, body = self._refusal(fault)
            return await _write(writer, status, headers, body, request.keep_alive)
        status, headers, body = await self._forward(request, client)
        if fault == "timeout":
            await asyncio.sleep(self.delay_s)
        elif fault == "malformed" and status == 200:
            body = body[: len(body) // 2]
        else:
            self._count("relayed")
        return await _write(writer, status, headers, body, request.keep_alive)

    def _refusal(self, fault: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if fault == "rate_limit":
            body = {
                "error": {
                    "message": "Rate limit reached (injected by the fault proxy); retry "
                    f"after {self.retry_after_s} s",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            }
            headers = [
                ("retry-after", str(max(1, math.ceil(self.retry_after_s)))),
                ("retry-after-ms", str(round(self.retry_after_s * 1000))),
            ]
            return 429, [("content-type", "application/json"), *headers], json.dumps(body).encode()
        body = {
            "error": {
                "message": "The server had an error while processing your request "
                "(injected by the fault proxy).",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        return 500, [("content-type", "application/json")], json.dumps(body).encode()

    async def _forward(
        self, request: _Request, client: httpx.AsyncClient
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
        self._count("forwarded")
        try:
            answer = await client.request(
                request.method, request.target, headers=headers, content=request.body
            )
        except httpx.HTTPError as err:
            body = {
                "error": {
                    "message": f"the fault proxy cannot reach {self.upstream}: {err}",
                    "type": "server_error",
                    "param": None,
                    "code": "bad_gateway",
                }
            }
            return 502, [("content-type", "application/json")], json.dumps(body).encode()
        self._count("upstream_answered")
        kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP]
        return answer.status_code, kept, answer.content


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One HTTP/1.1 request off the stream; None at a clean end of the connection."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head.strip():
        return None
    request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers = [
        (name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in header_lines if line)
    ]
    request = _Request(method, target, headers, b"")
    if (request.header("transfer-encoding") or "").lower() == "chunked":
        request.body = await _read_chunked(reader)
    else:
        request.body = await reader.readexactly(int(request.header("content-length") or 0))
    return request


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
        pass
    return bytes(body)


async def _write(
    writer: asyncio.StreamWriter, status: int, headers: list[tuple[str, str]], body: bytes, keep_alive: bool
) -> bool:
    """Send one response; False when the client has gone."""
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        *(f"{k}: {v}" for k, v in headers),
        f"content-length: {len(body)}",
        f"connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
    except ConnectionError:
        return False
    return not writer.is_closing()


def main(argv: list[str] | None = None) -> None:
    """`python -m distil.server.faults`: run the proxy in the foreground."""
    parser = argparse.ArgumentParser(
        prog="python -m distil.server.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--upstream", required=True, help="URL of the real server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay", type=float, default=5.0, help="seconds a `timeout` is held")
    parser.add_argument("--retry-after", type=float, default=0.05, help="seconds, sent with 429")
    for fault in fields(FaultRates):
        parser.add_argument(
            f"--{fault.name.replace('_', '-')}",
            type=float,
            default=0.0,
            metavar="RATE",
            help=f"probability of a {fault.name} fault",
        )
    args = parser.parse_args(argv)
    try:
        rates = FaultRates(**{f.name: getattr(args, f.name) for f in fields(FaultRates)})
        proxy = FaultProxy(
            args.upstream,
            rates,
            seed=args.seed,
            host=args.host,
            port=args.port,
            delay_s=args.delay,
            retry_after_s=args.retry_after,
        )
    except DistilError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    print(
        f"fault proxy at {proxy.url} -> {proxy.upstream} ({asdict(rates)}, seed {args.seed}); Ctrl-C stops",
        flush=True,
    )
    proxy.run()


if __name__ == "__main__":
    main()
