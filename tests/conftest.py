"""Shared fixtures: tiny models saved as real HF folders, small datasets, recipes."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def skill_rows(n: int = 96) -> list[dict]:
    """Deterministic prompt/response pairs of uneven lengths."""
    rows = []
    for i in range(n):
        word = "abcdefghij"[i % 10] * (1 + i % 7) + str(i)
        rows.append({"prompt": f"Reverse: {word}", "response": word[::-1]})
    return rows


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """tiny-teacher and tiny-student saved with save_pretrained (safetensors)."""
    from distil.models import build_tiny

    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name in ("tiny-teacher", "tiny-student"):
        model, tokenizer = build_tiny(name)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths[name] = root / name
    return paths


def recipe_dict(tmp_path: Path, data: Path, **sections) -> dict:
    raw = {
        "name": "test",
        "output_dir": str(tmp_path / "run"),
        "teacher": {"model": "tiny-teacher"},
        "student": {"model": "tiny-student"},
        "data": {"train": str(data), "eval_fraction": 0.15, "max_length": 48},
        "distill": {"divergence": "forward_kl", "temperature": 1.0},
        "train": {"max_steps": 12, "batch_size": 8, "learning_rate": 3e-3, "save_every": 4,
                  "log_every": 2},
        "eval": {"batch_size": 16, "max_samples": 32},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return raw


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_jsonl(tmp_path / "data.jsonl", skill_rows())


def pytest_configure(config):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
