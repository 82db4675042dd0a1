"""GGUF export: llama.cpp's layout, the read-back check (and that it catches a bad file),
clear refusals, the Ollama Modelfile; through llama.cpp itself when llama-cpp-python is here."""

import json
import types

import numpy as np
import pytest

from distil.errors import ExportError
from distil.export import ExportSection, export_run
from distil.export.gguf import (
    ARCHITECTURES,
    GgufArchitecture,
    export_gguf,
    gguf_architecture,
    gguf_file,
    to_adjacent_pairs,
    to_rotate_half,
)
from distil.export.gguf_check import read_back
from distil.export.gguf_vocab import gguf_vocabulary
from distil.export.modelfile import ollama_template
from distil.llama_runtime import llama_cpp_available
from tests.export.conftest import PROMPTS

needs_llama_cpp = pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python is not installed")


def _rope_rotate_half(x: np.ndarray, position: int, dim: int) -> np.ndarray:
    """Hugging Face's rotary embedding of one head's vector: dims i and i + D/2 turn together."""
    half = dim // 2
    angle = position * 10000.0 ** (-np.arange(half) * 2 / dim)
    first, second = x[:half], x[half:]
    return np.concatenate(
        [first * np.cos(angle) - second * np.sin(angle), second * np.cos(angle) + first * np.sin(angle)]
    )


def _rope_adjacent(x: np.ndarray, position: int, dim: int) -> np.ndarray:
    """llama.cpp's (non-neox) rotary embedding: dims 2i and 2i + 1 turn together."""
    angle = position * 10000.0 ** (-np.arange(dim // 2) * 2 / dim)
    even, odd = x[0::2], x[1::2]
    out = np.empty_like(x)
    out[0::2] = even * np.cos(angle) - odd * np.sin(angle)
    out[1::2] = odd * np.cos(angle) + even * np.sin(angle)
    return out


def test_reordered_query_rows_make_llama_cpp_rope_equal_hugging_face_rope():
    rng = np.random.default_rng(0)
    heads, dim, width = 3, 8, 5
    weight, x = rng.normal(size=(heads * dim, width)), rng.normal(size=width)
    hf = (weight @ x).reshape(heads, dim)
    pairs = (to_adjacent_pairs(weight, heads) @ x).reshape(heads, dim)
    for position in (0, 1, 7):
        for h in range(heads):
            rotated = _rope_rotate_half(hf[h], position, dim)
            expected = to_adjacent_pairs(rotated.reshape(-1, 1), 1).ravel()
            np.testing.assert_allclose(_rope_adjacent(pairs[h], position, dim), expected, atol=1e-12)
    np.testing.assert_array_equal(to_rotate_half(to_adjacent_pairs(weight, heads), heads), weight)


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_tiny_student_reads_back_within_each_types_error(student, tmp_path, gguf_type):
    folder = export_gguf(student, tmp_path / gguf_type, gguf_type, PROMPTS)
    vocab = gguf_vocabulary(student.tokenizer, student.model.config.vocab_size, PROMPTS)
    record = read_back(gguf_file(folder), student.model, vocab)
    assert record["failures"] == []
    kinds = set(record["tensor_types"])
    assert kinds == ({"F16", "F32"} if gguf_type == "f16" else {"Q8_0", "F32"})
    assert record["tensors"] == len(student.model.state_dict())  # untied: output.weight too
    # f16 is exact after rounding; q8_0 at most ~0.56 of a step (half a step + the fp16 scale)
    worst = record["worst_error_to_bound"]
    assert worst == 0.0 if gguf_type == "f16" else 0.3 < worst < 0.6
    manifest = json.loads((folder / "gguf.json").read_text())
    assert manifest["type"] == gguf_type and manifest["architecture"] == "llama"


def test_read_back_catches_query_rows_left_in_hugging_face_order(student, tmp_path, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "llama", GgufArchitecture("llama", False))
    folder = export_gguf(student, tmp_path / "wrong", "f16", PROMPTS)
    monkeypatch.undo()
    vocab = gguf_vocabulary(student.tokenizer, student.model.config.vocab_size, PROMPTS)
    failures = read_back(gguf_file(folder), student.model, vocab)["failures"]
    assert failures and all("attn_q" in f or "attn_k" in f for f in failures)


def test_demo_student_reads_back_with_its_merges_and_chat_template(tmp_path):
    from distil.models import load_model

    demo = load_model("demo", "student", dtype="float32", layers=[0, 9])
    texts = ["<|user|>What is the capital of France?<|end|><|assistant|>", "Paris", "x 12 A7"]
    vocab = gguf_vocabulary(demo.tokenizer, demo.model.config.vocab_size, texts)
    assert len(vocab.merges) > 100 and vocab.pre == "gpt-2" and "held-out" in vocab.pre_note
    folder = export_gguf(demo, tmp_path / "q8", "q8_0", texts)
    record = read_back(gguf_file(folder), demo.model, vocab)
    assert record["failures"] == [] and record["tensor_types"]["Q8_0"] == 15
    assert record["tensors"] == len(demo.model.state_dict()) - 1  # tied: no output.weight


def test_architecture_and_tokenizer_gguf_cannot_carry_are_refused():
    with pytest.raises(ExportError, match="GGUF export supports .*'gpt2'"):
        gguf_architecture(types.SimpleNamespace(model_type="gpt2"))
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)} | {"12": len(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("1", "2")]))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(r"\d"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    digits = PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(ExportError, match="cannot carry this tokenizer's pre-tokenizer.*1 of 2"):
        gguf_vocabulary(digits, len(vocab), ["abc", "x 12"])
    wordpiece = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordPiece({"a": 0, "[UNK]": 1})))
    with pytest.raises(ExportError, match="byte-level BPE"):
        gguf_vocabulary(wordpiece, 2, [])


