"""Capture a teacher's top-k distributions over the training data once, into a signal store.

    distil capture recipes/tiny-signals.yaml          # writes RUN/signals (capture.output)
    distil capture recipes/tiny-signals.yaml          # again: resumes, adds only missing rows

Every training row is run through the teacher teacher-forced on its response; at each
response position the top-k of softmax(logits / T) and the log of the remaining mass are
stored under the row's sample id (docs/signals-format.md). A killed capture keeps its
complete shards and the next run captures only the rows not in them.

The sources that produce the signals (a local model, a scoring teacher) are in
distil.capture.sources. With `cross_tokenizer.method` set (a student of another tokenizer),
each row is captured on the teacher's own tokens, and the store also keeps, per position,
the teacher's token, its log-probability and its characters in the response
(`TeacherTokensSource`); the teacher's vocabulary is written beside the shards
(`teacher_vocabulary.json`), so training aligns and maps without the teacher or its
tokenizer. A teacher behind an API is captured so too, by scoring, with its token strings
as the vocabulary (distil.capture.api_tokens).

A recipe with `signals.path` then trains from the store with no teacher loaded;
`training_signals` opens it and refuses a store captured for another teacher, tokenizer,
prompt rendering, length limit or temperature.
"""

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from distil.capture.sources import LocalTeacherSource, ScoringTeacherSource, SignalSource, TeacherTokensSource
from distil.data import Example, Pair, encode_pairs
from distil.errors import DataError
from distil.loading import load_models, load_splits, load_student
from distil.models import output_vocab_size
from distil.progress import progress_bar
from distil.recipe import Recipe, teacher_signal
from distil.signals import SignalsError, SignalStore, SignalWriter, build_fingerprint
from distil.signals.recipe import capture_dir, capture_temperature, signal_identity
from distil.signals.vocabulary import write_teacher_vocabulary
from distil.teachers import endpoint_of, open_teacher


@dataclass
class CaptureResult:
    """What a capture leaves behind."""

    path: Path
    samples: int
    tokens: int
    captured: int
    """Samples captured by this run (the rest were already in the store)."""
    absent: int
    """Positions of the store without a teacher distribution (`tokens` counts them too)."""
    bytes_per_token: float
    elapsed_s: float

    def summary(self) -> str:
        """What `distil capture` says when it is done."""
        absent = f", {self.absent:,} of them absent: no teacher distribution" * bool(self.absent)
        return (
            f"signals of {self.samples} samples ({self.tokens:,} tokens{absent}, "
            f"{self.bytes_per_token:.1f} bytes/token) in {self.path}; {self.captured} "
            "captured by this run"
        )


