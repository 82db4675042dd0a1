"""Gather what a run folder holds into one plain dict for the report.

Every part is optional: a report of a run that only trained shows training; one that also
synthesised, compared, exported and benchmarked shows all of it.
"""

import json
from pathlib import Path
from typing import Any

import yaml


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, read from `run_dir`."""
    recipe_text = (run_dir / "recipe.yaml").read_text() if (run_dir / "recipe.yaml").is_file() else ""
    data: dict[str, Any] = {
        "run_dir": str(run_dir),
        "recipe_text": recipe_text,
        "recipe": yaml.safe_load(recipe_text) if recipe_text else {},
        "eval": _json(run_dir / "eval.json") or {},
        "train_log": _jsonl(run_dir / "train_log.jsonl"),
        "train_summary": _json(run_dir / "train_summary.json") or {},
        "samples": _jsonl(run_dir / "eval_samples.jsonl"),
        "parity": _json(run_dir / "export" / "parity.json"),
        "synth": _json(run_dir / "data" / "synth_summary.json"),
        "stages": {p.stem: _json(p) for p in sorted((run_dir / "stages").glob("*.json"))},
        "compare": {},
    }
    summary = _json(run_dir / "compare" / "summary.json")
    data["compare_summary"] = summary
    for method in (summary or {}).get("methods", {}):
        variant = run_dir / "compare" / method / f"seed-{summary['base_seed']}"
        if (variant / "train_log.jsonl").is_file():  # logit_kd at the run's seed is the run
            data["compare"][method] = {
                "eval": _json(variant / "eval.json") or {},
                "train_log": _jsonl(variant / "train_log.jsonl"),
            }
    return data
