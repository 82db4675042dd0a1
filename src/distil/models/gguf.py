"""A GGUF file as a teacher or student: checked, converted once to a plain float model, loaded.

    path = gguf_path("SmolLM2-135M-Instruct.Q4_1.gguf")    # or a packaged name
    model, tokenizer, sha256 = load_gguf(path, torch.float32)

transformers' own GGUF loader reads the file (`from_pretrained(folder, gguf_file=...)`),
dequantising every weight to float32, and builds the tokenizer, chat template included, from
the same file. That takes about 25 s for a 135M-parameter model on 2 cores, so the result is
saved once as a safetensors folder in distil's cache, `DISTIL_CACHE/gguf/<sha256>/`, written
atomically; later loads read that folder (about 1 s). A plain folder is also what training,
save_pretrained and export expect.

The file's sha256 is the model's identity: it names the converted copy, is the loaded
model's `revision` (`sha256:<hex>`, so it reaches provenance and the signal store's
fingerprint) and enters each stage's inputs (`teacher.model_sha256`), so a changed file
redoes what depends on it. It is cached by path, size and mtime (`DISTIL_CACHE/sha256/`):
a large file is read once.
"""

import hashlib
import json
from contextlib import suppress
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from distil.errors import ModelError
from distil.fsutil import atomic_directory, atomic_write_json, ensure_writable_dir, file_lock
from distil.models.cachedir import CACHE_ENV, cache_dir
from distil.models.packaged import PACKAGED_MODELS, file_digest, is_packaged, locate, packaged_gguf

MANIFEST = "distil-gguf.json"
"""What a converted folder was made from, and by which transformers (a new one converts again)."""


def gguf_path(model: str) -> Path | None:
    """The GGUF file `model` names (a `.gguf` path, or a packaged model, fetched if need be);
    None for any other model."""
    if is_packaged(model):
        return packaged_gguf(model)
    if not model.lower().endswith(".gguf"):
        return None
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(
            f"GGUF file not found: {model}; pass the path of a .gguf file, or a "
            f"packaged model ({', '.join(PACKAGED_MODELS)})"
        )
    return path


def model_sha256(model: str) -> str | None:
    """The sha256 of the GGUF file `model` names (for a packaged model not fetched yet, the
    pinned one it will be checked against); None for other models and missing files."""
    if is_packaged(model):
        found = locate(model)
        return file_sha256(found) if found else PACKAGED_MODELS[model].gguf_sha256
    path = Path(model).expanduser()
    return file_sha256(path) if model.lower().endswith(".gguf") and path.is_file() else None


def model_revision(model: str, revision: str | None) -> str | None:
    """What pins `model`'s weights: `sha256:<hex>` of its GGUF file, else `revision`."""
    sha = model_sha256(model)
    return f"sha256:{sha}" if sha else revision


def file_sha256(path: Path) -> str:
    """The file's sha256, read once per path, size and mtime (the answer is kept in the cache)."""
    stat, resolved = path.stat(), str(path.resolve())
    key = {"path": resolved, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record_path = cache_dir() / "sha256" / f"{hashlib.sha256(resolved.encode()).hexdigest()[:32]}.json"
    with suppress(OSError, ValueError):
        record = json.loads(record_path.read_text())
        if isinstance(record, dict) and {k: record.get(k) for k in key} == key:
            return str(record["sha256"])
    digest = file_digest(path)
    with suppress(OSError):  # a cache that cannot be written only costs reading the file again
        atomic_write_json(record_path, {**key, "sha256": digest})
    return digest


def load_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, Any, str]:
    """The model (in `dtype`) and tokenizer of a GGUF file, and the file's sha256."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, sha = converted(path)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    return model, AutoTokenizer.from_pretrained(folder), sha


def converted(path: Path) -> tuple[Path, str]:
    """The cached float32 safetensors folder of a GGUF file (made now if missing), and the
    file's sha256."""
    sha = file_sha256(path)
    folder = (
        ensure_writable_dir(
            cache_dir(), "distil's cache folder", f"set {CACHE_ENV} to a folder you can write"
        )
        / "gguf"
        / sha
    )
    with file_lock(folder.with_name(f"{sha}.lock")):
        if not _is_current(folder):
            check_gguf(path)
            _convert(path, folder, sha)
    return folder, sha


