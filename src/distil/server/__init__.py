"""`distil serve`: an OpenAI-compatible server over a local model, and a fault-injection proxy.

    from distil.server import ServerSettings, create_app
    app = create_app(LocalTeacher.load("demo"), ServerSettings(served_name="demo"))

See docs/serve.md for the endpoints, the extension fields, limits and security;
`distil.server.testing` starts a server or a fault proxy on loopback for tests.
Needs the `serve` extra (fastapi, uvicorn, httpx). Names load on first use, so the fault
proxy (`python -m distil.server.faults`) starts without importing torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "API_KEY_ENV": "distil.server.settings",
    "ServeError": "distil.server.settings",
    "ServerSettings": "distil.server.settings",
    "ServerThread": "distil.server.run",
    "serve": "distil.server.run",
    "create_app": "distil.server.app",
    "FaultProxy": "distil.server.faults",
    "FaultRates": "distil.server.faults",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'distil.server' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
