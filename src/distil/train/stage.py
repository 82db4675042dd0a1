"""Off-policy distillation: a live teacher's softened distributions train the student.

    distil train recipes/tiny.yaml              # fresh run into runs/NAME
    distil train recipes/tiny.yaml --resume     # continue from the newest checkpoint

Each optimizer step takes `grad_accum` micro-batches, divides their summed per-token loss
by the token count of all of them (a true token mean, whatever the micro-batch lengths),
clips, steps AdamW and the warm-up + cosine schedule. Checkpoints every `save_every`
steps hold all a resumed run needs to end with the same weights as an uninterrupted one.
With `signals.path` set, no teacher is loaded: each micro-batch's teacher top-k is read from
the signal store by sample id and the sparse losses are used (distil.capture).
"""

import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from transformers import get_cosine_schedule_with_warmup

from distil.data import (
    Example,
    batches_per_epoch,
    collate,
    encode_pairs,
    micro_batch_indices,
)
from distil.errors import CheckpointError, ModelError
from distil.fsutil import atomic_directory, atomic_write_json, atomic_write_text, move_aside
from distil.loading import load_models, load_splits
from distil.losses import (
    IGNORE_INDEX,
    Objective,
    TopKTeacher,
    fused_linear_loss,
    sparse_objective_per_token,
)
from distil.models import LoadedModel, linear_head_weight
from distil.progress import console, progress_bar
from distil.recipe import Recipe, dump_recipe
from distil.recipe.inputs import changed_fields, input_values, inputs_fingerprint
from distil.signals.recipe import training_signals
from distil.signals.training import StoredTeacher, topk_teacher
from distil.train.checkpoint import (
    TrainerState,
    capture_rng,
    checkpoint_fingerprint,
    checkpoint_inputs,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from distil.train.cross_tokenizer import CrossTokenizerTeacher, cross_tokenizer_teacher
from distil.train.trackers import accelerator_options, start_trackers


@dataclass
class TrainResult:
    """What a finished training stage leaves behind."""

    student_dir: Path
    steps: int
    tokens_seen: int
    final_loss: float | None
    """Loss of the last step; on a resumed finished run, the last logged one (None if none)."""
    elapsed_s: float


class DistillationStudent(torch.nn.Module):
    """The student as one module whose forward gives what the loss needs.

    On the fused path that is the final hidden states (B, T, H); otherwise logits (B, T, V).
    Wrapping it lets accelerate prepare (and DDP-wrap) the whole forward.
    """

    def __init__(self, model: torch.nn.Module, fused: bool) -> None:
        super().__init__()
        self.model, self.fused = model, fused

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return model_outputs(self.model, input_ids, attention_mask, self.fused)


def model_outputs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  hidden: bool) -> torch.Tensor:
    """Final hidden states (B, T, H) when `hidden`, else logits (B, T, V)."""
    if hidden:
        out = model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


@dataclass
class TrainingSession:
    """Everything a training run holds in memory."""

    accelerator: Accelerator
    recipe: Recipe
    student: LoadedModel
    teacher: LoadedModel | None
    module: Any  # the prepared DistillationStudent
    optimizer: Any
    scheduler: Any
    examples: list[Example]
    objective: Objective
    vocab: int
    fused: bool
    state: TrainerState
    signals: StoredTeacher | None = None
    """The teacher's stored top-k when the recipe trains from a signal store (no live teacher)."""
    cross: CrossTokenizerTeacher | None = None
    """A teacher of another tokenizer (cross_tokenizer.method), with its inputs and alignments."""


TRAIN_OUTPUTS = ("checkpoints", "student", "train_log.jsonl", "train_summary.json")
"""What the training stage writes in the run folder."""


def train_or_resume(recipe: Recipe, restart: bool = False) -> TrainResult:
    """Train, resuming the run's checkpoints when they were written under this recipe's
    training inputs. Checkpoints written under other inputs are refused (CheckpointError
    naming the changed fields) or, with `restart`, moved aside; never deleted."""
    found = list_checkpoints(recipe.run_dir / "checkpoints")
    if found and checkpoint_fingerprint(found[-1]) != recipe_fingerprint(recipe):
        if not restart:
            raise CheckpointError(_other_inputs_message(recipe, found[-1]))
        moved = move_aside(recipe.run_dir, TRAIN_OUTPUTS, "train")
        console.print(f"[yellow]earlier training moved to {moved}; training from scratch")
        found = []
    return train(recipe, resume=bool(found))