def test_ollama_template_renders_as_the_chat_template(student):
    template = ollama_template(student.tokenizer)
    prompt = template.split("{{ end }}")[1].replace("{{ .Prompt }}", "Reverse: cat")
    assert prompt == student.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Reverse: cat"}], tokenize=False, add_generation_prompt=True
    )
    assert template.startswith("{{ if .System }}<|system|>{{ .System }}<|end|>{{ end }}")


def test_export_stage_writes_gguf_variants_with_a_modelfile(tiny_models, tmp_path):
    config = ExportSection(formats=["gguf"], prompts_per_task=1, compared_prompts=2, max_new_tokens=4)
    result = export_run(tiny_models["tiny-student"], config, out=tmp_path / "export")
    assert list(result.deployable) == ["gguf-f16", "gguf-q8_0"]
    for variant in result.parity["variants"]:
        assert variant["read_back"]["failures"] == []
        assert variant["tokenizer"]["failures"] == [] and "transformers" in variant["tokenizer"]["readers"]
        assert variant["format"] == "gguf" and variant["kind"] in ("half", "int8")
        assert variant["runtime_check"] == (
            "done" if llama_cpp_available() else "skipped: llama-cpp-python is not installed"
        )
        modelfile = (result.deployable[variant["name"]] / "Modelfile").read_text()
        assert f"FROM ./model-{variant['name'].removeprefix('gguf-')}.gguf" in modelfile
        assert 'PARAMETER stop "<|end|>"' in modelfile
        assert "# Model card: ../README.md" in modelfile
        assert (result.deployable[variant["name"]] / "../README.md").is_file()


@pytest.mark.skipif(llama_cpp_available(), reason="llama-cpp-python is installed")
def test_k_quant_without_llama_cpp_is_refused_before_any_work(tiny_models, tmp_path):
    config = ExportSection(formats=["gguf"], gguf=["q4_k_m"])
    with pytest.raises(ExportError, match="q4_k_m needs llama.cpp's quantiser"):
        export_run(tiny_models["tiny-student"], config, out=tmp_path / "export")
    assert not (tmp_path / "export").exists()


@needs_llama_cpp
def test_llama_cpp_runs_the_tiny_student_as_pytorch_does(student, tmp_path):
    from distil.export.parity import TorchVariant, held_out_prompts
    from distil.llama_runtime import LlamaCppGenerator

    folder = export_gguf(student, tmp_path / "f16", "f16", PROMPTS)
    runner = LlamaCppGenerator(folder)
    ids = student.tokenizer(PROMPTS[0], add_special_tokens=False).input_ids
    assert runner.llama.tokenize(PROMPTS[0].encode(), add_bos=False, special=True) == ids
    _, prompts = held_out_prompts(student.tokenizer, 1, 0)
    reference = TorchVariant(student)
    assert runner.generate_ids(prompts, 8) == reference.generate_ids(prompts, 8)
    logits = runner.continuation_logits(prompts[0], [5, 6, 7])
    np.testing.assert_allclose(logits, reference.continuation_logits(prompts[0], [5, 6, 7]), atol=5e-2)


@needs_llama_cpp
def test_k_quant_is_written_by_llama_cpp_and_reads_back(tmp_path):
    loaded = _tiny("llama", hidden_size=256, intermediate_size=512)  # rows split into 256s
    folder = export_gguf(loaded, tmp_path / "q4", "q4_k_m", PROMPTS)
    vocab = gguf_vocabulary(loaded.tokenizer, loaded.model.config.vocab_size, PROMPTS)
    record = read_back(gguf_file(folder), loaded.model, vocab)
    assert record["failures"] == [] and not (folder / "float32.gguf").exists()
    assert {"Q4_K", "Q6_K"} <= set(record["tensor_types"])
    assert json.loads((folder / "gguf.json").read_text())["quantiser"].startswith("llama.cpp")


