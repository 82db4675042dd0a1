"""Make a shallower student from a deeper model by keeping some of its decoder layers.

    student = keep_layers(teacher_copy, [0, 5])   # first and last of 6 layers

The student starts from the teacher's embeddings, head and chosen layers (as DistilBERT
did), so distillation repairs a close copy instead of learning from scratch.
"""

import torch
from transformers import PreTrainedModel

from distil.errors import ModelError


def keep_layers(model: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """Keep only `layers` (0-based, in that order) of the decoder stack, in place."""
    decoder = model.base_model
    blocks = getattr(decoder, "layers", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise ModelError(
            f"{type(model).__name__} has no `layers` stack to select from; "
            "student.layers works with Llama-style decoders"
        )
    depth = len(blocks)
    if not layers or len(set(layers)) != len(layers) or not all(0 <= i < depth for i in layers):
        raise ModelError(
            f"student.layers={layers} must list distinct layer numbers in "
            f"0..{depth - 1} (the model has {depth} layers)"
        )
    decoder.layers = torch.nn.ModuleList(blocks[i] for i in layers)
    for position, block in enumerate(decoder.layers):
        attention = getattr(block, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = position  # the KV cache is indexed by position in the stack
    config = model.config
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in layers]
    return model
