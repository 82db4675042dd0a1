"""Recipe section of the capture stage: `capture:` (the teacher's top-k, stored once)."""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.section import TEACHER_IDENTITY, Section, StageInputs


class CaptureSection(Section):
    """Capturing the teacher's top-k distributions once (`distil capture`), to train from disk.

    The stored distributions are softened at distill.temperature, the one temperature of a
    recipe, so a store always fits the training that reads it.
    """

    top_k: Annotated[int, Field(ge=1)] = 32
    """Entries kept per response token: the k most likely token ids and their log-probabilities;
    the probability outside them is kept as one number (the tail mass)."""
    logprob_dtype: Literal["float32", "float16", "uint8"] = "float16"
    """How log-probabilities are stored: `float32` exact (4 bytes), `float16` (2 bytes), `uint8`
    (1 byte, fourth-root companded probability); see docs/signals-format.md for the errors."""
    batch_size: Annotated[int, Field(ge=1)] = 8
    """Rows per teacher forward pass."""
    shard_tokens: Annotated[int, Field(ge=1)] = 262144
    """Tokens per shard file. Shards are written whole, so a killed capture loses at most the
    shard it was filling; the next `distil capture` captures only the rows not yet stored."""
    output: str | None = None
    """Folder of the signal store. Empty means RUN/signals (RUN being the run folder)."""
    source: Literal["auto", "local", "score", "generation"] = "auto"
    """Where the distributions come from. `local`: the teacher model run in process
    (white-box, any k and temperature). `score`: an API teacher scores each training response
    (echo + logprobs). `generation`: the top logprobs an API teacher returned while generating,
    kept by synth (synth.sampling.top_logprobs >= capture.top_k); no request is sent. `auto`:
    local without teacher.api; with it, score when the endpoint can, else generation."""


INPUTS = StageInputs(
    fields=(
        "seed",
        *TEACHER_IDENTITY,
        "data",
        "capture.top_k",
        "capture.logprob_dtype",
        "capture.source",
        "distill.temperature",
        "cross_tokenizer.method",
    ),
    reads=("synth",),
)
"""What decides the stored signals; batch and shard sizes and the store's folder do not."""
