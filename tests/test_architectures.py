"""The architectures users bring, as tiny random models built from transformers' own config
classes (nothing downloaded): each loads, trains from a live teacher and from a store,
evaluates and exports. Gemma 2's soft-capped head takes the unfused loss."""

import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

from distil.capture import capture
from distil.evaluate import evaluate
from distil.export import export_run
from distil.models import byte_tokenizer
from distil.recipe import ExportSection, validate_recipe
from distil.train import train
from tests.conftest import recipe_dict, skill_rows, write_jsonl

ARCHITECTURES = {
    "qwen2": (Qwen2Config, {"tie_word_embeddings": True}),
    "qwen3": (Qwen3Config, {"head_dim": 8, "tie_word_embeddings": True}),
    "llama": (LlamaConfig, {}),
    "gemma2": (
        Gemma2Config,
        {
            "head_dim": 8,
            "final_logit_softcapping": 30.0,
            "attn_logit_softcapping": 50.0,
            "sliding_window": 16,
            "query_pre_attn_scalar": 8,
        },
    ),
    "mistral": (MistralConfig, {"sliding_window": 16}),
    "phi3": (Phi3Config, {"tie_word_embeddings": False}),
}


def _save(config_class, extra: dict, folder, layers: int, hidden: int, seed: int):
    tokenizer = byte_tokenizer()
    config = config_class(
        vocab_size=len(tokenizer) + 3,
        hidden_size=hidden,  # a padded head
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **extra,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_loads_trains_evaluates_and_exports(tmp_path, name):
    config_class, extra = ARCHITECTURES[name]
    teacher = _save(config_class, extra, tmp_path / "teacher", layers=2, hidden=32, seed=0)
    student = _save(config_class, extra, tmp_path / "student", layers=1, hidden=16, seed=1)
    dataset = write_jsonl(tmp_path / "data.jsonl", skill_rows(16))
    raw = recipe_dict(
        tmp_path,
        dataset,
        teacher={"model": teacher},
        student={"model": student},
        train={"max_steps": 2, "batch_size": 4, "save_every": 2},
        eval={"max_samples": 8, "batch_size": 8},
        capture={"top_k": 8},
    )
    raw["data"].update(max_length=32, eval_fraction=0.25)
    live = validate_recipe(raw)
    result = train(live)
    summary = json.loads((live.run_dir / "train_summary.json").read_text())
    assert result.steps == 2 and result.final_loss is not None
    assert summary["fused"] is (name != "gemma2")  # soft-capping: the unfused loss
    metrics = evaluate(live)
    assert metrics["kl_teacher_student"] >= 0

    stored = validate_recipe({**raw, "output_dir": str(tmp_path / "stored"), "signals": {"path": "capture"}})
    capture(stored)
    assert train(stored).final_loss is not None
    exported = export_run(
        live.run_dir, ExportSection(formats=["hf"], prompts_per_task=2, compared_prompts=2, max_new_tokens=4)
    )
    assert exported is not None
    assert (live.run_dir / "export" / "hf-float16").is_dir()
