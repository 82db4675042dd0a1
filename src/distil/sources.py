"""Where a dataset comes from, when it is not one Parquet or JSONL file: read through `datasets`.

    data/train.json                 a JSON array of objects (or JSON lines)
    my-set/                         a `save_to_disk` folder (one dataset, or splits of one)
    my-set/data/train-*.parquet     a hub-layout folder (splits from the file names)
    owner/name                      a dataset on the Hugging Face hub (needs the network)

Each gives a pyarrow table of one split (`split`, `train` by default). Local `.parquet`,
`.jsonl` files and folders of Parquet shards are read by `distil.data` itself, which names
the line of a bad row.
"""

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from distil.errors import DataError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".arrow", ".txt")


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def is_hub_layout(path: Path) -> bool:
    """A folder whose data files sit below it (e.g. data/train-00000-of-00001.parquet)."""
    return any(p.suffix.lower() in DATA_SUFFIXES for p in path.rglob("*") if p.is_file() and p.parent != path)


def looks_like_hub_id(text: str) -> bool:
    """`owner/name` that is not a local path nor a file name."""
    return bool(HUB_ID.match(text)) and not text.lower().endswith(DATA_SUFFIXES)


def is_json_array(path: Path) -> bool:
    """Whether a `.json` file holds one array (its first text is `[`), not JSON lines."""
    with path.open("rb") as f:
        head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"[")


def read_json_array(path: Path) -> list[dict[str, Any]] | None:
    """The objects of a `.json` file holding one JSON array; None when it is JSON lines."""
    if not is_json_array(path):
        return None
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        rows = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; save the file as UTF-8") from None
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} is not a valid JSON array ({err.msg} at line {err.lineno}); "
            "give one array of objects, or one object per line"
        ) from None
    bad = next((i for i, row in enumerate(rows, 1) if not isinstance(row, dict)), None)
    if bad is not None:
        raise DataError(
            f"{path}: item {bad} of the array is not a JSON object; each item must "
            'be one row {"prompt": ..., "response": ...}'
        )
    return rows


def read_saved(path: Path, split: str) -> pa.Table:
    """One split of a `save_to_disk` folder."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise DataError(
            f"{path} looks like a save_to_disk folder but cannot be read ({err}); "
            "save it again with Dataset.save_to_disk"
        ) from None
    return table_of(_pick_split(loaded, split, path), path)


def read_with_datasets(source: str, split: str) -> pa.Table:
    """One split of a hub-layout folder or a hub dataset id, through `datasets.load_dataset`."""
    import datasets

    where = "folder" if Path(source).is_dir() else "hub dataset"
    try:
        loaded = datasets.load_dataset(source)
    except Exception as err:  # datasets raises many kinds; each means "cannot load"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (
            "check the id and that this machine can reach the hub (HF_HUB_OFFLINE unset), "
            "or download it and point data.train at the folder"
            if where == "hub dataset"
            else "put the files under data/ named by split (data/train-*.parquet)"
        )
        raise DataError(f"cannot load {where} {source!r} ({first}); {hint}") from None
    return table_of(_pick_split(loaded, split, source), source)


def _pick_split(loaded: Any, split: str, source: Any) -> Any:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return loaded
    if split not in loaded:
        raise DataError(
            f"{source} has no split {split!r} (splits: {', '.join(loaded)}); set "
            "data.split (or data.eval_split for data.eval)"
        )
    return loaded[split]


def table_of(dataset: Any, source: Any) -> pa.Table:
    """A `datasets.Dataset` as one pyarrow table (its rows in its order)."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        raise DataError(
            f"{source} is a stream (an IterableDataset), read only while training: "
            "set data.streaming: true, or save it to disk first"
        )
    return dataset.with_format("arrow")[:]
