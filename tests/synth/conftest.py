"""Synth test helpers: recipes over a tmp run folder, reading what a run wrote."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_jsonl

SEEDS = [
    "Reverse the word: lantern",
    "What is 17 plus 25?",
    "Reverse the word: lantern",
    "",
    "Name a prime number above 10.",
    "Translate 'good morning' into Spanish.",
]


@pytest.fixture
def seed_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "seeds.jsonl", [{"prompt": p} for p in SEEDS])


def synth_recipe(tmp_path: Path, seed_file: Path, **synth) -> dict:
    """A recipe dict: tiny models, the seed file, short greedy answers kept even when cut."""
    section = {
        "prompts": {"file": str(seed_file)},
        "sampling": {"max_new_tokens": 6, "temperature": 0.0},
        "filters": {"drop_truncated": False},
    }
    for key, value in synth.items():
        section[key] = {**section.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "name": "synth-test",
        "output_dir": str(tmp_path / "run"),
        "teacher": {"model": "tiny-teacher"},
        "student": {"model": "tiny-student"},
        "synth": section,
        "data": {"eval_fraction": 0.2, "max_length": 64},
        "train": {"max_steps": 2, "batch_size": 4, "save_every": 2, "log_every": 1},
        "eval": {"batch_size": 4, "max_samples": 4},
    }


def outputs(run: Path) -> tuple[list[dict], list[dict], dict]:
    """(train rows, reject rows, summary) of a finished synth run."""
    rows = pq.read_table(run / "data" / "train.parquet").to_pylist()
    rejects = [json.loads(line) for line in (run / "data" / "rejects.jsonl").read_text().splitlines()]
    summary = json.loads((run / "data" / "synth_summary.json").read_text())
    return rows, rejects, summary


def journal_lines(run: Path, attempts: bool = False) -> list[dict]:
    """Complete journal entries (finished requests), or with `attempts` the lines recording
    each billed attempt; a last line torn by a kill (no newline yet) is not one."""
    data = (run / "synth" / "journal.jsonl").read_bytes()
    rows = [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]
    return [row for row in rows if ("attempt" in row) == attempts]
