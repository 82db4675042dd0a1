"""Training rows read as a stream (recipe `data.streaming`), so memory stays flat however
large the data: JSONL line by line, Parquet batch by batch, or a dataset passed in Python
(an `IterableDataset` too) row by row.

    stream = RowStream(recipe.data, recipe.seed)
    for rows in stream.global_batches(size=8, start=0): ...   # epoch after epoch, endless
    held_out = stream.held_out(limit=256)

Rows become pairs by the rules of distil.data (`RowLayout`: `load_pairs` one row at a time,
its layout decided from the first row's columns). What streaming decides otherwise than the
in-memory path, because no pass may hold every row:

- **the held-out split**: a row is held out when a hash of (seed, its sample id) falls below
  `data.eval_fraction` (so about that share, decided as each row passes; the same row always
  lands on the same side, a duplicated row too). `data.eval` names a held-out file instead.
- **the order**: each epoch reads the rows in file order through a shuffle buffer of
  `data.shuffle_buffer` rows, its draws seeded by (seed, epoch): reproducible, but not the
  in-memory path's permutation of all rows, so the two paths train on different orders.
- **the batches run on across epochs**: global batch g holds rows g*B ... (g+1)*B - 1 of the
  epochs laid end to end, so the micro-batch number alone is the data position a
  checkpoint records. A resumed run re-reads (without tokenising) up to that position, with
  a progress bar, and goes on with exactly the rows an uninterrupted run would have seen.
- **epochs** need the row count: with `train.epochs` (no `train.max_steps`), one counting
  pass runs first, with a progress bar.
"""

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distil import chat, inmemory, jsonl, sources
from distil.data import Pair, chat_pair, text_pair
from distil.errors import DataError
from distil.progress import amount_bar, progress_bar
from distil.recipe import DataSection

PARQUET_BATCH_ROWS = 1024
"""Rows of a Parquet file decoded at a time."""
PROGRESS_EVERY_ROWS = 256
"""Rows skipped between two updates of the resume's progress bar."""

Advance = Callable[[int], None]
"""Told how far reading went (bytes of a JSONL file, rows of anything else)."""


@dataclass(frozen=True)
class RowLayout:
    """How each row becomes a `Pair`, decided once from the columns (the streamed reader's
    per-row form of `load_pairs`)."""

    kind: chat.Format
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: str = "messages"
    system_prompt: str | None = None

    def pair(self, row: dict[str, Any], where: str) -> Pair | None:
        """The row as a Pair; None for a pair row with an empty response (nothing to learn);
        a DataError naming `where` for a row without its text."""
        if self.kind == "messages":
            return chat_pair(row, [self.messages_field], self.system_prompt, where)
        if self.kind == "prompt_completion" and not isinstance(row.get("prompt"), str):
            return chat_pair(row, ["prompt", "completion"], self.system_prompt, where)
        fields = (
            ("prompt", "completion")
            if self.kind == "prompt_completion"
            else (self.prompt_field, self.response_field)
        )
        for name in fields:
            if not isinstance(row.get(name), str):
                raise DataError(_field_problem(where, name, row.get(name)))
        if not row[fields[1]]:
            return None
        pair = text_pair(row, *fields, self.system_prompt, where)
        if self.kind == "prompt_completion" and pair.turns is None:  # TRL's text rows
            return replace(pair, untemplated=True)
        return pair


def row_layout(
    columns: list[str],
    prompt_field: str = "prompt",
    response_field: str = "response",
    messages_field: str = "messages",
    row_format: chat.Format = "auto",
    system_prompt: str | None = None,
) -> RowLayout:
    """The layout of rows with these columns (`row_format` auto picks, as in `load_pairs`)."""
    kind = chat.detect_format(columns, prompt_field, response_field, messages_field, row_format)
    return RowLayout(kind, prompt_field, response_field, messages_field, system_prompt)


