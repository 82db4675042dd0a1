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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
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
from distil.train import engine
from distil.train.checkpoint import (
    TrainerState,
    checkpoint_fingerprint,
    checkpoint_inputs,
    list_checkpoints,
    load_checkpoint,
)
from distil.train.cross_tokenizer import CrossTokenizerTeacher, cross_tokenizer_teacher
from distil.train.hidden import HiddenMatcher, build_matcher, outputs_and_states
from distil.train.onpolicy import ON_POLICY_KEY, on_policy_batch, on_policy_turn
from distil.train.onpolicy_api import ScoringOnPolicyTeacher
from distil.train.step import (
    LossWindow,
    autocast_head,
    chunk_objective,
    compile_module,
    head_dtype,
    make_optimizer,
    pad_to_multiple,
    response_index,
    response_rows,
    response_tokens,
    step_loss,
    teacher_mode,
    use_compile,
)
from distil.train.students import adapt_student, finished_student
from distil.train.trackers import start_trackers


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
    Wrapping it lets accelerate prepare (and DDP-wrap) the whole forward. With a `hidden`
    matcher the forward also leaves the matched, projected states in `states`.
    """

    def __init__(self, model: torch.nn.Module, fused: bool,
                 hidden: HiddenMatcher | None = None) -> None:
        super().__init__()
        self.model, self.fused, self.hidden = model, fused, hidden
        self.states: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.hidden is None:
            return model_outputs(self.model, input_ids, attention_mask, self.fused)
        out, states = outputs_and_states(self.model, input_ids, attention_mask, self.fused)
        self.states = self.hidden.project(states)
        return out


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
    hidden: HiddenMatcher | None = None
    """The hidden-state term's layer map and projections (distill.hidden), if any."""
    cross: CrossTokenizerTeacher | None = None
    """A teacher of another tokenizer (cross_tokenizer.method), with its inputs and alignments."""
    scorer: ScoringOnPolicyTeacher | None = None
    """The teacher behind an API that scores the on-policy samples (distill.on_policy), if any."""

    def close(self) -> None:
        """Release what the session holds open (the API teacher and its journal)."""
        if self.scorer is not None:
            self.scorer.close()


TRAIN_OUTPUTS = ("checkpoints", "student", "train_log.jsonl", "train_summary.json")
"""What the training stage writes in the run folder."""


def train_or_resume(recipe: Recipe, restart: bool = False) -> TrainResult:
    """Train, resuming the run's checkpoints when they were written under this recipe's
    training inputs. Checkpoints written under other inputs are refused (CheckpointError
    naming the changed fields) or, with `restart`, moved aside; never deleted."""
    return train(recipe, resume=resumable(recipe, restart))


