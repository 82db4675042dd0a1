"""The store's fingerprint: what the signals were captured from and how, in fingerprint.json.

    {"format": "distil-signals", "format_version": 1,
     "teacher": {"model": "Qwen/Qwen2.5-7B-Instruct", "revision": null, "seed": null},
     "source": "local", "logprob_mode": "teacher-forced",
     "tokenizer_hash": "...", "chat_template_hash": "...", "template": "chat", "max_length": 512,
     "vocab_size": 151936, "top_k": 32, "temperature": 1.0, "logprob_dtype": "uint8",
     "distil_version": "0.1.0",
     "provenance": {"created": "...", "teacher_dtype": "bfloat16", "device": "cuda"}}

`format_version` is 2 when the capture's source may lack a position's distribution (its
shards then mark absent positions), else 1. Everything but `provenance` is the store's
identity: a capture resumes only into a store of the same identity, and training checks the
recipe-side fields (teacher, tokenizer, template, max_length, temperature) against its own
recipe and refuses a mismatch.
"""

import json
from pathlib import Path
from typing import Any

from distil import __version__
from distil.fsutil import atomic_write_json
from distil.models import chat_template_hash, tokenizer_hash
from distil.signals.errors import FingerprintMismatchError, SignalsError, StoreCorruptedError
from distil.signals.shard import FORMAT, FORMAT_VERSION, VERSIONS, Encoding

FINGERPRINT_FILE = "fingerprint.json"


def recipe_identity(
    *, teacher: dict[str, Any], tokenizer: Any, template: str, max_length: int, temperature: float
) -> dict[str, Any]:
    """The fields a recipe decides: which teacher, which tokens, which temperature.

    `teacher` is {"model", "revision", "seed"}; `template` is the resolved rendering of
    prompts, `chat` or `plain`. `tokenizer` may be None (an API teacher named without
    teacher.api.tokenizer): both hashes are then None.
    """
    known = tokenizer is not None
    return {
        "teacher": dict(teacher),
        "tokenizer_hash": tokenizer_hash(tokenizer) if known else None,
        "chat_template_hash": chat_template_hash(tokenizer) if known and template == "chat" else None,
        "template": template,
        "max_length": int(max_length),
        "temperature": float(temperature),
    }


def build_fingerprint(
    recipe_fields: dict[str, Any],
    *,
    vocab_size: int,
    top_k: int,
    logprob_dtype: str,
    source: str,
    logprob_mode: str,
    provenance: dict[str, Any],
    absent_positions: bool = False,
) -> dict[str, Any]:
    """The whole fingerprint of a capture: `recipe_identity(...)` plus how it was stored;
    `absent_positions` when the source may lack a position's distribution (format version 2)."""
    version = FORMAT_VERSION if absent_positions else 1
    return {
        "format": FORMAT,
        "format_version": version,
        **recipe_fields,
        "source": source,
        "logprob_mode": logprob_mode,
        "vocab_size": vocab_size,
        "top_k": top_k,
        "logprob_dtype": logprob_dtype,
        "distil_version": __version__,
        "provenance": provenance,
    }


def identity(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint without its provenance."""
    return {k: v for k, v in fingerprint.items() if k != "provenance"}


def read_fingerprint(store: Path) -> dict[str, Any]:
    """fingerprint.json of `store`; a clear error when it is missing or unreadable."""
    path = store / FINGERPRINT_FILE
    if not path.is_file():
        raise SignalsError(
            f"no signal store at {store} ({FINGERPRINT_FILE} missing); run "
            "`distil capture RECIPE` to capture one, or fix signals.path"
        )
    try:
        fingerprint = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreCorruptedError(
            f"{path} is damaged ({err}); delete the store {store} and capture it again"
        ) from None
    missing = {"format_version", "vocab_size", "top_k", "logprob_dtype", "temperature"}
    if (
        not isinstance(fingerprint, dict)
        or fingerprint.get("format") != FORMAT
        or (missing - set(fingerprint))
    ):
        raise StoreCorruptedError(
            f"{path} is not a distil-signals fingerprint; delete the store {store} and capture it again"
        )
    if fingerprint["format_version"] not in VERSIONS:
        raise SignalsError(
            f"{store} uses signal format version {fingerprint['format_version']}, "
            f"this distil reads versions {', '.join(map(str, VERSIONS))}; read it "
            "with the distil that wrote it, or capture it again with this one"
        )
    return fingerprint


def encoding_of(fingerprint: dict[str, Any]) -> Encoding:
    """How the shards of the store with this fingerprint are encoded."""
    return Encoding(
        int(fingerprint["vocab_size"]),
        int(fingerprint["top_k"]),
        fingerprint["logprob_dtype"],
        bool(fingerprint.get("teacher_tokens", False)),
        absent=fingerprint["format_version"] >= 2,
    )


def write_fingerprint(store: Path, fingerprint: dict[str, Any]) -> None:
    """Write fingerprint.json atomically."""
    atomic_write_json(store / FINGERPRINT_FILE, fingerprint)


def differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'key: store X, wanted Y' for every key of `wanted` whose value differs (nested keys dotted)."""
    found = []
    for key, value in wanted.items():
        have = stored.get(key)
        if isinstance(value, dict) and isinstance(have, dict):
            found += [f"{key}.{line}" for line in differences(have, value)]
        elif have != value:
            found.append(f"{key}: store has {have!r}, expected {value!r}")
    return found


def check_resumable(store: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse to add samples to a store captured under other settings."""
    problems = differences(identity(stored), identity(wanted))
    if problems:
        raise FingerprintMismatchError(
            f"{store} holds signals captured under other settings ({'; '.join(problems)}); "
            "set capture.output to a new folder, or delete that store to capture it again"
        )