def _field_problem(where: str, name: str, value: Any) -> str:
    if value is None:
        return (
            f"{where} has no {name!r}; give every row a {name!r} string, or set "
            "data.prompt_field / data.response_field (or data.format) in the recipe"
        )
    return f"{where}: {name!r} is a {jsonl.json_type(value)} ({value!r:.40}), not a string; quote it as text"


class RowStream:
    """The rows of `data.train` (and held-out rows) as streams; see the module docstring."""

    def __init__(self, data: DataSection, seed: int) -> None:
        self.data, self.seed = data, seed
        self._length: int | None = None
        """Training rows in one epoch, once a pass has counted them."""
        self._layouts: dict[str, RowLayout] = {}
        self._layout(str(data.train))  # bad data fails now, before any model loads

    def train_pairs(self, advance: Advance | None = None) -> Iterator[Pair]:
        """The training rows in file order (held-out ones left out)."""
        for pair in self._pairs(str(self.data.train), advance):
            if self.data.eval or not self.is_held_out(pair):
                yield pair

    def held_out(self, limit: int | None = None) -> list[Pair]:
        """The first `limit` held-out rows in file order (all of them without a limit):
        `data.eval`'s, else the rows the hash split holds out."""
        found: list[Pair] = []
        if self.data.eval:
            pairs = self._pairs(self.data.eval)
        else:
            pairs = (p for p in self._pairs(str(self.data.train)) if self.is_held_out(p))
        for pair in pairs:
            if limit is not None and len(found) == limit:
                break
            found.append(pair)
        return found

    def is_held_out(self, pair: Pair) -> bool:
        """Whether the hash of (seed, sample id) puts the row in the held-out share."""
        digest = hashlib.sha256(f"{self.seed}\x00{pair.sample_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") < self.data.eval_fraction * 2**64

    def count(self) -> int:
        """Training rows in one epoch: a reading pass with a progress bar (once)."""
        if self._length is None:
            with _reading(self.data.train, "counting rows") as advance:
                self._length = sum(1 for _ in self.train_pairs(advance))
            if not self._length:
                raise DataError(
                    f"{self.data.train} has no training rows (every usable row is "
                    "held out or empty); lower data.eval_fraction or add rows"
                )
        return self._length

    def epoch(self, epoch: int, advance: Advance | None = None) -> Iterator[Pair]:
        """One epoch's training rows through the seeded shuffle buffer."""
        draws = random.Random(self.seed * 100_003 + epoch)
        return shuffled(self.train_pairs(advance), self.data.shuffle_buffer, draws)

    def global_batches(self, size: int, start: int = 0) -> Iterator[list[Pair]]:
        """Batches of `size` rows, from global batch number `start` on, without end."""
        rows = self._endless(start * size)
        while True:
            yield [next(rows) for _ in range(size)]

    def _endless(self, skip: int) -> Iterator[Pair]:
        """The epochs laid end to end, from row `skip` on (whole epochs are jumped over once
        their length is known; the rest is read through)."""
        epoch = 0
        if self._length:
            epoch, skip = divmod(skip, self._length)
        while True:
            rows = _Counted(self.epoch(epoch))
            if skip:
                skip -= _skip(rows, skip, self.data.train, epoch)
            yield from rows
            if not rows.seen:
                raise DataError(
                    f"{self.data.train} has no training rows (every usable row is "
                    "held out or empty); lower data.eval_fraction or add rows"
                )
            self._length = rows.seen
            epoch, skip = epoch + 1 + skip // rows.seen, skip % rows.seen

    def _layout(self, source: str) -> RowLayout:
        """How `source`'s rows become pairs, from its first row (which must be usable)."""
        if source in self._layouts:
            return self._layouts[source]
        first = next(iter(_rows(source)), None)
        if first is None:
            raise DataError(
                f"{source} is empty (no rows); point the recipe at a dataset with prompt/response pairs"
            )
        d = self.data
        layout = row_layout(
            list(first[1]), d.prompt_field, d.response_field, d.messages_field, d.format, d.system_prompt
        )
        layout.pair(first[1], first[0])  # a first row without its text fails before training
        self._layouts[source] = layout
        return layout

    def _pairs(self, source: str, advance: Advance | None = None) -> Iterator[Pair]:
        layout = self._layout(source)
        for where, row in _rows(source, advance):
            pair = layout.pair(row, where)
            if pair is not None:
                yield pair


