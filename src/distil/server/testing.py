"""Start a server or a fault proxy on loopback from tests, wait until ready, always stop.

    from distil.server.testing import running_server, serve_process, running_fault_proxy

    with running_server("tiny-teacher", api_key="k", admin=True) as server:    # in-process
        client = openai.OpenAI(base_url=server.base_url, api_key="k")
        server.stats()["completed_by_key"]

    with serve_process("tiny-teacher", "--admin", api_key="k") as server:      # `distil serve`
        ...                                                                    # child process
        server.kill()                                                          # SIGKILL it

    with running_fault_proxy(server.url, rate_limit=0.2, drop=0.1, seed=0) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, ...)
        proxy.stats()["faults"]

Every server listens on 127.0.0.1 on a free port (port 0, bound before start: no race).
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from distil.server.app import create_app
from distil.server.faults import FaultProxy, FaultRates
from distil.server.run import ServerThread
from distil.server.settings import API_KEY_ENV, ServeError, ServerSettings
from distil.server.watermark import WatermarkKey
from distil.teachers import LocalTeacher


def wait_until_ready(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll GET {url}/health until it answers 200 (or `process` dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServeError(f"the server process exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise ServeError(f"{url} was not ready within {timeout:.0f} s")


def get_json(url: str, api_key: str | None = None) -> Any:
    """GET a JSON document (e.g. /admin/stats), with the API key if given."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
        return json.load(answer)


@dataclass
class RunningServer:
    """A server running in this process on a background thread."""

    thread: ServerThread
    api_key: str | None

    @property
    def url(self) -> str:
        return self.thread.url

    @property
    def base_url(self) -> str:
        return self.thread.base_url

    @property
    def app(self) -> Any:
        return self.thread.app

    def stats(self) -> dict[str, Any]:
        """The /admin/stats counters, read directly (served over HTTP too with `admin=True`)."""
        return self.app.state.stats.snapshot(self.app.state.batcher.stats)


@contextmanager
def running_server(
    model: str | LocalTeacher = "tiny-teacher",
    *,
    api_key: str | None = None,
    log_requests: bool = False,
    watermark_key: WatermarkKey | None = None,
    **settings: Any,
) -> Iterator[RunningServer]:
    """Serve `model` (a name, or an already loaded teacher: faster) until the block ends.

    `settings` are `ServerSettings` fields; `served_name` defaults to the model's name and
    `admin` to True (per-key counters on).
    """
    teacher = model if isinstance(model, LocalTeacher) else LocalTeacher.load(model, device="cpu")
    settings.setdefault("served_name", teacher.name)
    settings.setdefault("admin", True)
    server_settings = ServerSettings(**settings)
    app = create_app(teacher, server_settings, api_key, watermark_key)
    with ServerThread(
        app, log_requests=log_requests, header_timeout_s=server_settings.header_timeout_s
    ) as thread:
        yield RunningServer(thread, api_key)


@dataclass
class ServeProcess:
    """`distil serve` running as a child process."""

    process: subprocess.Popen
    url: str
    api_key: str | None
    _lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return "".join(self._lines)

    def stats(self) -> dict[str, Any]:
        """GET /admin/stats (start the server with `--admin`)."""
        return get_json(f"{self.url}/admin/stats", self.api_key)

    def stop(self, timeout: float = 15.0) -> int:
        """Ctrl-C (SIGINT), then SIGKILL if it has not exited within `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@contextmanager
def serve_process(
    model: str = "tiny-teacher",
    *args: str,
    api_key: str | None = None,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> Iterator[ServeProcess]:
    """Run `distil serve MODEL --port 0 ARGS...` with the key in its environment; stop it at
    the end of the block."""
    child_env = {**os.environ, **(env or {})}
    child_env.pop(API_KEY_ENV, None)
    if api_key is not None:
        child_env[API_KEY_ENV] = api_key
    command = [sys.executable, "-m", "distil.cli", "serve", model, "--port", "0", *args]
    process = subprocess.Popen(
        command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    url_found = threading.Event()
    threading.Thread(target=_collect, args=(process, lines, url_found), daemon=True).start()
    server = ServeProcess(process, "", api_key, lines)
    try:
        if not url_found.wait(timeout):
            raise ServeError(f"distil serve printed no address within {timeout:.0f} s:\n" + server.output())
        match = re.search(r"at (http://\S+)/v1", server.output())
        if match is None:
            raise ServeError(f"distil serve did not start:\n{server.output()}")
        server.url = match.group(1)
        wait_until_ready(server.url, timeout, process)
        yield server
    finally:
        server.stop()


def _collect(process: subprocess.Popen, lines: list[str], url_found: threading.Event) -> None:
    """Read the child's output to the end, flagging the startup line (or its exit)."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if " at http://" in line:
            url_found.set()
    url_found.set()


@contextmanager
def running_fault_proxy(
    upstream: str, *, seed: int = 0, delay_s: float = 2.0, retry_after_s: float = 0.05, **rates: float
) -> Iterator[FaultProxy]:
    """A `FaultProxy` in front of `upstream` with `FaultRates(**rates)`, until the block ends."""
    with FaultProxy(
        upstream, FaultRates(**rates), seed=seed, delay_s=delay_s, retry_after_s=retry_after_s
    ) as proxy:
        yield proxy
