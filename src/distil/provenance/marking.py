"""Marking a model's distributions: the KGW bias as a callable over contexts.

    bias = KGWBias(key, spec, vocab_size)
    logits = logits + bias(input_ids)            # input_ids (N, T) -> (N, V): +delta on green

`LocalTeacher.logit_bias` takes one of these: generation (sampled and greedy) then draws
from the marked distribution, and the logprobs it returns are those of the marked
distribution at temperature 1.
"""

import torch

from distil.provenance.greenlist import WatermarkKey, WatermarkSpec, green_bias


class KGWBias:
    """+delta on the green tokens after the last `context_width` tokens of each row."""

    def __init__(self, key: WatermarkKey, spec: WatermarkSpec, vocab_size: int) -> None:
        self.key, self.spec, self.vocab_size = key, spec, vocab_size

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (N, T>=context_width) -> (N, V) float32 bias."""
        return green_bias(self.key, self.spec, input_ids, self.vocab_size)

    def __repr__(self) -> str:
        return f"KGWBias({self.spec}, vocab_size={self.vocab_size})"
