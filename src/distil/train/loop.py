"""The training loop: optimizer steps over seeded micro-batches, logging and checkpoints.

    final_loss = train_loop(session, RUN / "checkpoints")   # from session.state.step to the end

Each optimizer step takes `grad_accum` micro-batches from the session's signal (their rows
in a seeded order, in memory or streamed: distil.train.rows), backpropagates their joint
token-mean loss (distil.train.loss), clips, steps AdamW and the learning-rate schedule
(distil.train.schedule). Losses stay device tensors until a logging step reads them
(distil.train.step.LossWindow); every `eval_every` steps the held-out figures
(distil.train.heldout) join that step's log line; checkpoints every `save_every` steps hold
all a resumed run needs to end with the same weights as an uninterrupted one (and a LoRA
student's adapters as a PEFT folder).
"""

import json
import time
from pathlib import Path
from typing import Any

import torch

from distil.fsutil import append_text
from distil.progress import progress_bar
from distil.train import engine
from distil.train.adapters import has_adapters, save_adapter
from distil.train.batch import Batch
from distil.train.loss import accumulate_losses
from distil.train.session import TrainingSession
from distil.train.step import LossWindow, step_loss


def train_loop(session: TrainingSession, checkpoints: Path) -> float:
    """Run the remaining steps; the last logged loss (NaN when no step ran)."""
    state, train_cfg = session.state, session.recipe.train
    window = LossWindow(session.accelerator.num_processes)
    last_loss = float("nan")
    with progress_bar("loss", "tok/s") as bar:
        task = bar.add_task(
            "train", total=state.total_steps, completed=state.step, loss="-", **{"tok/s": "-"}
        )
        while state.step < state.total_steps:
            started = time.perf_counter()
            loss, tokens, grad_norm = optimizer_step(session)
            spent = time.perf_counter() - started
            state.step += 1
            state.tokens_seen += tokens
            state.elapsed_s += spent
            window.add(loss)  # device tensors: read on the host at logging steps only
            bar.update(task, advance=1, **{"tok/s": f"{tokens / spent:,.0f}"})
            held_out = held_out_figures(session)
            if held_out or state.step % train_cfg.log_every == 0 or state.step == state.total_steps:
                losses = window.read()
                last_loss = losses[-1]
                bar.update(task, loss=f"{last_loss:.4f}")
                _log(session, sum(losses) / len(losses), float(grad_norm), tokens / spent, held_out)
            if state.step % train_cfg.save_every == 0 or state.step == state.total_steps:
                _save(session, checkpoints)
    return last_loss


def optimizer_step(session: TrainingSession) -> tuple[list[torch.Tensor] | float, int, Any]:
    """One optimizer step over `grad_accum` micro-batches; returns its micro-batch losses (device
    tensors; one reduced float across processes), tokens seen and the gradient norm (a tensor)."""
    batches = next_micro_batches(session)
    loss: list[torch.Tensor] | float = accumulate_losses(session, batches)
    grad_norm: Any = float("nan")
    if session.recipe.train.max_grad_norm > 0:
        norm = session.accelerator.clip_grad_norm_(
            session.module.parameters(), session.recipe.train.max_grad_norm
        )
        grad_norm = float("nan") if norm is None else norm  # None: DeepSpeed clips itself
    session.optimizer.step()
    session.scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    seen = sum(int(b.positions) for b in batches)  # counted on the host before the copy
    if session.accelerator.num_processes > 1:  # each process holds its share of both
        loss = step_loss(torch.stack(loss).tolist(), session.accelerator.num_processes)
        totals = session.accelerator.reduce(
            torch.tensor([loss, float(seen)], dtype=torch.float64, device=session.accelerator.device), "sum"
        )
        loss, seen = float(totals[0]), int(totals[1])
    return loss, seen, grad_norm


def next_micro_batches(session: TrainingSession) -> list[Batch]:
    """The `grad_accum` micro-batches of the next step, from the seeded order."""
    state, batches = session.state, []
    for _ in range(session.recipe.train.grad_accum):
        number = state.micro_batch
        state.micro_batch += 1
        batches.append(session.signal.batch(session.rows.micro_batch(number), number))
    return batches


def held_out_figures(session: TrainingSession) -> dict[str, float]:
    """The held-out figures at an `eval_every` step (and the last), else none. Every process
    evaluates (a sharded student's forward needs them all); the main one logs."""
    step, every = session.state.step, session.recipe.train.eval_every
    if (
        session.held_out is None
        or every is None
        or not (step % every == 0 or step == session.state.total_steps)
    ):
        return {}
    return session.held_out.evaluate(session.module)


def _log(
    session: TrainingSession, loss: float, grad_norm: float, tokens_per_s: float, held_out: dict[str, float]
) -> None:
    if not session.accelerator.is_main_process:
        return
    record = {
        "step": session.state.step,
        "loss": round(loss, 6),
        "lr": session.scheduler.get_last_lr()[0],
        "grad_norm": round(grad_norm, 6),
        "tokens_per_s": round(tokens_per_s, 1),
        "elapsed_s": round(session.state.elapsed_s, 3),
        **held_out,
    }
    append_text(session.recipe.run_dir / "train_log.jsonl", json.dumps(record) + "\n")
    scalars = {k: v for k, v in record.items() if k != "step"}
    session.accelerator.log(scalars, step=record["step"])
    session.callbacks.log(record["step"], scalars)
    if held_out:
        session.callbacks.evaluate(record["step"], held_out)


def _save(session: TrainingSession, checkpoints: Path) -> None:
    session.accelerator.wait_for_everyone()
    saved = engine.save_state_checkpoint(
        session.accelerator, checkpoints, session.state, session.recipe.train.keep_checkpoints
    )
    model = session.unwrapped()
    if not session.accelerator.is_main_process:
        return
    if has_adapters(model):
        save_adapter(model, saved / "adapter", session.recipe.student)
    session.callbacks.save(session.state.step, saved)