def _other_inputs_message(recipe: Recipe, checkpoint: Path) -> str:
    """What changed since `checkpoint` was written, and the user's two ways on."""
    old = checkpoint_inputs(checkpoint)
    changes = changed_fields(old, input_values(recipe, "train")) if old else []
    what = ("; ".join(changes) if changes else
            "written by an earlier distil, which did not record them")
    return (f"{checkpoint} was written under other training inputs ({what}); restore those "
            "values to resume it, pass --out DIR to start a new run elsewhere, or pass "
            "--restart to move the old checkpoints aside into RUN/previous/ and train afresh")


def train(recipe: Recipe, resume: bool = False) -> TrainResult:
    """Run (or resume) the training stage of `recipe`; return where the student is."""
    session = prepare_session(recipe)
    checkpoints = recipe.run_dir / "checkpoints"
    _restore_or_start(session, checkpoints, resume)
    start_trackers(session.accelerator, recipe)
    try:
        final_loss = _train_loop(session, checkpoints)
        if math.isnan(final_loss):  # no step ran: the run was finished already
            final_loss = _last_logged_loss(recipe.run_dir / "train_log.jsonl")
        return _finish(session, final_loss)
    finally:
        session.accelerator.end_training()


def _last_logged_loss(path: Path) -> float | None:
    """The loss of the log's last line, or None without one (the summary must stay JSON)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    loss = json.loads(lines[-1]).get("loss") if lines else None
    return loss if isinstance(loss, float | int) and math.isfinite(loss) else None


def prepare_session(recipe: Recipe) -> TrainingSession:
    """Load models and data, build optimizer and schedule; nothing is trained or written."""
    mixed = recipe.train.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(mixed_precision=mixed, **accelerator_options(recipe))
    set_seed(recipe.seed)
    from_store = recipe.signals.path is not None and recipe.distill.kd_weight > 0
    train_pairs, _ = load_splits(recipe.data, recipe.seed)  # bad data fails before any model loads
    teacher, student, vocab = load_models(
        recipe, accelerator.device, need_teacher=recipe.distill.kd_weight > 0 and not from_store)
    examples = encode_pairs(student.tokenizer, train_pairs, recipe.data.template,
                            recipe.data.max_length)
    cross_store = from_store and recipe.cross_tokenizer.method != "off"  # aligned below
    signals = training_signals(recipe, student) if from_store and not cross_store else None
    if signals is not None:
        signals.check_covers(examples)
        vocab = signals.vocab_size
    cross = cross_tokenizer_teacher(recipe, teacher, student, train_pairs, examples)
    fused = cross is None and _use_fused(recipe.distill.fused, student, teacher)
    student.model.train()
    optimizer = torch.optim.AdamW(student.model.parameters(), lr=recipe.train.learning_rate,
                                  weight_decay=recipe.train.weight_decay)
    total = total_steps(recipe, len(examples), accelerator.num_processes)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, round(recipe.train.warmup_ratio * total), total)
    module, optimizer = accelerator.prepare(DistillationStudent(student.model, fused), optimizer)
    d = recipe.distill
    objective = Objective(d.divergence, d.temperature, d.beta, d.alpha, d.kd_weight, d.ce_weight)
    state = TrainerState(total_steps=total, fingerprint=recipe_fingerprint(recipe),
                         inputs=input_values(recipe, "train"))
    return TrainingSession(accelerator, recipe, student, teacher, module, optimizer, scheduler,
                    examples, objective, vocab, fused, state, signals, cross)


def total_steps(recipe: Recipe, num_examples: int, world_size: int = 1) -> int:
    """Optimizer steps: `train.max_steps`, or enough for `train.epochs` passes."""
    if recipe.train.max_steps:
        return recipe.train.max_steps
    per_epoch = batches_per_epoch(num_examples, recipe.train.batch_size, world_size)
    return max(1, round(recipe.train.epochs * per_epoch / recipe.train.grad_accum))


def _use_fused(mode: str, student: LoadedModel, teacher: LoadedModel | None) -> bool:
    possible = linear_head_weight(student.model) is not None and (
        teacher is None or linear_head_weight(teacher.model) is not None)
    if mode == "always" and not possible:
        raise ModelError("distill.fused=always, but an output head is not a plain linear layer "
                         "(bias, scaling or soft-capping); set distill.fused=auto")
    return possible and mode != "never"


def recipe_fingerprint(recipe: Recipe) -> str:
    """Hash of the values of every recipe field the trained weights depend on."""
    return inputs_fingerprint(input_values(recipe, "train"))


def _restore_or_start(session: TrainingSession, checkpoints: Path, resume: bool) -> None:
    found = list_checkpoints(checkpoints)
    run_dir = session.recipe.run_dir
    for leftover in checkpoints.glob(".step-*"):  # from a run killed while saving
        shutil.rmtree(leftover, ignore_errors=True)
    if found and not resume:
        raise CheckpointError(f"{run_dir} already holds checkpoints (newest: {found[-1].name}); "
                              "pass --resume to continue that run, or --out DIR for a new one")
    if not found:
        if resume:
            console.print(f"[yellow]no checkpoint in {checkpoints}: starting from step 0")
        atomic_write_text(run_dir / "recipe.yaml", dump_recipe(session.recipe))
        (run_dir / "train_log.jsonl").unlink(missing_ok=True)
        return
    if checkpoint_fingerprint(found[-1]) != session.state.fingerprint:
        raise CheckpointError(_other_inputs_message(session.recipe, found[-1]))
    session.state = load_checkpoint(found[-1], _unwrap(session), session.optimizer,
                                    session.scheduler, session.accelerator.scaler,
                                    rank=session.accelerator.process_index)
    _truncate_log(run_dir / "train_log.jsonl", session.state.step)
    console.print(f"resuming from {found[-1].name} (step {session.state.step} of "
                  f"{session.state.total_steps})")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _unwrap(session: TrainingSession) -> Any:
    return session.accelerator.unwrap_model(session.module).model


def _train_loop(session: TrainingSession, checkpoints: Path) -> float:
    state, train_cfg = session.state, session.recipe.train
    window: list[float] = []
    last_loss = float("nan")
    with progress_bar("loss", "tok/s") as bar:
        task = bar.add_task("train", total=state.total_steps, completed=state.step,
                            loss="-", **{"tok/s": "-"})
        while state.step < state.total_steps:
            started = time.perf_counter()
            loss, tokens, grad_norm = _optimizer_step(session)
            spent = time.perf_counter() - started
            state.step += 1
            state.tokens_seen += tokens
            state.elapsed_s += spent
            window.append(loss)
            last_loss = loss
            bar.update(task, advance=1, loss=f"{loss:.4f}", **{"tok/s": f"{tokens / spent:,.0f}"})
            if state.step % train_cfg.log_every == 0 or state.step == state.total_steps:
                _log(session, sum(window) / len(window), grad_norm, tokens / spent)
                window.clear()
            if state.step % train_cfg.save_every == 0 or state.step == state.total_steps:
                _save(session, checkpoints)
    return last_loss


def _optimizer_step(session: TrainingSession) -> tuple[float, int, float]:
    """One optimizer step over `grad_accum` micro-batches; returns loss, tokens, grad norm."""
    batches = next_micro_batches(session)
    loss = accumulate_gradients(session, batches)
    grad_norm = float("nan")
    if session.recipe.train.max_grad_norm > 0:
        grad_norm = float(session.accelerator.clip_grad_norm_(
            session.module.parameters(), session.recipe.train.max_grad_norm))
    session.optimizer.step()
    session.scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    seen = sum(int(b["attention_mask"].sum()) for b in batches)
    if session.accelerator.num_processes > 1:  # each process holds its share of both
        totals = session.accelerator.reduce(
            torch.tensor([loss, float(seen)], dtype=torch.float64, device=session.accelerator.device),
            "sum")
        loss, seen = float(totals[0]), int(totals[1])
    return loss, seen, grad_norm


def next_micro_batches(session: TrainingSession) -> list[dict[str, torch.Tensor]]:
    """The `grad_accum` micro-batches of the next step, from the seeded order."""
    accelerator, recipe, state = session.accelerator, session.recipe, session.state
    batches = []
    for _ in range(recipe.train.grad_accum):
        rows = micro_batch_indices(state.micro_batch, len(session.examples),
                                   recipe.train.batch_size, recipe.seed,
                                   accelerator.process_index, accelerator.num_processes)
        state.micro_batch += 1
        chosen = [session.examples[i] for i in rows]
        batch = collate(chosen, session.student.tokenizer.pad_token_id)
        if session.signals is not None:
            batch.update(session.signals.lookup(chosen))
        if session.cross is not None:
            batch.update(session.cross.lookup(chosen))
        batches.append({k: v.to(accelerator.device) for k, v in batch.items()})
    return batches


def accumulate_gradients(session: TrainingSession, batches: list[dict[str, torch.Tensor]]) -> float:
    """Backward over all micro-batches of a step; the loss is their joint token mean.

    Each micro-batch's summed loss is divided by the token count of the whole step (over
    all processes), so uneven micro-batches weigh every token equally. DDP averages
    gradients over processes, hence the factor num_processes.
    """
    accelerator = session.accelerator
    local_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
    num_tokens = accelerator.reduce(torch.tensor(local_tokens, device=accelerator.device), "sum")
    total = 0.0
    for i, batch in enumerate(batches):
        sync = i == len(batches) - 1
        with nullcontext() if sync else accelerator.no_sync(session.module):
            loss = micro_batch_loss(session, batch, num_tokens) * accelerator.num_processes
            accelerator.backward(loss)
        total += loss.item() / accelerator.num_processes
    return total


def micro_batch_loss(session: TrainingSession, batch: dict[str, torch.Tensor],
                     num_tokens: torch.Tensor) -> torch.Tensor:
    """Summed per-token loss of one micro-batch divided by the step's token count."""
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    targets = labels[mask]  # (N,)
    student_out = session.module(batch["input_ids"], batch["attention_mask"])[:, :-1][mask]
    if session.cross is not None:
        values = session.cross.per_token(session.objective, student_out, targets, batch)
        return values.sum() / num_tokens
    teacher_out: torch.Tensor | TopKTeacher | None = None
    if session.signals is not None:
        teacher_out = topk_teacher(batch)  # (N, k) stored top-k, aligned with student_out
    elif session.teacher is not None:
        with torch.no_grad():
            teacher_out = model_outputs(session.teacher.model, batch["input_ids"],
                                        batch["attention_mask"], session.fused)[:, :-1][mask]
    if session.fused:
        values = _fused_values(session, student_out, teacher_out, targets)
    elif isinstance(teacher_out, TopKTeacher):
        values = sparse_objective_per_token(session.objective, student_out[:, :session.vocab],
                                            teacher_out, targets)
    else:
        vocab = session.vocab
        values = session.objective.per_token(
            student_out[:, :vocab], None if teacher_out is None else teacher_out[:, :vocab],
            targets)
    return values.sum() / num_tokens


