"""Start the server: `distil serve` in the foreground, or a background thread for tests.

    serve("demo", ServerSettings(served_name="demo"), StartSettings(port=8000))

    with ServerThread(create_app(teacher, settings)) as server:   # port 0: any free port
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")

The listening socket is bound before uvicorn starts, so the port is known (and a taken port
is a clear error) before the first request, and port 0 picks a free one without a race.
A connection whose request headers do not arrive within `header_timeout_s` is closed, so
slow clients cannot hold connections open. `log_requests` logs one line per request with its
path but not its query string, where a client may have put a key.
"""

import asyncio
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from distil.progress import quiet_libraries
from distil.server.settings import (
    HEADER_TIMEOUT_S,
    ServeError,
    ServerSettings,
    StartSettings,
    api_key_from_env,
    check_exposure,
)

KEEP_ALIVE_S = 5
"""How long an idle keep-alive connection stays open between requests."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or a ServeError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        raise ServeError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); pick another --port or --host"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """http://HOST:PORT of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers are not all in
    within `header_timeout_s` of it opening or of the request's first bytes (uvicorn itself
    times out only idle keep-alive connections: half a request held one open forever)."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in (or the request failed)
            self._stop_header_timer()
        elif self._header_timer is None:  # a request has started; its headers are incomplete
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class PathOnly(logging.Filter):
    """Cuts the query string off the path in uvicorn's access lines (`?api_key=...`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:  # client, method, path, ...
            client, method, path, version, status = record.args
            record.args = (client, method, str(path).split("?", 1)[0], version, status)
        return True


def _uvicorn_server(app: Callable, log_requests: bool, header_timeout_s: float) -> uvicorn.Server:
    protocol = functools.partial(HeaderTimeoutH11, header_timeout_s=header_timeout_s)
    config = uvicorn.Config(
        app,
        http=protocol,
        log_level="info" if log_requests else "warning",
        access_log=log_requests,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_S,
        lifespan="on",
    )
    access = logging.getLogger("uvicorn.access")  # set up by uvicorn.Config just above
    if not any(isinstance(f, PathOnly) for f in access.filters):
        access.addFilter(PathOnly())
    return uvicorn.Server(config)


def serve(
    model: str,
    settings: ServerSettings,
    start: StartSettings | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Load `model` and serve it until Ctrl-C (the key comes from DISTIL_SERVE_API_KEY)."""
    start = start or StartSettings()
    api_key = api_key_from_env()
    check_exposure(start.host, api_key)  # before anything slow: a refusal should be instant
    from distil.server.watermark import describe, watermark_key

    marking = watermark_key(settings)  # a missing key variable is refused now, too
    quiet_libraries()
    from distil.server.app import create_app
    from distil.teachers import LocalTeacher

    sock = bind(start.host, start.port)  # a taken port fails now, not after the model has loaded
    try:
        teacher = LocalTeacher.load(
            model, dtype=start.dtype, device=start.device, batch_size=settings.max_batch_size
        )
        app = create_app(teacher, settings, api_key, marking)
        echo(
            f"serving {model} as '{settings.served_name}' at {url_of(sock)}/v1 on "
            f"{teacher.model.device} (API key {'required' if api_key else 'off: loopback only'}; "
            f"{describe(settings)}); Ctrl-C stops"
        )
        _uvicorn_server(app, start.log_requests, settings.header_timeout_s).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # during loading, or re-raised by uvicorn after a clean shutdown
    finally:
        sock.close()
    echo("server stopped")


class ServerThread:
    """An ASGI app served by uvicorn on a background thread (for tests and notebooks)."""

    def __init__(
        self,
        app: Callable,
        host: str = "127.0.0.1",
        port: int = 0,
        log_requests: bool = False,
        header_timeout_s: float = HEADER_TIMEOUT_S,
    ) -> None:
        self.app, self.host, self.port, self.log_requests = app, host, port, log_requests
        self.header_timeout_s = header_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """http://HOST:PORT"""
        if self._url is None:
            raise RuntimeError("the server is not started; call start() first")
        return self._url

    @property
    def base_url(self) -> str:
        """The OpenAI client's base_url: http://HOST:PORT/v1"""
        return self.url + "/v1"

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self._sock = bind(self.host, self.port)
        self._url = url_of(self._sock)
        self._server = _uvicorn_server(self.app, self.log_requests, self.header_timeout_s)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="distil-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"the server on {self.url} did not start within {timeout:.0f} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down gracefully (requests in flight finish) and release the port."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = None

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
