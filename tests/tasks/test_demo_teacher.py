"""The shipped demo teacher and the script that builds it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from distil.models import count_parameters, load_model
from distil.models.loading import DEMO_TEACHER_DIR
from distil.tasks import accuracy, generate_items, task_names
from tests.conftest import REPO


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", "teacher")


def test_folder_is_small_fp16_safetensors_with_a_model_card():
    files = {p.name: p.stat().st_size for p in DEMO_TEACHER_DIR.iterdir()}
    assert sum(files.values()) <= 20 * 2**20
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(files)
    with safe_open(DEMO_TEACHER_DIR / "model.safetensors", "pt") as weights:
        names = weights.keys()  # a safetensors handle is not iterable itself
        assert {weights.get_tensor(name).dtype for name in names} == {torch.float16}
    card = (DEMO_TEACHER_DIR / "README.md").read_text()
    for name in task_names():
        assert f"| {name} |" in card
    assert "build_demo_teacher.py" in card


def test_tokenizer_follows_the_chat_convention(demo):
    tokenizer = demo.tokenizer
    assert tokenizer.eos_token == "<|end|>" and tokenizer.pad_token == "<|pad|>"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Reverse: KQZ"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|user|>Reverse: KQZ<|end|><|assistant|>"
    for payload in ("KQZM", "90210"):  # letters and digits are tokens of their own
        assert len(tokenizer(payload, add_special_tokens=False).input_ids) == len(payload)
    assert 256 < len(tokenizer) <= 1024


def test_a_two_layer_student_has_at_most_a_quarter_of_the_parameters(demo):
    depth = demo.model.config.num_hidden_layers
    student = load_model("demo", "student", layers=[0, depth - 1])
    assert count_parameters(student.model) * 4 <= count_parameters(demo.model)


@torch.no_grad()
def test_teacher_answers_held_out_prompts(demo):
    items = generate_items("heldout", per_task=8, seed=11)
    tokenizer = demo.tokenizer
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": i.prompt}], tokenize=False, add_generation_prompt=True
        )
        for i in items
    ]
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = "right"
    output = demo.model.generate(
        **inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    responses = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert accuracy(items, responses)["overall"] >= 0.85


def test_build_script_makes_a_loadable_teacher(tmp_path):
    out = tmp_path / "teacher"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_demo_teacher.py"),
            "--out",
            str(out),
            "--steps",
            "2",
            "--layers",
            "2",
            "--hidden",
            "32",
            "--intermediate",
            "64",
            "--eval-per-task",
            "2",
            "--vocab-size",
            "320",
        ],
        check=True,
        env=env,
        capture_output=True,
        cwd=tmp_path,
    )
    loaded = load_model(str(out), "teacher")
    assert loaded.model.config.num_hidden_layers == 2 and len(loaded.tokenizer) == 320
    build = json.loads((out / "build.json").read_text())
    assert build["training"]["steps"] == 2
    assert set(build["held_out"]["accuracy"]) == {"overall", *task_names()}
    assert "| overall |" in (out / "README.md").read_text().replace("**", "")
    assert not list(Path(tmp_path).glob(".teacher.*"))  # written atomically, nothing left over


def test_build_script_fine_tunes_a_teacher_on_an_extra_family(tmp_path):
    out = tmp_path / "teacher"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    script = [sys.executable, str(REPO / "scripts" / "build_demo_teacher.py"), "--out", str(out)]
    subprocess.run(
        [
            *script,
            "--init",
            "demo",
            "--extra-tasks",
            "between",
            "--extra-weight",
            "2",
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--eval-per-task",
            "1",
            "--threads",
            "1",
        ],
        check=True,
        env=env,
        capture_output=True,
        cwd=tmp_path,
    )
    loaded = load_model(str(out), "teacher")
    demo_tokenizer = load_model("demo", "teacher").tokenizer
    assert loaded.tokenizer.get_vocab() == demo_tokenizer.get_vocab()  # kept as it was
    build = json.loads((out / "build.json").read_text())
    assert build["arguments"]["init"] == "demo" and build["init"]["training"]["steps"] == 3000
    assert build["task_weights"]["between"] == 2.0
    assert set(build["held_out"]["accuracy"]) == {"overall", *task_names(), "between"}
    card = (out / "README.md").read_text()
    assert "| between |" in card and "--init demo --extra-tasks between" in card
    refused = subprocess.run(
        [*script, "--extra-tasks", "sort"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert refused.returncode == 2 and "not an opt-in task family" in refused.stderr