def _fused_values(session: TrainingSession, student_hidden: torch.Tensor,
                  teacher_out: torch.Tensor | TopKTeacher | None,
                  targets: torch.Tensor) -> torch.Tensor:
    vocab, objective = session.vocab, session.objective
    stored = teacher_out if isinstance(teacher_out, TopKTeacher) else None
    teacher_hidden = None if stored is not None else teacher_out
    student_weight = linear_head_weight(_unwrap(session))[:vocab]
    teacher_weight = (None if session.teacher is None
                      else linear_head_weight(session.teacher.model)[:vocab])

    def per_token(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  rows: slice) -> torch.Tensor:
        if stored is not None:
            return sparse_objective_per_token(objective, student_logits, stored.rows(rows),
                                              targets[rows])
        teacher = teacher_logits if teacher_hidden is not None else None
        return objective.per_token(student_logits, teacher, targets[rows])

    return fused_linear_loss(student_hidden, student_weight, teacher_hidden, teacher_weight,
                             per_token, chunk_size=session.recipe.distill.chunk_size)


def _log(session: TrainingSession, loss: float, grad_norm: float, tokens_per_s: float) -> None:
    if not session.accelerator.is_main_process:
        return
    record = {"step": session.state.step, "loss": round(loss, 6),
              "lr": session.scheduler.get_last_lr()[0], "grad_norm": round(grad_norm, 6),
              "tokens_per_s": round(tokens_per_s, 1),
              "elapsed_s": round(session.state.elapsed_s, 3)}
    path = session.recipe.run_dir / "train_log.jsonl"
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    session.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])