def shuffled(items: Iterable[Any], size: int, draws: random.Random) -> Iterator[Any]:
    """`items` through a shuffle buffer of `size`: each new item takes the place of a drawn
    one, which is given out; at the end the rest in a drawn order. Only `random()` is drawn
    (the one method Python keeps the same across versions)."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = int(draws.random() * size)
        yield buffer[index]
        buffer[index] = item
    while buffer:
        index = int(draws.random() * len(buffer))
        buffer[index], buffer[-1] = buffer[-1], buffer[index]
        yield buffer.pop()


class _Counted:
    """An iterator that counts what it gave."""

    def __init__(self, items: Iterator[Any]) -> None:
        self.items, self.seen = items, 0

    def __iter__(self) -> "_Counted":
        return self

    def __next__(self) -> Any:
        item = next(self.items)
        self.seen += 1
        return item


def _skip(rows: Iterator[Any], count: int, source: Any, epoch: int) -> int:
    """Read past up to `count` rows (a progress bar); how many there were."""
    skipped = 0
    with progress_bar() as bar:
        task = bar.add_task(f"data: back to the resumed position (epoch {epoch})", total=count)
        for _ in rows:
            skipped += 1
            if skipped % PROGRESS_EVERY_ROWS == 0 or skipped == count:
                bar.update(task, completed=skipped)
            if skipped == count:
                break
    return skipped


def _reading(source: Any, what: str) -> AbstractContextManager[Advance]:
    """A progress bar over one read of `source`; gives the `advance` to pass to the reader."""
    total, unit = source_size(str(source))
    return amount_bar(f"data: {what}", total, unit)


def source_size(source: str) -> tuple[int | None, str]:
    """How much a full read of `source` advances its progress, and in what unit."""
    if inmemory.is_memory_name(source):
        rows = inmemory.held(source).description.get("rows")
        return rows, "rows"
    files = _files(Path(source))
    if all(f.suffix.lower() == ".parquet" for f in files):
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files), "rows"
    return sum(f.stat().st_size for f in files), "bytes"


def _rows(source: str, advance: Advance | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) of each row of `source`, read a line or a batch at a time."""
    if inmemory.is_memory_name(source):
        yield from _dataset_rows(source, inmemory.held(source).value, advance)
        return
    for path in _files(Path(source)):
        if path.suffix.lower() == ".parquet":
            yield from _parquet_rows(path, advance)
        else:
            yield from ((f"{path} line {n}", row) for n, row in jsonl.iter_jsonl(path, advance))


def _files(path: Path) -> list[Path]:
    """The files a streamed source reads: one JSONL or Parquet file, or a folder's shards."""
    if not path.exists():
        raise DataError(f"dataset not found: {path}; check data.train / data.eval in the recipe")
    if path.is_dir():
        shards = sorted(path.glob("*.parquet"))
        if not shards:
            raise DataError(
                f"{path} holds no .parquet files; data.streaming reads JSONL and "
                "Parquet files, folders of Parquet shards and datasets passed in "
                "Python (set data.streaming: false for other sources)"
            )
        return shards
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".jsonl") or (suffix == ".json" and not sources.is_json_array(path)):
        return [path]
    raise DataError(
        f"{path}: data.streaming reads .jsonl (or JSON lines) and .parquet files; "
        "convert it, or set data.streaming: false"
    )


def _parquet_rows(path: Path, advance: Advance | None) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield f"{path} row {number}", row
            if advance is not None:
                advance(batch.num_rows)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path} is not a readable Parquet file ({err})") from None


def _dataset_rows(name: str, dataset: Any, advance: Advance | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a `datasets.Dataset` or `IterableDataset`."""
    for number, row in enumerate(dataset, 1):
        yield f"{name} row {number}", row
        if advance is not None:
            advance(1)
