"""Marking a model's distributions: the KGW bias, and the exp-min sampler, as callables over contexts.

    bias = KGWBias(key, spec, vocab_size)
    logits = logits + bias(input_ids)            # input_ids (N, T) -> (N, V): +delta on green

    sample = ExpMinSampler(key, spec)
    next_tokens = sample(input_ids, scores)      # (N,): the keyed draw from softmax(scores)

`LocalTeacher.logit_bias` takes a `KGWBias`: generation (sampled and greedy) then draws
from the marked distribution, and the logprobs it returns are those of the marked
distribution at temperature 1. An `ExpMinSampler` replaces the random draw of sampled
generation only (`distil.server.expmin`): scores are those after temperature and top-p, and
the distribution itself is left as it is.
"""

import numpy as np
import torch

from distil.provenance.exponential import exp_min_choice
from distil.provenance.greenlist import context_seeds, green_bias
from distil.provenance.spec import WatermarkError, WatermarkKey, WatermarkSpec


class KGWBias:
    """+delta on the green tokens after the last `context_width` tokens of each row."""

    def __init__(self, key: WatermarkKey, spec: WatermarkSpec, vocab_size: int) -> None:
        self.key, self.spec, self.vocab_size = key, spec, vocab_size

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (N, T>=context_width) -> (N, V) float32 bias."""
        return green_bias(self.key, self.spec, input_ids, self.vocab_size)

    def __repr__(self) -> str:
        return f"KGWBias({self.spec}, vocab_size={self.vocab_size})"


class ExpMinSampler:
    """The exp-min draw of the next token after the last `context_width` tokens of each row."""

    def __init__(self, key: WatermarkKey, spec: WatermarkSpec) -> None:
        self.key, self.spec = key, spec

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """input_ids (N, T>=context_width) long, scores (N, V) logits of the distribution to
        draw from (-inf: excluded) -> (N,) long token ids on the scores' device."""
        width = self.spec.context_width
        if input_ids.shape[1] < width:
            raise WatermarkError(f"a context needs {width} tokens, got {input_ids.shape[1]}")
        seeds = context_seeds(self.key, input_ids[:, -width:].detach().cpu().numpy())
        log_probs = torch.log_softmax(scores.detach().double(), dim=-1).cpu().numpy()  # (N, V)
        chosen = exp_min_choice(seeds, log_probs)
        return torch.from_numpy(chosen.astype(np.int64)).to(scores.device)

    def __repr__(self) -> str:
        return f"ExpMinSampler(context_width={self.spec.context_width})"
