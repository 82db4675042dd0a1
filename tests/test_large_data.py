"""A large dataset read whole into memory (data.streaming off) says so first, shows its
progress, and is tokenised in chunks (a 2 GB JSONL once printed nothing for 282 s and
reached 8 GiB)."""

import io

from rich.console import Console

from distil import data, jsonl, progress
from distil.data import Pair, encode_pairs
from distil.loading import load_splits
from distil.models import build_tiny
from distil.recipe import DataSection
from tests.conftest import skill_rows, write_jsonl


def _console(monkeypatch) -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buffer, width=300, force_terminal=False))
    return buffer


def test_a_large_jsonl_is_announced_with_its_memory_then_read_under_a_progress_bar(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "big.jsonl", skill_rows(200))
    monkeypatch.setattr(jsonl, "PROGRESS_FROM_BYTES", 1024)
    monkeypatch.setattr(jsonl, "LARGE_FILE_BYTES", 2048)
    shown = _console(monkeypatch)
    train, held = load_splits(DataSection(train=str(path)), seed=0)
    assert len(train) + len(held) == 200
    lines = shown.getvalue().splitlines()
    size = path.stat().st_size
    assert lines[0].startswith(f"data: {path} is 0.0 GiB of JSON lines, read whole into memory")
    assert "set data.streaming: true" in lines[0]
    bar = [line for line in lines[1:] if line.startswith("data: reading big.jsonl")]
    assert bar and f"{size:,}/{size:,} (100%)" in bar[-1]


def test_a_small_jsonl_is_read_without_a_word(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "small.jsonl", skill_rows(20))
    shown = _console(monkeypatch)
    load_splits(DataSection(train=str(path)), seed=0)
    assert shown.getvalue() == ""


def test_rows_are_tokenised_in_chunks_and_the_same_as_at_once(monkeypatch):
    _, tokenizer = build_tiny("tiny-student")
    pairs = [Pair(f"id{i}", row["prompt"], row["response"]) for i, row in enumerate(skill_rows(25))]
    at_once = encode_pairs(tokenizer, pairs, "auto", 48)
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, texts, **options):
            calls.append(len(texts))
            return tokenizer(texts, **options)

    monkeypatch.setattr(data, "ENCODE_CHUNK", 10)
    monkeypatch.setattr(data, "ENCODE_PROGRESS_ROWS", 20)
    shown = _console(monkeypatch)
    assert encode_pairs(Counting(), pairs, "auto", 48) == at_once
    assert max(calls) == 10 and sum(calls) == 2 * 25  # prompts and responses, 10 rows a call
    assert shown.getvalue().splitlines()[-1].startswith("data: tokenising: 25/25 (100%)")
