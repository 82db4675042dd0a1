"""Where each micro-batch's rows come from: tokenised examples in memory, or a stream.

    rows = training_rows(recipe, examples, stream, tokenizer, rank, world_size)
    batch_rows = rows.micro_batch(number)     # this process's rows of micro-batch `number`

Either way the rows of a micro-batch are a pure function of (seed, micro-batch number,
rank, number of processes), so the micro-batch number a checkpoint records is the whole
data position. In memory: a seeded permutation per epoch (distil.batching.micro_batch_indices).
Streamed (data.streaming): the stream's global batches (distil.streaming.RowStream), each
tokenised as it is taken; a jump to another number (a resume) re-reads up to it.
"""

from collections.abc import Iterator
from typing import Any, Protocol

from distil.batching import micro_batch_indices
from distil.data import Example, Pair, encode_pairs
from distil.recipe import Recipe
from distil.streaming import RowStream


class TrainingRows(Protocol):
    """The rows training reads."""

    def count(self) -> int:
        """Training rows in one epoch (a stream counts them in a pass)."""
        ...

    def micro_batch(self, number: int) -> list[Example]:
        """This process's rows of micro-batch `number`."""
        ...


class InMemoryRows:
    """Tokenised examples in memory, in a seeded permutation per epoch."""

    def __init__(
        self, examples: list[Example], batch_size: int, seed: int, rank: int, world_size: int
    ) -> None:
        self.examples, self.batch_size, self.seed = examples, batch_size, seed
        self.rank, self.world_size = rank, world_size

    def count(self) -> int:
        return len(self.examples)

    def micro_batch(self, number: int) -> list[Example]:
        rows = micro_batch_indices(
            number, len(self.examples), self.batch_size, self.seed, self.rank, self.world_size
        )
        return [self.examples[i] for i in rows]


class StreamedRows:
    """A stream's global batches, each process taking every world_size-th row of one."""

    def __init__(self, stream: RowStream, recipe: Recipe, tokenizer: Any, rank: int, world_size: int) -> None:
        self.stream, self.recipe, self.tokenizer = stream, recipe, tokenizer
        self.rank, self.world_size = rank, world_size
        self._batches: Iterator[list[Pair]] | None = None
        self._next = 0
        """The micro-batch number `_batches` gives next."""

    def count(self) -> int:
        return self.stream.count()

    def micro_batch(self, number: int) -> list[Example]:
        if self._batches is None or number != self._next:
            size = self.recipe.train.batch_size * self.world_size
            self._batches = self.stream.global_batches(size, start=number)
        self._next = number + 1
        pairs = next(self._batches)[self.rank :: self.world_size]
        return encode_pairs(self.tokenizer, pairs, self.recipe.data.template, self.recipe.data.max_length)


def training_rows(
    recipe: Recipe,
    examples: list[Example],
    stream: RowStream | None,
    tokenizer: Any,
    rank: int,
    world_size: int,
) -> TrainingRows:
    """The session's rows: the stream's when there is one, else the examples in memory."""
    if stream is not None:
        return StreamedRows(stream, recipe, tokenizer, rank, world_size)
    return InMemoryRows(examples, recipe.train.batch_size, recipe.seed, rank, world_size)
