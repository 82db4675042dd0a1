"""The tokenizer a GGUF carries tokenizes as the model's own: read back by transformers' GGUF
reader (as a deployment would), its ids with and without special tokens are the model's;
its add_bos_token / add_eos_token flags follow what the tokenizer adds, not which special
tokens exist; a bytes-only vocabulary (no merges) reads back at all."""

import json
import types
from pathlib import Path

import pytest
from tokenizers import processors

from distil.export import ExportSection, export_run
from distil.export.gguf import export_gguf, gguf_file
from distil.models import build_tiny
from distil.models.tiny import byte_tokenizer

CHATS = ["What is the capital of France?", "Reverse the word: cat", "What is 47+38?"]


def _chat_texts(tokenizer) -> list[str]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True
        )
        for c in CHATS
    ]


def _gguf_tokenizer(folder):
    """The tokenizer transformers builds from a written GGUF's own metadata."""
    from transformers import AutoTokenizer

    path = gguf_file(folder)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _field(folder, key):
    import gguf

    return gguf.GGUFReader(str(gguf_file(folder))).get_field(key).contents()


def _loaded(tokenizer) -> types.SimpleNamespace:
    model, _ = build_tiny("tiny-student")
    return types.SimpleNamespace(model=model, tokenizer=tokenizer, source="tiny-student")


def _bos_not_added():
    """The tiny tokenizer with a bos token that it does not put before a text."""
    tokenizer = byte_tokenizer()
    tokenizer.bos_token = "<|system|>"
    assert tokenizer("ab").input_ids == tokenizer("ab", add_special_tokens=False).input_ids
    return tokenizer


def _bos_added():
    """The tiny tokenizer that puts its bos before every text."""
    tokenizer = byte_tokenizer()
    tokenizer.bos_token = "<|system|>"
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|system|> $A", special_tokens=[("<|system|>", tokenizer.bos_token_id)]
    )
    assert tokenizer("ab").input_ids[0] == tokenizer.bos_token_id
    return tokenizer


@pytest.mark.parametrize("make, adds_bos", [(_bos_not_added, False), (_bos_added, True)])
def test_bos_flag_is_what_the_tokenizer_does_and_readers_agree(tmp_path, make, adds_bos):
    tokenizer = make()
    texts = _chat_texts(tokenizer)
    folder = export_gguf(_loaded(tokenizer), tmp_path / "f16", "f16", texts)
    assert _field(folder, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert _field(folder, "tokenizer.ggml.add_bos_token") is adds_bos
    assert _field(folder, "tokenizer.ggml.add_eos_token") is False
    reader = _gguf_tokenizer(folder)
    for text in texts:
        for special in (False, True):
            assert (
                reader(text, add_special_tokens=special).input_ids
                == tokenizer(text, add_special_tokens=special).input_ids
            )


def test_a_vocabulary_without_merges_reads_back_with_an_empty_merge_list(tmp_path):
    tokenizer = byte_tokenizer()  # the tiny recipe's: bytes and chat markers, no merges
    texts = _chat_texts(tokenizer)
    folder = export_gguf(_loaded(tokenizer), tmp_path / "q8", "q8_0", texts)
    assert _field(folder, "tokenizer.ggml.merges") == []
    reader = _gguf_tokenizer(folder)  # a placeholder merge made the tokenizers library panic
    assert [reader(t).input_ids for t in texts] == [tokenizer(t).input_ids for t in texts]


def test_a_wrong_flag_fails_parity_with_the_reason(tmp_path, monkeypatch):
    from distil.export import gguf_vocab

    model, _ = build_tiny("tiny-student")
    model.save_pretrained(tmp_path / "student")
    _bos_not_added().save_pretrained(tmp_path / "student")
    monkeypatch.setattr(gguf_vocab, "special_flags", lambda tokenizer: (True, False))
    config = ExportSection(
        formats=["gguf"],
        gguf=["f16"],
        prompts_per_task=1,
        compared_prompts=2,
        max_new_tokens=4,
        allow_parity_failure=True,
    )
    result = export_run(tmp_path / "student", config, out=tmp_path / "export")
    (variant,) = result.parity["variants"]
    assert not variant["passed"] and variant["path"] == "failed/gguf-f16"
    assert variant["read_back"]["failures"] == []  # the file holds what was meant to be written
    (failure,) = variant["failures"]
    assert failure.startswith(
        "tokenizer: the GGUF's own tokenizer, read by transformers, gives other ids than the model's on "
    )
    assert "held-out texts with special tokens (first: " in failure
    saved = json.loads((tmp_path / "export" / "parity.json").read_text())
    assert saved["variants"][0]["tokenizer"]["failures"] == variant["tokenizer"]["failures"]


@pytest.fixture(scope="module")
def smollm2_student(request, tmp_path_factory):
    """A 2-layer student of SmolLM2-135M-Instruct (its first two layers), saved as a Hugging
    Face folder with the tokenizer transformers reads from SmolLM2's own GGUF."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        source = request.getfixturevalue("smollm2_gguf")
    except pytest.FixtureLookupError:
        pytest.skip("no smollm2_gguf fixture (tests/conftest.py) to find SmolLM2's GGUF")
    folder, name = str(Path(source).parent), Path(source).name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    config.num_hidden_layers = 2
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:2]
    student = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    full = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    student.load_state_dict(full.state_dict(), strict=False)  # layers 2+ are left out
    out = tmp_path_factory.mktemp("smollm2") / "student"
    student.save_pretrained(out)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out)
    return out


@pytest.mark.slow
def test_smollm2_student_gguf_tokenizes_chat_prompts_as_its_tokenizer(smollm2_student, tmp_path):
    from distil.models import load_model

    config = ExportSection(
        formats=["gguf"], gguf=["q8_0"], prompts_per_task=1, compared_prompts=2, max_new_tokens=4
    )
    result = export_run(smollm2_student, config, out=tmp_path / "export")
    (variant,) = result.parity["variants"]
    assert variant["tokenizer"]["failures"] == [] and variant["read_back"]["failures"] == []
    folder = result.deployable["gguf-q8_0"]
    assert _field(folder, "tokenizer.ggml.add_bos_token") is False  # SmolLM2 adds no bos
    tokenizer = load_model(str(smollm2_student), "student").tokenizer
    reader = _gguf_tokenizer(folder)
    for text in _chat_texts(tokenizer):
        assert reader(text).input_ids == tokenizer(text).input_ids  # 37 ids for the first


def test_a_tokenizer_adding_what_the_flags_cannot_say_is_refused():
    from distil.errors import ExportError
    from distil.export.gguf_vocab import gguf_vocabulary

    tokenizer = byte_tokenizer()  # no bos; it puts <|user|> before every text
    user = tokenizer.convert_tokens_to_ids("<|user|>")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|user|> $A", special_tokens=[("<|user|>", user)]
    )
    with pytest.raises(ExportError, match=f"adds \\[{user}\\] before and \\[\\] after a text"):
        gguf_vocabulary(tokenizer, len(tokenizer), ["abc"])