def capture(recipe: Recipe) -> CaptureResult:
    """Capture the recipe's teacher over its training rows into `capture_dir(recipe)`.

    A local teacher is captured white-box; a teacher behind an API (`teacher.api`) by
    scoring each training response through its completions endpoint (echo + logprobs).
    """
    signal = teacher_signal(recipe)
    if signal.cross:  # a student of another tokenizer
        return capture_teacher_tokens(recipe)
    if signal.capture_via_api:
        return capture_through_api(recipe)
    if recipe.capture.source in ("score", "generation"):
        raise SignalsError(
            f"capture.source={recipe.capture.source} needs a teacher behind an API "
            "(teacher.api); set capture.source=local or auto"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher, student, vocab = load_models(recipe, device, purpose=LOCAL_CAPTURE)
    settings, temperature = recipe.capture, capture_temperature(recipe)
    if settings.top_k > vocab:
        raise SignalsError(
            f"capture.top_k={settings.top_k} exceeds the vocabulary ({vocab} "
            f"tokens); set capture.top_k to at most {vocab}"
        )
    tokenizer = student.tokenizer  # the tokens training will see
    _, examples = training_examples(recipe, tokenizer)
    del student
    source = LocalTeacherSource(teacher, vocab, settings.top_k, temperature, tokenizer.pad_token_id)
    return store_signals(
        recipe,
        source,
        tokenizer,
        vocab,
        examples,
        settings.batch_size,
        teacher_dtype=str(teacher.model.dtype).removeprefix("torch."),
        device=device.type,
    )


LOCAL_CAPTURE = "a capture in process (capture.source: local or auto)"
"""What a white-box capture is called in the refusal of a teacher without logits."""


def store_signals(
    recipe: Recipe,
    source: SignalSource,
    tokenizer: Any,
    vocab: int,
    examples: list[Example],
    batch_size: int,
    **provenance: str,
) -> CaptureResult:
    """Capture `examples` from `source` into the recipe's store, under its fingerprint."""
    settings = recipe.capture
    fingerprint = build_fingerprint(
        signal_identity(recipe, tokenizer, capture_temperature(recipe)),
        vocab_size=vocab,
        top_k=settings.top_k,
        logprob_dtype=settings.logprob_dtype,
        source=source.name,
        logprob_mode=source.logprob_mode,
        absent_positions=source.absent_positions,
        provenance={
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **provenance,
            "data": recipe.data.train,
        },
    )
    return run_capture(
        source,
        examples,
        fingerprint,
        capture_dir(recipe),
        batch_size=batch_size,
        shard_tokens=settings.shard_tokens,
    )


def capture_through_api(recipe: Recipe) -> CaptureResult:
    """Score every training response with the API teacher; its top-k at T = 1 into the store."""
    from distil.progress import console

    student = load_student(recipe, torch.device("cpu"))
    vocab = output_vocab_size(student.model)
    settings = recipe.capture
    tokenizer = student.tokenizer  # the tokens training will see; the teacher must share them
    train_pairs, examples = training_examples(recipe, tokenizer)
    endpoint = endpoint_of(recipe.teacher)
    store = partial(
        store_signals, recipe, tokenizer=tokenizer, vocab=vocab, examples=examples, endpoint=endpoint
    )
    if settings.source == "generation":  # no request: the logprobs are in the data already
        return store_generation(recipe, store)
    with closing(
        open_teacher(recipe.teacher, seed=recipe.seed, probe_top_logprobs=settings.top_k)
    ) as teacher:
        for line in teacher.offers():
            console.print(line, highlight=False)
        if settings.source == "auto" and not teacher.capabilities.can_score:
            console.print(
                "the teacher cannot score given text: capturing the logprobs it "
                "returned while generating (kept by synth)",
                highlight=False,
            )
            return store_generation(recipe, store)
        source = ScoringTeacherSource(teacher, train_pairs, settings.top_k, tokenizer.eos_token)
        return store(source=source, batch_size=max(settings.batch_size, getattr(teacher, "concurrency", 1)))


def store_generation(recipe: Recipe, store: Callable[..., CaptureResult]) -> CaptureResult:
    """Store the logprobs synth kept in the training data; say what sampled tokens cost."""
    from distil.progress import console
    from distil.signals.generation import GenerationLogprobsSource, read_token_logprobs

    source = GenerationLogprobsSource(read_token_logprobs(recipe.data.train), recipe.capture.top_k)
    result = store(source=source, batch_size=recipe.capture.batch_size)
    if source.diverged_rows:
        console.print(
            f"{source.diverged_rows} rows: the teacher sampled tokens that re-tokenising its "
            f"answer does not give; the {source.diverged_positions:,} positions after the first "
            "such token are stored absent (the teacher saw another prefix there). "
            "capture.source: score captures every position",
            highlight=False,
        )
    return result


def run_capture(
    source: SignalSource,
    examples: list[Example],
    fingerprint: dict[str, Any],
    path: Path,
    batch_size: int,
    shard_tokens: int,
) -> CaptureResult:
    """Capture every example not yet in the store at `path`; longest rows first."""
    if fingerprint["temperature"] != source.temperature:
        raise SignalsError(
            f"the {source.name} source gives distributions at temperature "
            f"{source.temperature}, not {fingerprint['temperature']}; set "
            f"distill.temperature={source.temperature}"
        )
    started = time.perf_counter()
    with SignalWriter(path, fingerprint, shard_tokens) as writer:
        todo = sorted(
            (e for e in examples if e.sample_id not in writer), key=lambda e: (-len(e.input_ids), e.sample_id)
        )
        with progress_bar("tok/s") as bar:
            task = bar.add_task(
                "capture", total=len(examples), completed=len(examples) - len(todo), **{"tok/s": "-"}
            )
            tokens = 0
            for start in range(0, len(todo), batch_size):
                for sample in source.capture(todo[start : start + batch_size]):
                    writer.add(sample)
                    tokens += sample.num_tokens
                rate = tokens / max(time.perf_counter() - started, 1e-9)
                bar.update(task, advance=len(todo[start : start + batch_size]), **{"tok/s": f"{rate:,.0f}"})
    with SignalStore(path) as store:
        size = sum(p.stat().st_size for p in store.shards)
        return CaptureResult(
            path,
            len(store),
            store.num_tokens,
            len(todo),
            store.num_absent,
            size / max(store.num_tokens, 1),
            time.perf_counter() - started,
        )


def training_examples(recipe: Recipe, tokenizer: Any) -> tuple[list[Pair], list[Example]]:
    """The recipe's training rows, as pairs and as the examples training will see."""
    train_pairs, _ = load_splits(recipe.data, recipe.seed)
    return train_pairs, unique_examples(
        encode_pairs(tokenizer, train_pairs, recipe.data.template, recipe.data.max_length)
    )


def unique_examples(examples: list[Example]) -> list[Example]:
    """One example per sample id; the same id on two different rows is an error."""
    seen: dict[str, Example] = {}
    for example in examples:
        other = seen.setdefault(example.sample_id, example)
        if other.input_ids != example.input_ids:
            raise DataError(
                f"sample id {example.sample_id!r} names two different rows; the data's "
                "`id` column must be unique (signals are stored by sample id)"
            )
    return list(seen.values())


def capture_teacher_tokens(recipe: Recipe) -> CaptureResult:
    """Capture the recipe's teacher on its own tokens into `capture_dir(recipe)`: a local
    model white-box, a teacher behind an API by scoring (distil.capture.api_tokens)."""
    if teacher_signal(recipe).capture_via_api:
        from distil.capture.api_tokens import api_teacher_tokens

        student = load_student(recipe, torch.device("cpu"))
        pairs, examples = training_examples(recipe, student.tokenizer)  # the rows training reads
        with api_teacher_tokens(recipe, pairs) as (source, fingerprint):
            return run_capture(
                source,
                examples,
                fingerprint,
                capture_dir(recipe),
                batch_size=max(recipe.capture.batch_size, source.concurrency),
                shard_tokens=recipe.capture.shard_tokens,
            )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher, _, _ = load_models(recipe, device, purpose=LOCAL_CAPTURE)
    tokenizer, settings = teacher.tokenizer, recipe.capture
    vocab = output_vocab_size(teacher.model)
    if settings.top_k > vocab:
        raise SignalsError(
            f"capture.top_k={settings.top_k} exceeds the teacher's vocabulary "
            f"({vocab} tokens); set capture.top_k to at most {vocab}"
        )
    pairs, examples = training_examples(recipe, tokenizer)
    source = TeacherTokensSource(
        teacher,
        vocab,
        settings.top_k,
        capture_temperature(recipe),
        tokenizer.pad_token_id,
        tokenizer=tokenizer,
        pairs=pairs,
    )
    fingerprint = build_fingerprint(
        signal_identity(recipe, tokenizer, capture_temperature(recipe)),
        vocab_size=vocab,
        top_k=settings.top_k,
        logprob_dtype=settings.logprob_dtype,
        source=source.name,
        logprob_mode=source.logprob_mode,
        provenance={
            "data": recipe.data.train,
            "teacher_dtype": str(teacher.model.dtype).removeprefix("torch."),
        },
    )
    fingerprint["teacher_tokens"] = True
    path = capture_dir(recipe)
    write_teacher_vocabulary(path, tokenizer)
    return run_capture(
        source,
        examples,
        fingerprint,
        path,
        batch_size=settings.batch_size,
        shard_tokens=settings.shard_tokens,
    )