def _tiny(model_type: str, **shape: int) -> types.SimpleNamespace:
    """A random two-layer model of another architecture, with the tiny byte tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from distil.models.tiny import byte_tokenizer

    tokenizer = byte_tokenizer()
    shape = {"hidden_size": 32, "intermediate_size": 64, **shape}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=shape["hidden_size"] // 4,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        **shape,
    )
    torch.manual_seed(0)
    return types.SimpleNamespace(
        model=AutoModelForCausalLM.from_config(config), tokenizer=tokenizer, source=f"tiny-{model_type}"
    )


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3", "mistral"])
def test_other_architectures_read_back(tmp_path, model_type):
    loaded = _tiny(model_type)
    folder = export_gguf(loaded, tmp_path / model_type, "q8_0", PROMPTS)
    vocab = gguf_vocabulary(loaded.tokenizer, loaded.model.config.vocab_size, PROMPTS)
    record = read_back(gguf_file(folder), loaded.model, vocab)
    assert record["failures"] == [] and record["tensors"] == len(loaded.model.state_dict())


def test_report_says_when_the_gguf_runtime_check_was_skipped(tmp_path):
    from distil.report.collect import collect
    from distil.report.sections import build_sections

    variant = {
        "name": "gguf-q8_0",
        "passed": True,
        "max_abs_logit_diff": None,
        "runtime_check": "skipped: llama-cpp-python is not installed",
    }
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "parity.json").write_text(json.dumps({"variants": [variant]}))
    (tmp_path / "eval.json").write_text(
        json.dumps(
            {
                "efficiency": {"student": {"params": 10, "tokens_per_s": 5.0}},
                "efficiency_setup": {"not_timed": {"gguf-q8_0": "llama-cpp-python is not installed"}},
            }
        )
    )
    sections = {s.title: s for s in build_sections(collect(tmp_path))}
    assert "Runtime check skipped for gguf-q8_0 (llama-cpp-python is not installed)" in " ".join(
        sections["Export parity"].text
    )
    assert sections["Export parity"].items[0].rows[0][-1] == "pass (checked, not run)"
    assert (
        "Not timed: gguf-q8_0 (when the bench ran, llama-cpp-python is not installed)."
        in sections["Efficiency"].text
    )


@needs_llama_cpp
def test_llama_cpp_answers_the_demo_prompts_as_pytorch_does(tmp_path):
    from distil.export.parity import TorchVariant, held_out_prompts
    from distil.llama_runtime import LlamaCppGenerator
    from distil.models import load_model
    from distil.tasks import accuracy

    demo = load_model("demo", "teacher", dtype="float32")  # the trained, shipped model
    items, prompts = held_out_prompts(demo.tokenizer, 3, 0)
    texts = [demo.tokenizer.decode(p) for p in prompts]
    reference = TorchVariant(demo).generate_ids(prompts, 12)
    decode = demo.tokenizer.batch_decode
    answers = {}
    for gguf_type in ("f16", "q8_0"):
        runner = LlamaCppGenerator(export_gguf(demo, tmp_path / gguf_type, gguf_type, texts))
        assert [
            runner.llama.tokenize(t.encode(), add_bos=False, special=True) for t in texts
        ] == prompts  # llama.cpp reads the text as the tokenizer does
        answers[gguf_type] = runner.generate_ids(prompts, 12)
    assert answers["f16"] == reference
    drop = accuracy(items, decode(reference))["overall"] - accuracy(items, decode(answers["q8_0"]))["overall"]
    assert drop <= 0.01


@needs_llama_cpp
def test_bench_worker_times_a_gguf_variant_at_batch_1_only(student, tmp_path):
    from distil.bench.worker import Session

    folder = export_gguf(student, tmp_path / "q8", "q8_0", PROMPTS)
    ids = student.tokenizer(PROMPTS[0], add_special_tokens=False).input_ids
    session = Session(
        {
            "model": str(folder),
            "opener": "distil.bench.worker:open_llama_cpp",
            "runtime": "llama.cpp",
            "threads": 1,
            "prompt_ids": [ids],
            "new_tokens": 4,
        }
    )
    header = session.header()
    assert header["max_batch"] == 1 and header["dtype"] == "q8_0"  # the bench skips batch 2
    assert header["params"] == sum(p.numel() for p in student.model.parameters())
    assert len(session.run(1)) == 4
