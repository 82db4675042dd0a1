"""Tiny Llama models and a byte-level tokenizer built in-process, for tests and smoke runs.

Nothing is downloaded: `build_tiny("tiny-teacher")` returns a randomly initialised model
(seeded) and a tokenizer whose vocabulary is the 256 bytes plus a few chat markers.
"""

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

TINY_SHAPES = {
    # The teacher is initialised wide so that, random as it is, its distributions are peaked
    # and there is something to distil.
    "tiny-teacher": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "initializer_range": 0.3,
    },
    "tiny-student": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (no merges) with chat markers and a chat template."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in sorted(alphabet):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )


def tiny_config(name: str, tokenizer: PreTrainedTokenizerFast, **overrides: float) -> LlamaConfig:
    """A LlamaConfig of one of the `TINY_SHAPES`, sized to the tokenizer's vocabulary."""
    shape = {"vocab_size": len(tokenizer), **TINY_SHAPES[name], **overrides}
    return LlamaConfig(
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        **shape,
    )


def build_tiny(
    name: str, seed: int = 0, **overrides: float
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A seeded random tiny model and its tokenizer; `name` is a key of `TINY_SHAPES`."""
    if name not in TINY_SHAPES:
        raise KeyError(f"unknown tiny model {name!r}; choose one of {sorted(TINY_SHAPES)}")
    tokenizer = byte_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + (0 if name == "tiny-teacher" else 1))
        model = LlamaForCausalLM(tiny_config(name, tokenizer, **overrides))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
