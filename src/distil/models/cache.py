"""A model's key/value cache across transformers versions: the forward keyword that takes it,
and where the output returns it. Used by the ONNX export and by the bench's PyTorch timing."""

import inspect
from typing import Any

import torch


def cache_argument(model: torch.nn.Module) -> str:
    """The forward keyword that takes the cache: `cache` (transformers >= 5.x) or the older name."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The cache a forward returned, under either of its names."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
