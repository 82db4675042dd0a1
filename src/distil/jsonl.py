"""JSON lines: read one line at a time (memory stays flat), or whole into a pyarrow table.

    for number, row in iter_jsonl(path): ...     # (line number, object); blank lines skipped
    rows = read_jsonl(path)                      # all of them, under a progress bar if large

A line that is not UTF-8, not JSON, or not one JSON object is a DataError naming the line.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from distil import progress
from distil.errors import DataError

PROGRESS_FROM_BYTES = 32 * 2**20
"""Files this large are read under a progress bar (smaller ones take well under a second)."""
LARGE_FILE_BYTES = 512 * 2**20
"""Files this large are announced before an in-memory read, with the memory it takes."""
MEMORY_PER_FILE_BYTE = 8
"""Memory that training in memory adds per byte of JSONL: 468 MiB for a 64 MiB file of short
rows (benchmarks/bench_streaming.py --in-memory, 2026-12-06)."""


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line; DataError naming the line on bad text.

    A file of PROGRESS_FROM_BYTES or more is read under a progress bar in bytes; one of
    LARGE_FILE_BYTES or more is announced first with the memory it will take and how to
    stream it instead."""
    size = path.stat().st_size
    if size < PROGRESS_FROM_BYTES:
        return list(iter_jsonl(path))
    if size >= LARGE_FILE_BYTES:
        progress.console.print(large_file_notice(path, size), highlight=False)
    with progress.amount_bar(f"data: reading {path.name}", size, unit="bytes") as advance:
        return list(iter_jsonl(path, advance))


def large_file_notice(path: Path, size: int) -> str:
    """What reading `path` whole into memory will take, and how not to."""
    return (
        f"data: {path} is {size / 2**30:.1f} GiB of JSON lines, read whole into memory "
        f"(about {MEMORY_PER_FILE_BYTE:g}x its size, {MEMORY_PER_FILE_BYTE * size / 2**30:.0f}"
        " GiB); set data.streaming: true to read it while training, in flat memory"
    )


def iter_jsonl(
    path: Path, advance: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_jsonl` one line at a time (memory stays flat); `advance(n)` is told the bytes
    read after each line."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if advance is not None:
                advance(len(raw))
            row = _json_line(path, number, raw)
            if row is not None:
                yield number, row


def _json_line(path: Path, number: int, raw: bytes) -> dict[str, Any] | None:
    """The object on one line of a JSONL file (None for a blank line)."""
    try:
        line = raw.decode("utf-8").removeprefix("\ufeff" if number == 1 else "")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} line {number} is not UTF-8 text (byte "
            f"0x{raw[err.start]:02x} at column {err.start + 1}); save the "
            "file as UTF-8"
        ) from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} line {number} is not valid JSON ({err.msg}); each line must hold one JSON object"
        ) from None
    if not isinstance(row, dict):
        raise DataError(f"{path} line {number} holds a {json_type(row)}, not a JSON object")
    return row


def table_from_rows(path: Path, rows: list[tuple[int, dict[str, Any]]]) -> pa.Table:
    columns = list(dict.fromkeys(key for _, row in rows for key in row))
    arrays = {}
    for column in columns:
        values = [row.get(column) for _, row in rows]
        try:
            arrays[column] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise DataError(_mixed_types_message(path, column, rows)) from None
    return pa.table(arrays) if arrays else pa.table({})


def _mixed_types_message(path: Path, column: str, rows: list[tuple[int, dict[str, Any]]]) -> str:
    typed = [(number, json_type(row[column])) for number, row in rows if row.get(column) is not None]
    first_line, first_type = typed[0]
    line, other = next(((n, t) for n, t in typed if t != first_type), typed[-1])
    return (
        f"{path} line {line}: {column!r} holds a {other}, but line {first_line} holds a "
        f"{first_type}; give {column!r} one type in every row"
    )


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (`number`, `list`, ...), for messages."""
    names = {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "list",
        dict: "object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
