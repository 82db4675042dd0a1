"""Whether a model keeps packed rows apart (train.packing), checked once before training.

    check_packing(student.model, "student")     # ModelError when its attention crosses rows

A packed batch (distil.batching.pack) hands the model position ids that restart with every row
and no attention mask. transformers' attention for the Llama family (and the others built on
its mask functions: eager, sdpa, flex, and flash attention's variable-length path) reads
those restarts as row boundaries when it runs without a KV cache, as training does
(`use_cache=False`); a model whose attention does not would let each row see the rows
before it, silently. So each model is asked once: two random rows end to end must
give the second row the logits it gets alone, far closer than when the rows are let
see each other.
"""

from typing import Any

import torch

from distil.errors import ModelError

FIRST, SECOND = 5, 4
"""Tokens of the two probe rows."""
APART = 0.05
"""Largest distance from the row alone, as a share of the distance when the rows see each
other, at which a model counts as keeping them apart (float32: about 1e-7; bf16: about 1e-2)."""


def check_packing(model: Any, role: str) -> None:
    """ModelError, naming the model and the fix, unless it keeps packed rows apart."""
    if not keeps_rows_apart(model):
        attention = getattr(model.config, "_attn_implementation", "unknown")
        raise ModelError(
            f"train.packing: the {role} ({type(model).__name__}, {attention} "
            "attention) lets packed rows attend to each other (its attention does "
            "not follow restarting position ids); set train.packing=false"
        )


@torch.no_grad()
def keeps_rows_apart(model: Any) -> bool:
    """Whether `model` gives a row packed behind another the logits it gives the row alone.
    Runs in eval mode (restored after); the probe's tokens come from their own generator."""
    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().num_embeddings
    tokens = torch.randint(vocab, (1, FIRST + SECOND), generator=torch.Generator().manual_seed(0))
    tokens = tokens.to(device)
    positions = torch.cat([torch.arange(FIRST), torch.arange(SECOND)]).unsqueeze(0).to(device)
    training = model.training
    model.eval()
    try:
        alone = model(input_ids=tokens[:, FIRST:], use_cache=False).logits.float()
        packed = model(input_ids=tokens, position_ids=positions, use_cache=False).logits[:, FIRST:].float()
        crossed = model(input_ids=tokens, use_cache=False).logits[:, FIRST:].float()
    finally:
        model.train(training)
    return bool((packed - alone).abs().max() <= APART * (crossed - alone).abs().max())
