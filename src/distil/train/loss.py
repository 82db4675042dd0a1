"""The loss of one optimizer step: the joint token mean over its micro-batches.

    losses = accumulate_losses(session, batches)     # backward over each; device tensors
    loss = accumulate_gradients(session, batches)    # the same, read on the host

Each micro-batch's loss is what its grader (distil.train.signals) sums over its response
tokens, divided by the token count of the whole step over all processes, so uneven
micro-batches (and processes) weigh every token equally.
"""

import torch

from distil.train.batch import Batch
from distil.train.session import TrainingSession
from distil.train.step import response_rows, response_tokens, step_loss


def accumulate_gradients(session: TrainingSession, batches: list[Batch]) -> float:
    """`accumulate_losses`, with the step's loss read on the host."""
    losses = accumulate_losses(session, batches)
    return step_loss(torch.stack(losses).tolist(), session.accelerator.num_processes)


def accumulate_losses(session: TrainingSession, batches: list[Batch]) -> list[torch.Tensor]:
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


def micro_batch_loss(session: TrainingSession, batch: Batch, num_tokens: torch.Tensor) -> torch.Tensor:
    """Summed per-token loss of one micro-batch divided by the step's token count."""
    out = session.module(**batch.model_inputs())  # (B, T, H) fused, else (B, T, V)
    student_out = response_rows(out, batch.token_index)  # (N, H) or (N, V)
    return batch.grader.loss(student_out, batch) / num_tokens
