"""Model loading: built-ins, HF folders, vocabulary checks, fused-path eligibility."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distil.errors import ModelError, VocabularyMismatchError
from distil.models import (
    LoadedModel,
    build_tiny,
    byte_tokenizer,
    count_parameters,
    linear_head_weight,
    load_model,
    shared_vocab_size,
)


def test_builtin_and_saved_folder_load_the_same_weights(tiny_models):
    built = load_model("tiny-student", "student")
    saved = load_model(str(tiny_models["tiny-student"]), "student")
    for (name, a), (_, b) in zip(
        built.model.state_dict().items(), saved.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert saved.tokenizer.get_vocab() == built.tokenizer.get_vocab()


def test_teacher_is_frozen_in_eval_mode():
    teacher = load_model("tiny-teacher", "teacher")
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_model(str(tmp_path), "student")
    with pytest.raises(ModelError, match="model folder not found"):
        load_model(str(tmp_path / "missing"), "student")


def test_relative_path_that_is_not_there_says_so(tmp_path, monkeypatch):
    # runs/teacher-between reads as a hub id (owner/name); a user who forgot to build the
    # folder must learn that no such folder exists, not only that the hub was unreachable
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="no folder of that name exists here.*write ./"):
        load_model("runs/teacher-missing", "student")


def test_different_tokenizers_are_refused_with_the_reason():
    teacher = load_model("tiny-teacher", "teacher")
    other = byte_tokenizer()
    other.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    student_model, _ = build_tiny("tiny-student")
    student = LoadedModel(student_model, other, source="other")
    with pytest.raises(VocabularyMismatchError, match="cross-tokenizer distillation is a separate"):
        shared_vocab_size(teacher, student)


def test_padded_heads_share_the_common_width():
    """Same tokenizer, heads padded to different sizes (as Qwen models are)."""
    teacher_model, tokenizer = build_tiny("tiny-teacher", vocab_size=272)
    student_model, _ = build_tiny("tiny-student", vocab_size=264)
    teacher = LoadedModel(teacher_model, tokenizer, "t")
    student = LoadedModel(student_model, tokenizer, "s")
    assert shared_vocab_size(teacher, student) == 264


def test_tied_parameters_count_once():
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(model) < sum(p.numel() for p in model.state_dict().values())


def test_linear_head_detection():
    model, _ = build_tiny("tiny-student")
    assert linear_head_weight(model) is model.lm_head.weight
    model.config.final_logit_softcapping = 30.0
    assert linear_head_weight(model) is None


def test_keep_layers_makes_a_shallower_copy_that_generates():
    from distil.models import keep_layers

    teacher, tokenizer = build_tiny("tiny-teacher")
    reference = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = keep_layers(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    assert torch.equal(
        student.model.layers[1].mlp.up_proj.weight, reference["model.layers.3.mlp.up_proj.weight"]
    )
    ids = tokenizer("abc", return_tensors="pt").input_ids
    out = student.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 4)


def test_keep_layers_refuses_bad_indices():
    from distil.models import keep_layers

    model, _ = build_tiny("tiny-student")
    with pytest.raises(ModelError, match=r"0\.\.1"):
        keep_layers(model, [0, 5])
    with pytest.raises(ModelError, match="distinct"):
        keep_layers(model, [1, 1])


def test_tokenizer_and_template_hashes_tell_tokenizers_apart():
    from distil.models import chat_template_hash, tokenizer_hash

    a, b = byte_tokenizer(), byte_tokenizer()
    assert tokenizer_hash(a) == tokenizer_hash(b) and chat_template_hash(a) == chat_template_hash(b)
    b.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    b.chat_template = "{{ messages[0]['content'] }}"
    assert tokenizer_hash(a) != tokenizer_hash(b) and chat_template_hash(a) != chat_template_hash(b)
