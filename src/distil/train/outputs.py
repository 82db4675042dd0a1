"""What a finished training leaves in the run folder: RUN/student, RUN/adapter and
train_summary.json.

    result = finish(session, final_loss)     # every process calls it; the main one writes

The student is saved whole (adapters merged, shards gathered) in Hugging Face format with
its tokenizer and model card (distil.hub), into a folder that appears in one rename. A LoRA
student's adapters are first saved alone as a PEFT folder, RUN/adapter
(distil.train.adapters); with student.lora.save_merged: false that is all. The summary
says how far training went and from what (teacher, signal store, student).
"""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from distil.fsutil import atomic_directory, atomic_write_json
from distil.hub import write_model_card
from distil.train import engine
from distil.train.adapters import has_adapters, save_adapter
from distil.train.session import TrainingSession
from distil.train.students import finished_student


@dataclass
class TrainResult:
    """What a finished training stage leaves behind."""

    student_dir: Path | None
    """RUN/student; None when only the adapter was saved (student.lora.save_merged: false)."""
    adapter_dir: Path | None
    """RUN/adapter, the LoRA adapters as a PEFT folder; None without student.lora."""
    steps: int
    tokens_seen: int
    final_loss: float | None
    """Loss of the last step; on a resumed finished run, the last logged one (None if none)."""
    elapsed_s: float


def finish(session: TrainingSession, final_loss: float | None) -> TrainResult:
    """Save RUN/adapter, RUN/student and RUN/train_summary.json (main process); the run's
    result."""
    run_dir, state = session.recipe.run_dir, session.state
    lora = session.recipe.student.lora
    adapter_dir = run_dir / "adapter" if lora is not None else None
    student_dir = run_dir / "student" if lora is None or lora.save_merged else None
    gathered = engine.gathered_student_state(session.accelerator, session.module)
    result = TrainResult(student_dir, adapter_dir, state.step, state.tokens_seen, final_loss, state.elapsed_s)
    if session.accelerator.is_main_process:
        _save_models(session, adapter_dir, student_dir, gathered)
        store = session.signal.store
        atomic_write_json(
            run_dir / "train_summary.json",
            {
                **asdict(result),
                "student_dir": _text(student_dir),
                "adapter_dir": _text(adapter_dir),
                "fused": session.fused,
                "engine": engine.engine_summary(session.accelerator),
                "teacher": session.recipe.teacher.model,
                "signals": None if store is None else str(store),
                "signal_positions": session.signal_positions,
                "student": session.recipe.student.model,
            },
        )
    return result


def _save_models(
    session: TrainingSession, adapter_dir: Path | None, student_dir: Path | None, gathered: dict | None
) -> None:
    """The adapter (before the merge undoes it), then the merged student."""
    model = session.unwrapped()
    if adapter_dir is not None and has_adapters(model):
        save_adapter(model, adapter_dir, session.recipe.student)
    if student_dir is None:
        return
    with atomic_directory(student_dir) as tmp:
        finished_student(model).save_pretrained(tmp, safe_serialization=True, state_dict=gathered)
        session.student.tokenizer.save_pretrained(tmp)
        write_model_card(tmp, session.recipe.run_dir)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def last_logged_loss(path: Path) -> float | None:
    """The loss of the log's last line, or None without one (the summary must stay JSON)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    loss = json.loads(lines[-1]).get("loss") if lines else None
    return loss if isinstance(loss, float | int) and math.isfinite(loss) else None
