"""The ONNX export against PyTorch: logits, greedy text, the cache path, int8, no torch."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from distil.data import render_prompt
from distil.export import ExportSection, OnnxGenerator, PromptEncoder
from tests.export.conftest import PROMPTS


def torch_prompt_ids(tokenizer, prompt: str) -> list[int]:
    text, add_special = render_prompt(tokenizer, prompt, "auto")
    return tokenizer(text, add_special_tokens=add_special).input_ids


def torch_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].numpy()  # (T, V)


def hf_greedy(loaded, ids: list[int], max_new_tokens: int) -> list[int]:
    """Hugging Face's own greedy generation, cut at the first eos."""
    with torch.no_grad():
        out = loaded.model.generate(
            input_ids=torch.tensor([ids]),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    new = out[0, len(ids) :].tolist()
    eos = loaded.tokenizer.eos_token_id
    return new[: new.index(eos)] if eos in new else new


@pytest.fixture(scope="module")
def fp32(exported_run) -> OnnxGenerator:
    return OnnxGenerator(exported_run / "export" / "onnx")


@pytest.fixture(scope="module")
def int8(exported_run) -> OnnxGenerator:
    return OnnxGenerator(exported_run / "export" / "onnx-int8")


def test_prompts_are_encoded_as_training_encodes_them(fp32, student):
    for prompt in PROMPTS:
        assert fp32.encode(prompt) == torch_prompt_ids(student.tokenizer, prompt)


def test_a_tokenizer_without_chat_template_gets_plain_prompts(tmp_path):
    from distil.models import byte_tokenizer

    tokenizer = byte_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    encoder = PromptEncoder(tmp_path)
    assert encoder.render("hi there")[0] == "hi there"
    assert encoder.encode("hi there") == torch_prompt_ids(tokenizer, "hi there")


def test_fp32_logits_match_pytorch_at_every_position(fp32, student):
    diffs, agree = [], []
    for prompt in PROMPTS:
        ids = fp32.encode(prompt)
        expected = torch_logits(student.model, ids)
        mask = np.ones((1, len(ids)), dtype=np.int64)
        logits, present = fp32.forward(np.array([ids]), mask, np.arange(len(ids))[None], fp32.empty_cache(1))
        assert all(p.shape[2] == len(ids) for p in present)  # the cache holds every token
        diffs.append(np.abs(logits[0] - expected).max())
        agree.append((logits[0].argmax(-1) == expected.argmax(-1)).mean())
    assert max(diffs) < 1e-4
    assert min(agree) == 1.0


def test_kv_cache_path_equals_full_recompute(fp32):
    prompt = fp32.encode(PROMPTS[0])
    continuation = [40, 41, 42, 43, 44, 45]
    mask = np.ones((1, len(prompt) + len(continuation)), dtype=np.int64)
    full, _ = fp32.forward(
        np.array([prompt + continuation]), mask, np.arange(mask.shape[1])[None], fp32.empty_cache(1)
    )
    cached = fp32.continuation_logits(prompt, continuation)  # one prefill, then one token a call
    expected = full[0, len(prompt) - 1 : len(prompt) - 1 + len(continuation)]
    np.testing.assert_allclose(cached, expected, atol=1e-5)


def test_greedy_generation_equals_pytorch(fp32, student):
    prompt_ids = [fp32.encode(p) for p in PROMPTS]
    expected = [hf_greedy(student, ids, 12) for ids in prompt_ids]
    assert [fp32.generate_ids([ids], 12)[0] for ids in prompt_ids] == expected
    assert fp32.generate_ids(prompt_ids, 12) == expected  # left-padded batch, uneven lengths
    assert fp32.generate(PROMPTS, 12) == [
        student.tokenizer.decode(e, skip_special_tokens=True) for e in expected
    ]


def test_generation_stops_at_eos_and_can_be_told_not_to(fp32):
    ids = [fp32.encode(PROMPTS[0])]
    full = fp32.generate_ids(ids, 40, stop_at_eos=False)[0]
    assert len(full) == 40
    stopped = fp32.generate_ids(ids, 40)[0]
    first_eos = next((i for i, t in enumerate(full) if t in fp32.eos_token_ids), len(full))
    assert stopped == full[:first_eos]


INT8_MIN_TOP1 = ExportSection().thresholds["int8"].min_top1_agreement  # 95%, docs/export.md


def test_int8_is_quantised_and_agrees_above_its_threshold(exported_run, fp32, int8, student):
    graph = onnx.load(str(exported_run / "export" / "onnx-int8" / "model.onnx"))
    ops = {node.op_type for node in graph.graph.node}
    assert {"MatMulNBits", "GatherBlockQuantized", "MatMul"} <= ops  # test_onnx_int8.py: which
    fp32_bytes = (exported_run / "export" / "onnx" / "model.onnx").stat().st_size
    assert (exported_run / "export" / "onnx-int8" / "model.onnx").stat().st_size < fp32_bytes
    agree, differ = [], []
    for prompt in PROMPTS:
        ids = int8.encode(prompt) + [40, 41, 42, 43]
        expected = torch_logits(student.model, ids)
        mask = np.ones((1, len(ids)), dtype=np.int64)
        logits, _ = int8.forward(np.array([ids]), mask, np.arange(len(ids))[None], int8.empty_cache(1))
        agree.append((logits[0].argmax(-1) == expected.argmax(-1)).mean())
        differ.append(np.abs(logits[0] - expected).max())
    assert np.mean(agree) >= INT8_MIN_TOP1
    assert max(differ) > 1e-4  # int8 weights really change the numbers


def test_runs_without_torch(exported_run, fp32, int8):
    """The exported folders answer in a process where importing torch fails."""
    script = (
        "import json, sys\n"
        "sys.modules['torch'] = None\n"
        "from distil.export import OnnxGenerator\n"
        f"prompts = {PROMPTS!r}\n"
        "out = {}\n"
        "for name in ('onnx', 'onnx-int8'):\n"
        f"    g = OnnxGenerator({str(exported_run / 'export')!r} + '/' + name)\n"
        "    out[name] = g.generate(prompts, 10)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert answers == {"onnx": fp32.generate(PROMPTS, 10), "onnx-int8": int8.generate(PROMPTS, 10)}