def supported() -> tuple[list[str], list[str]]:
    """The GGUF architectures transformers loads, and the tensor types it dequantises (those
    of the `gguf` package it reads them with)."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}  # sections, not models
    with suppress(ImportError, AttributeError):  # transformers 5's second GGUF path
        from transformers.integrations.gguf import GGUF_ARCHS

        names |= set(GGUF_ARCHS)
    types = [
        kind.name
        for kind in gguf.GGMLQuantizationType
        if kind.name in ("F32", "F16") or isinstance(getattr(gguf.quants, kind.name, None), type)
    ]
    return sorted(names), types


def check_gguf(path: Path) -> None:
    """Refuse a file transformers cannot load, in one line naming what it supports."""
    try:
        import gguf
    except ImportError:
        raise ModelError("reading a GGUF file needs the gguf package: pip install 'distil[gguf]'") from None
    try:
        reader = gguf.GGUFReader(path)
    except Exception as err:  # a damaged or cut-off file fails in many ways
        raise ModelError(
            f"{path} is not a readable GGUF file ({_first_line(err)}); check "
            "the file, or copy or download it again"
        ) from None
    field = reader.get_field("general.architecture")
    architecture = str(field.contents()) if field is not None else "unnamed"
    architectures, types = supported()
    if _plain(architecture) not in {_plain(name) for name in architectures}:
        raise ModelError(
            f"{path} holds a {architecture!r} model, which transformers cannot load "
            f"from GGUF; supported architectures: {', '.join(architectures)}"
        )
    unknown = sorted({tensor.tensor_type.name for tensor in reader.tensors} - set(types))
    if unknown:
        raise ModelError(
            f"{path} stores tensors as {', '.join(unknown)}, which transformers "
            f"cannot dequantise; supported types: {', '.join(types)}"
        )


def _plain(architecture: str) -> str:
    """llama.cpp and transformers spell some names apart (qwen2moe / qwen2_moe, gpt-oss)."""
    return architecture.lower().replace("-", "").replace("_", "")


def _is_current(folder: Path) -> bool:
    import transformers

    with suppress(OSError, ValueError):
        made = json.loads((folder / MANIFEST).read_text())
        return isinstance(made, dict) and made.get("transformers") == transformers.__version__
    return False


def _convert(path: Path, folder: Path, sha: str) -> None:
    """Dequantise `path` through transformers and save it as a safetensors folder, atomically."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distil.progress import console

    console.print(f"converting {path.name} to a float32 model, once (kept in {folder})")
    where, options = str(path.resolve().parent), {"gguf_file": str(path.resolve())}
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **options)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **_dequantised(), **options)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # tokenizers' Rust panics are BaseExceptions
        raise ModelError(
            f"transformers cannot load {path} ({_first_line(err)}); convert the "
            "model to a Hugging Face folder another way, or pick another file"
        ) from None
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _drop_tokens_past(tmp / "tokenizer.json", model.get_output_embeddings().weight.shape[0])
        atomic_write_json(
            tmp / MANIFEST,
            {
                "source": str(path.resolve()),
                "sha256": sha,
                "transformers": transformers.__version__,
                "gguf": version("gguf"),
            },
        )


def _drop_tokens_past(path: Path, rows: int) -> None:
    """Drop added tokens the model has no row for. transformers builds a byte-level GGUF
    vocabulary through GPT-2's tokenizer, which adds its `<|endoftext|>` when the file lacks
    it (files without bos/unk tokens, such as distil's own exports): one id past the head."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    added = spec.get("added_tokens") or []
    kept = [token for token in added if token["id"] < rows]
    if len(kept) < len(added):
        atomic_write_json(path, {**spec, "added_tokens": kept})


def _dequantised() -> dict[str, Any]:
    """transformers 5 keeps GGUF weights packed when it has kernels for them; ask for floats."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantise
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
