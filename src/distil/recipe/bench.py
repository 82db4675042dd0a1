"""Recipe section of the bench stage: `bench:` (how each model is timed).

It is also the Python config of `distil.bench.bench_run`, and the `distil bench` options are
built from its fields.
"""

from pydantic import Field

from distil.recipe.section import TEACHER_IDENTITY, Section, StageInputs


class BenchSection(Section):
    """How long and how often each model generates."""

    new_tokens: int = Field(default=32, ge=2)
    """Tokens generated per sequence in each timed run (eos does not stop it)."""
    batch_sizes: list[int] = Field(default=[1, 8], min_length=1)
    """Batch sizes to time; a batch takes the first held-out prompts, left-padded."""
    warmup: int = Field(default=1, ge=0)
    """Untimed runs per batch size before the timed ones."""
    repeats: int = Field(default=3, ge=1)
    """Timed runs per batch size; figures are medians (latency percentiles pool all steps)."""
    threads: int | None = Field(default=1, ge=1)
    """CPU threads for every runtime; empty uses every core. 1 by default: on a machine that
    other work shares, PyTorch's threads wait on each other and its figures swing by 5x or
    more, while one thread each keeps the comparison stable (and conservative for ONNX)."""
    seed: int = 0
    """Seed of the held-out prompts used as inputs. In a recipe, left unset, it is the
    recipe's seed."""
    variants: list[str] | None = None
    """Exported variants (folder names under RUN/export) to time; empty times every deployable
    variant listed in parity.json whose format is timed by default and whose runtime is
    installed (ONNX; GGUF with llama-cpp-python; not the `hf` folder, which is for GPUs)."""
    timeout_s: float = Field(default=900, gt=0)
    """Longest one model's measurement may take."""


INPUTS = StageInputs(fields=("seed", *TEACHER_IDENTITY, "bench"), reads=("export", "eval"))
"""What decides the timings; they are merged into eval.json, so a new eval redoes them."""
