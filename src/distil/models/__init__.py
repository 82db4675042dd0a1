"""Models: load and check teacher and student (folders, hub ids, GGUF files, packaged models),
build tiny ones for tests."""

from distil.models.gguf import model_revision, model_sha256
from distil.models.loading import (
    BUILTIN_MODELS,
    DEMO_TEACHER_DIR,
    LoadedModel,
    chat_template_hash,
    count_parameters,
    linear_head_weight,
    load_model,
    output_vocab_size,
    resolve_dtype,
    shared_vocab_size,
    tokenizer_hash,
)
from distil.models.packaged import PACKAGED_MODELS
from distil.models.shrink import keep_layers
from distil.models.tiny import build_tiny, byte_tokenizer

__all__ = [
    "BUILTIN_MODELS",
    "DEMO_TEACHER_DIR",
    "PACKAGED_MODELS",
    "LoadedModel",
    "build_tiny",
    "byte_tokenizer",
    "chat_template_hash",
    "count_parameters",
    "keep_layers",
    "linear_head_weight",
    "load_model",
    "model_revision",
    "model_sha256",
    "output_vocab_size",
    "resolve_dtype",
    "shared_vocab_size",
    "tokenizer_hash",
]