def _save(session: TrainingSession, checkpoints: Path) -> None:
    accelerator = session.accelerator
    accelerator.wait_for_everyone()
    rng_states = [capture_rng()]  # every process's, so that each can resume its own
    if accelerator.num_processes > 1:
        rng_states = gather_object(rng_states)
    if accelerator.is_main_process:
        save_checkpoint(checkpoints, session.state, _unwrap(session), session.student.tokenizer,
                        session.optimizer, session.scheduler, accelerator.scaler,
                        rng_states=rng_states, keep=session.recipe.train.keep_checkpoints)
    accelerator.wait_for_everyone()


def _finish(session: TrainingSession, final_loss: float | None) -> TrainResult:
    run_dir, state = session.recipe.run_dir, session.state
    student_dir = run_dir / "student"
    if session.accelerator.is_main_process:
        with atomic_directory(student_dir) as tmp:
            _unwrap(session).save_pretrained(tmp, safe_serialization=True)
            session.student.tokenizer.save_pretrained(tmp)
        result = TrainResult(student_dir, state.step, state.tokens_seen, final_loss,
                             state.elapsed_s)
        atomic_write_json(run_dir / "train_summary.json",
                          {**asdict(result), "student_dir": str(student_dir),
                           "fused": session.fused, "teacher": session.recipe.teacher.model,
                           "signals": None if session.signals is None
                           else str(session.signals.store.path),
                           "student": session.recipe.student.model})
    return TrainResult(student_dir, state.step, state.tokens_seen, final_loss, state.elapsed_s)
