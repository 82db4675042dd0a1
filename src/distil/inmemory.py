"""Objects handed over in Python (a model, a dataset) under names a recipe can hold.

    held = hold_model(model, tokenizer)     # held.name == "memory:model-3f2a9c0d1e4b5a67"
    recipe["teacher"]["model"] = held.name  # every stage opens it as it opens a folder

A recipe names its models and data by path, and every stage, fingerprint and checkpoint
reads those names. An object in memory has no path, so it is named by what it holds:

- a model by a hash of its weights (every tensor's name, dtype, shape and bytes), its class,
  its configuration and its tokenizer (vocabulary, merges, chat template): the same weights
  give the same name in any process, changed weights another one;
- a `datasets.Dataset` by datasets' own fingerprint (`Dataset._fingerprint`: its content
  for one made in memory, its files for one loaded, each transform added on);
- a `datasets.IterableDataset`, which has none, by a hash of its features and its first
  `STREAM_ROWS_HASHED` rows: a stream that changes only further on keeps its name.

A changed name redoes the stages that read it and refuses (or, with restart, sets aside) the
checkpoints of the old one, as a changed path does. The names live only in the process that
made them and only while something holds the returned `Held` (the registry keeps weak
references): a recipe naming one in another process, or after it is gone, is refused in one
line. `distil.load_model` and `distil.data` look names up here.
"""

import hashlib
import json
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from distil.errors import DataError, ModelError

PREFIX = "memory:"
STREAM_ROWS_HASHED = 1000
"""Rows of an IterableDataset read to name it (it has no fingerprint of its own)."""

_held: "weakref.WeakValueDictionary[str, Held]" = weakref.WeakValueDictionary()


@dataclass(eq=False)
class Held:
    """An object under its name; the name lives as long as this does."""

    name: str
    value: Any
    tokenizer: Any = None
    """A model's tokenizer."""
    description: dict[str, Any] = field(default_factory=dict)
    """What it is, in words and figures, for the run folder (class, size, fingerprint)."""


def is_memory_name(name: object) -> bool:
    """Whether `name` names an object held in memory (not a path, hub id or built-in)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def hold_model(model: Any, tokenizer: Any) -> Held:
    """`model` (a transformers PreTrainedModel) and its tokenizer, under a name hashed from
    both (see the module docstring)."""
    if tokenizer is None:
        raise ModelError(
            f"a {type(model).__name__} passed in memory needs its tokenizer; pass "
            "tokenizer=... (or a folder or hub id instead of the model)"
        )
    digest = hashlib.sha256()
    digest.update(type(model).__name__.encode())
    digest.update(_config_text(model).encode())
    digest.update(_tokenizer_text(tokenizer).encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(_tensor_bytes(tensor))
    name = f"{PREFIX}model-{digest.hexdigest()[:16]}"
    described = {
        "kind": "model",
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(getattr(model, "dtype", "")).removeprefix("torch."),
        "name_or_path": getattr(model, "name_or_path", None) or None,
    }
    return _hold(Held(name, model, tokenizer, described))


def hold_dataset(dataset: Any) -> Held:
    """A `datasets.Dataset` or `IterableDataset` under a name from its fingerprint (module
    docstring)."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        name = f"{PREFIX}dataset-{dataset._fingerprint}"
        described = {
            "kind": "dataset",
            "rows": dataset.num_rows,
            "fingerprint": dataset._fingerprint,
            "columns": dataset.column_names,
        }
    elif isinstance(dataset, datasets.IterableDataset):
        digest = _stream_digest(dataset)
        name = f"{PREFIX}stream-{digest}"
        described = {
            "kind": "stream",
            "rows": None,
            "fingerprint": digest,
            "fingerprint_of": f"features and first {STREAM_ROWS_HASHED} rows",
        }
    else:
        raise DataError(
            f"a {type(dataset).__name__} is not a dataset distil reads; pass a "
            "datasets.Dataset or IterableDataset, a list of row dicts, or a path"
        )
    return _hold(Held(name, dataset, None, described))


def held(name: str) -> Held:
    """The object held under `name`; ModelError/DataError when nothing holds it (any more)."""
    found = _held.get(name)
    if found is None:
        error = DataError if name.startswith((f"{PREFIX}dataset-", f"{PREFIX}stream-")) else ModelError
        raise error(
            f"{name} names an object passed in memory to distil.Distiller, which only "
            "that Python process holds, and only while the Distiller lives; pass a "
            "path (a model folder, a data file) to use it from the command line or "
            "another process"
        )
    return found


def _hold(item: Held) -> Held:
    """The registered item of that name: one object per name, shared by all who hold it."""
    existing = _held.get(item.name)
    if existing is not None:
        return existing
    _held[item.name] = item
    return item


def _tensor_bytes(tensor: Any) -> memoryview:
    """A tensor's bytes (any dtype, any device) for hashing."""
    flat = tensor.detach().contiguous().reshape(-1).cpu()
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def _config_text(model: Any) -> str:
    config = getattr(model, "config", None)
    if config is None:
        return ""
    values = config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        values.pop(volatile, None)
    return json.dumps(values, sort_keys=True, default=str)


def _tokenizer_text(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = (
        backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    )
    return vocabulary + str(getattr(tokenizer, "chat_template", None))


def _stream_digest(dataset: Any) -> str:
    digest = hashlib.sha256(str(dataset.features).encode())
    for number, row in enumerate(dataset):
        if number == STREAM_ROWS_HASHED:
            break
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
