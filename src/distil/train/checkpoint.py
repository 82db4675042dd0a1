"""Resumable training checkpoints: student (HF format), optimizer, scheduler, RNG, position.

    runs/NAME/checkpoints/step-000040/
        student/              save_pretrained output (safetensors) and tokenizer
        optimizer.pt          optimizer state (and grad scaler state under fp16)
        scheduler.pt          learning-rate scheduler state
        rng-N.pt              torch / numpy / python RNG states of process N (one per process)
        trainer_state.json    step, micro-batch position, tokens seen, the training inputs
                              and their fingerprint

A checkpoint folder appears in one rename once complete, so a kill mid-write leaves the
previous checkpoint as the latest.
"""

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from distil.errors import CheckpointError

STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainerState:
    """Where training stands; everything else follows from it and the recipe."""

    step: int = 0
    micro_batch: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    total_steps: int = 0
    fingerprint: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    """The values of every recipe field the trained weights depend on (distil.recipe.inputs)."""


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found) if (p / "trainer_state.json").is_file()]


def checkpoint_fingerprint(path: Path) -> str:
    """The recipe fingerprint a checkpoint was written under."""
    return json.loads((path / "trainer_state.json").read_text()).get("fingerprint", "")


def checkpoint_inputs(path: Path) -> dict[str, Any]:
    """The training inputs a checkpoint was written under (empty for older checkpoints)."""
    return json.loads((path / "trainer_state.json").read_text()).get("inputs", {})


def load_checkpoint(
    path: Path,
    student: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    rank: int = 0,
) -> TrainerState:
    """Restore a checkpoint of the layout before accelerate's save_state into live objects;
    return the state."""
    try:
        state = TrainerState(**json.loads((path / "trainer_state.json").read_text()))
        load_student_weights(student, path / "student")
        saved = torch.load(path / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and saved["scaler"] is not None:
            scaler.load_state_dict(saved["scaler"])
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        restore_rng(torch.load(path / f"rng-{rank}.pt", weights_only=True))
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be restored ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); delete it to "
            "resume from the one before, or start a new run"
        ) from None
    return state


def load_student_weights(student: torch.nn.Module, folder: Path) -> None:
    """Load safetensors weights saved by save_pretrained into `student`, in place."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(file))
    missing, unexpected = student.load_state_dict(weights, strict=False)
    loaded = {student.state_dict()[k].data_ptr() for k in weights if k in student.state_dict()}
    untied = [k for k in missing if student.state_dict()[k].data_ptr() not in loaded]
    if unexpected or untied:
        raise ValueError(f"weights do not fit the model (missing {untied[:3]}, unexpected {unexpected[:3]})")


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