def resumable(recipe: Recipe, restart: bool = False) -> bool:
    """Whether the run has checkpoints to resume (see train_or_resume; moves them aside, or
    refuses them, when they were written under other training inputs)."""
    found = list_checkpoints(recipe.run_dir / "checkpoints")
    if found and checkpoint_fingerprint(found[-1]) != recipe_fingerprint(recipe):
        if not restart:
            raise CheckpointError(_other_inputs_message(recipe, found[-1]))
        moved = move_aside(recipe.run_dir, TRAIN_OUTPUTS, "train")
        console.print(f"[yellow]earlier training moved to {moved}; training from scratch")
        found = []
    return bool(found)


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
        session.close()


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
    accelerator = Accelerator(mixed_precision=mixed, **engine.accelerator_kwargs(recipe))
    set_seed(recipe.seed)
    engine.check_supported(accelerator, recipe)
    from_store = recipe.signals.path is not None and recipe.distill.kd_weight > 0
    train_pairs, _ = load_splits(recipe.data, recipe.seed)  # bad data fails before any model loads
    scored = recipe.teacher.api is not None  # on-policy samples scored through the API
    live = recipe.distill.hidden.weight > 0 or (recipe.distill.on_policy.lmbda > 0 and not scored)
    teacher, student, vocab = load_models(
        recipe, accelerator.device,
        need_teacher=live or (recipe.distill.kd_weight > 0 and not from_store))
    student = adapt_student(student, recipe.student)
    teacher = engine.place_teacher(accelerator, teacher, recipe.teacher.placement)
    examples = encode_pairs(student.tokenizer, train_pairs, recipe.data.template,
                            recipe.data.max_length)
    cross_store = from_store and recipe.cross_tokenizer.method != "off"  # aligned below
    signals = training_signals(recipe, student) if from_store and not cross_store else None
    if signals is not None:
        signals.check_covers(examples)
        vocab = signals.vocab_size
    cross = cross_tokenizer_teacher(recipe, teacher, student, train_pairs, examples)
    fused = cross is None and engine.fused_allowed(
        accelerator, _use_fused(recipe.distill.fused, student, teacher), recipe.distill.fused)
    student.model.train()
    hidden = build_matcher(recipe.distill.hidden, student.model, teacher and teacher.model)
    trained = DistillationStudent(student.model, fused, hidden)
    optimizer = make_optimizer([p for p in trained.parameters() if p.requires_grad],
                               recipe.train.learning_rate, recipe.train.weight_decay,
                               accelerator.device)
    total = total_steps(recipe, len(examples), accelerator.num_processes)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, round(recipe.train.warmup_ratio * total), total)
    if use_compile(recipe.train.compile, accelerator.device):
        compile_module(trained)
    module, optimizer = accelerator.prepare(trained, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    d = recipe.distill
    objective = Objective(d.divergence, d.temperature, d.beta, d.alpha, d.kd_weight, d.ce_weight)
    state = TrainerState(total_steps=total, fingerprint=recipe_fingerprint(recipe),
                         inputs=input_values(recipe, "train"))
    scorer = None
    if scored and recipe.distill.on_policy.lmbda > 0:
        scorer = ScoringOnPolicyTeacher.open(recipe, train_pairs, student.tokenizer, vocab,
                                             accelerator.process_index)
    return TrainingSession(accelerator, recipe, student, teacher, module, optimizer, scheduler,
                    examples, objective, vocab, fused, state, signals, hidden, cross, scorer)


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
    if mode == "auto" and not possible:
        console.print("[yellow]an output head is not a plain linear layer (bias, logit scaling "
                      "or soft-capping, e.g. Gemma 2): training uses the unfused loss, on the "
                      "logits the model itself computes")
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
    if engine.has_state(found[-1]):
        session.state = engine.load_state_checkpoint(session.accelerator, found[-1])
    else:  # written by an earlier distil
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
    window = LossWindow(session.accelerator.num_processes)
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
            window.add(loss)  # device tensors: read on the host at logging steps only
            bar.update(task, advance=1, **{"tok/s": f"{tokens / spent:,.0f}"})
            if state.step % train_cfg.log_every == 0 or state.step == state.total_steps:
                losses = window.read()
                last_loss = losses[-1]
                bar.update(task, loss=f"{last_loss:.4f}")
                _log(session, sum(losses) / len(losses), float(grad_norm), tokens / spent)
            if state.step % train_cfg.save_every == 0 or state.step == state.total_steps:
                _save(session, checkpoints)
    return last_loss


def _optimizer_step(session: TrainingSession) -> tuple[list[torch.Tensor] | float, int, Any]:
    """One optimizer step over `grad_accum` micro-batches; returns its micro-batch losses (device
    tensors; one reduced float across processes), tokens seen and the gradient norm (a tensor)."""
    batches = next_micro_batches(session)
    loss: list[torch.Tensor] | float = accumulate_losses(session, batches)
    grad_norm: Any = float("nan")
    if session.recipe.train.max_grad_norm > 0:
        norm = session.accelerator.clip_grad_norm_(session.module.parameters(),
                                                   session.recipe.train.max_grad_norm)
        grad_norm = float("nan") if norm is None else norm  # None: DeepSpeed clips itself
    session.optimizer.step()
    session.scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    seen = sum(int(b["positions"]) for b in batches)  # counted on the host before the copy
    if session.accelerator.num_processes > 1:  # each process holds its share of both
        loss = step_loss(torch.stack(loss).tolist(), session.accelerator.num_processes)
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
        on_policy = recipe.distill.on_policy
        if on_policy_turn(on_policy.lmbda, recipe.seed, state.micro_batch - 1):
            batch = on_policy_batch(_unwrap(session), session.student.tokenizer, chosen, on_policy,
                                    recipe.data.max_length, recipe.seed, state.micro_batch - 1,
                                    session.scorer)
        else:
            batch = collate(chosen, session.student.tokenizer.pad_token_id)
            if session.signals is not None:
                batch.update(session.signals.lookup(chosen))
            if session.cross is not None:
                batch.update(session.cross.lookup(chosen))
        batch = pad_to_multiple(batch, recipe.train.pad_multiple,
                                session.student.tokenizer.pad_token_id)
        batch["token_index"] = response_index(batch)  # on the CPU: no device read later
        moved = {k: v.to(accelerator.device) for k, v in batch.items()}
        moved["positions"] = batch["attention_mask"].sum()  # stays on the CPU
        batches.append(moved)
    return batches


def accumulate_gradients(session: TrainingSession, batches: list[dict[str, torch.Tensor]]) -> float:
    """`accumulate_losses`, with the step's loss read on the host."""
    losses = accumulate_losses(session, batches)
    return step_loss(torch.stack(losses).tolist(), session.accelerator.num_processes)


def accumulate_losses(session: TrainingSession,
                      batches: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """Backward over all micro-batches of a step; the loss is their joint token mean.

    Each micro-batch's summed loss is divided by the token count of the whole step (over
    all processes), so uneven micro-batches weigh every token equally. DDP averages
    gradients over processes, hence the factor num_processes; accelerate divides each
    micro-batch's loss by the accumulation steps, hence the factor grad_accum.
    `accelerator.accumulate` syncs gradients on the step's last micro-batch only. Returns
    each micro-batch's loss (times num_processes) as a detached device tensor: nothing is
    read on the host.
    """
    accelerator = session.accelerator
    num_tokens = accelerator.reduce(response_tokens(batches), "sum")
    losses = []
    for batch in batches:
        with accelerator.accumulate(session.module):
            loss = micro_batch_loss(session, batch, num_tokens) * accelerator.num_processes
            accelerator.backward(loss * accelerator.gradient_accumulation_steps)
        losses.append(loss.detach())
    return losses


def micro_batch_loss(session: TrainingSession, batch: dict[str, torch.Tensor],
                     num_tokens: torch.Tensor) -> torch.Tensor:
    """Summed per-token loss of one micro-batch divided by the step's token count."""
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX  # (B, T - 1), for the hidden-state term
    index = batch["token_index"] if "token_index" in batch else response_index(batch)
    on_policy = ON_POLICY_KEY in batch  # the student's own tokens: no hard-label term there
    targets = batch["labels"].flatten()[index + 1]  # (N,): the next token at each position
    if on_policy:
        targets = torch.full_like(targets, IGNORE_INDEX)
    student_out = response_rows(session.module(batch["input_ids"], batch["attention_mask"]), index)
    if session.cross is not None:  # spans of a teacher of another tokenizer (never fused)
        values = session.cross.per_token(session.objective, student_out, targets, batch)
        return values.sum() / num_tokens
    teacher_out: torch.Tensor | TopKTeacher | None = None
    teacher_states: tuple[torch.Tensor, ...] = ()
    if "teacher_ids" in batch:  # stored, or an API teacher's scores of on-policy samples
        teacher_out = topk_teacher(batch)  # (N, k) top-k, aligned with student_out
    elif session.teacher is not None:
        # inference_mode, unless hidden states are matched (their loss saves them for backward)
        with teacher_mode() if session.hidden is None else torch.no_grad():
            teacher_all, teacher_states = outputs_and_states(
                session.teacher.model, batch["input_ids"], batch["attention_mask"], session.fused,
                states=session.hidden is not None)
        teacher_out = response_rows(teacher_all, index)  # gathered outside: a normal tensor
    if session.fused:  # the summed loss, computed with its gradients in one pass
        total = _fused_values(session, student_out, teacher_out, targets)
        if session.hidden is not None:
            states = session.accelerator.unwrap_model(session.module).states
            total = total + session.hidden.per_token(states, teacher_states, mask).sum()
        return total / num_tokens
    if isinstance(teacher_out, TopKTeacher):
        values = sparse_objective_per_token(session.objective, student_out[:, :session.vocab],
                                            teacher_out, targets)
    else:
        vocab = session.vocab
        values = session.objective.per_token(
            student_out[:, :vocab], None if teacher_out is None else teacher_out[:, :vocab],
            targets)
    if session.hidden is not None:
        states = session.accelerator.unwrap_model(session.module).states
        values = values + session.hidden.per_token(states, teacher_states, mask)
    return values.sum() / num_tokens


def _fused_values(session: TrainingSession, student_hidden: torch.Tensor,
                  teacher_out: torch.Tensor | TopKTeacher | None,
                  targets: torch.Tensor) -> torch.Tensor:
    vocab, objective = session.vocab, session.objective
    stored = teacher_out if isinstance(teacher_out, TopKTeacher) else None
    teacher_hidden = None if stored is not None else teacher_out
    dtype = head_dtype(session.accelerator.mixed_precision)
    student_hidden = autocast_head(student_hidden, dtype)
    student_weight = autocast_head(linear_head_weight(_unwrap(session))[:vocab], dtype)
    teacher_weight = (None if session.teacher is None or stored is not None
                      else linear_head_weight(session.teacher.model)[:vocab])

    loss_of = chunk_objective(objective, stored is not None,
                              use_compile(session.recipe.train.compile, session.accelerator.device))

    def per_token(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  rows: slice) -> torch.Tensor:
        if stored is not None:
            return loss_of(student_logits, stored.rows(rows), targets[rows])
        teacher = teacher_logits if teacher_hidden is not None else None
        return loss_of(student_logits, teacher, targets[rows])

    return fused_linear_loss(student_hidden, student_weight, teacher_hidden, teacher_weight,
                             per_token, chunk_size=session.recipe.distill.chunk_size,
                             reduction="sum")


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
    session.accelerator.wait_for_everyone()
    engine.save_state_checkpoint(session.accelerator, checkpoints, session.state,
                                 session.recipe.train.keep_checkpoints)


def _finish(session: TrainingSession, final_loss: float | None) -> TrainResult:
    run_dir, state = session.recipe.run_dir, session.state
    student_dir = run_dir / "student"
    gathered = engine.gathered_student_state(session.accelerator, session.module)
    if session.accelerator.is_main_process:
        with atomic_directory(student_dir) as tmp:
            finished_student(_unwrap(session)).save_pretrained(tmp, safe_serialization=True,
                                                               state_dict=gathered)
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
