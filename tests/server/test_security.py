"""The key as operators store it, slow clients, and what the request log may show."""

import socket

import httpx
import openai
import pytest

from distil.server.app import create_app
from distil.server.settings import API_KEY_ENV, ServeError, ServerSettings, api_key_from_env
from distil.server.testing import running_server
from tests.server.conftest import API_KEY, MODEL, capturing_server_log


@pytest.mark.parametrize("stored", [API_KEY + "\n", f"  {API_KEY}\r\n", f"\t{API_KEY} "])
def test_a_key_read_from_a_secret_file_lets_its_clients_in(teacher, monkeypatch, stored):
    monkeypatch.setenv(API_KEY_ENV, stored)
    assert api_key_from_env() == API_KEY
    with running_server(teacher, api_key=stored) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
        assert [m.id for m in client.models.list().data] == [MODEL]


@pytest.mark.parametrize("stored", ["", "\n", "   "])
def test_an_empty_key_is_refused_at_start(teacher, monkeypatch, stored):
    monkeypatch.setenv(API_KEY_ENV, stored)
    with pytest.raises(ServeError, match=f"{API_KEY_ENV}.* empty or only whitespace"):
        api_key_from_env()
    with pytest.raises(ServeError, match="empty or only whitespace"):
        create_app(teacher, ServerSettings(served_name=MODEL), api_key=stored)


def test_no_key_in_the_environment_is_no_key(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert api_key_from_env() is None


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (the socket's own timeout bounds the wait)."""
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (b"", b""),  # connects, sends nothing
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", b""),  # half the headers
        (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /health HTTP/1.1\r\n"),  # then half another
    ],
)
def test_a_client_that_never_finishes_its_headers_is_disconnected(teacher, first, then):
    with running_server(teacher, header_timeout_s=0.5) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(first)
            if then:
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # the first one is answered
                sock.sendall(then)
            assert _closed_by_server(sock)


def test_the_request_log_shows_paths_without_query_strings(teacher, caplog):
    secret = "sk-in-the-query-3f9a"
    with running_server(teacher, api_key=API_KEY, log_requests=True) as server, capturing_server_log(caplog):
        auth = {"Authorization": f"Bearer {API_KEY}"}
        assert httpx.get(f"{server.url}/v1/models?api_key={secret}", headers=auth).status_code == 200
        assert httpx.get(f"{server.url}/v1/models?key={secret}&x=1").status_code == 401
    assert '"GET /v1/models HTTP/1.1" 200' in caplog.text
    assert '"GET /v1/models HTTP/1.1" 401' in caplog.text
    assert secret not in caplog.text and API_KEY not in caplog.text
