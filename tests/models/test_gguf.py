"""GGUF files as teacher and student: loaded through transformers and dequantised to float,
converted once and cached, layer-selected, trained, and counted in every fingerprint."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from distil.errors import ModelError
from distil.models import gguf as gguf_module
from distil.models import load_model
from distil.recipe import validate_recipe
from distil.recipe.inputs import input_values
from distil.signals.recipe import signal_identity
from distil.synth.teacher import model_id
from tests.cli_helpers import run_cli
from tests.conftest import recipe_dict

TEXTS = ["Reverse: abc123", "What is 12 + 7? Answer step by step.", "Sort: 9 3 5"]


def _dequantised(path: Path, name: str) -> np.ndarray:
    """A tensor of the file, dequantised by the gguf package alone (no transformers)."""
    import gguf

    tensor = next(t for t in gguf.GGUFReader(path).tensors if t.name == name)
    return gguf.quants.dequantize(tensor.data, tensor.tensor_type)


def test_a_gguf_teacher_holds_the_files_weights_as_floats_and_its_tokenizer(demo_gguf):
    teacher = load_model(str(demo_gguf), "teacher")
    demo = load_model("demo", "teacher")
    embedding = teacher.model.get_input_embeddings().weight
    assert embedding.dtype == torch.float32
    assert torch.equal(embedding, torch.from_numpy(_dequantised(demo_gguf, "token_embd.weight")))
    assert teacher.revision == "sha256:" + hashlib.sha256(demo_gguf.read_bytes()).hexdigest()
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    for text in TEXTS:
        assert teacher.tokenizer(text).input_ids == demo.tokenizer(text).input_ids
    messages = [{"role": "user", "content": TEXTS[0]}]
    assert teacher.tokenizer.apply_chat_template(
        messages, tokenize=False
    ) == demo.tokenizer.apply_chat_template(messages, tokenize=False)
    ids = demo.tokenizer(TEXTS[1], return_tensors="pt").input_ids
    with torch.no_grad():
        ours, reference = teacher.model(ids).logits, demo.model(ids).logits.float()
    # q8_0 keeps the demo's answers: the same most likely token at almost every position
    agreement = (ours.argmax(-1) == reference.argmax(-1)).float().mean().item()
    assert agreement >= 0.9 and (ours - reference).abs().max() < 0.5


def test_the_conversion_is_made_once_and_then_read_from_the_cache(demo_gguf, tmp_path, monkeypatch):
    path = tmp_path / "copy.gguf"
    shutil.copy(demo_gguf, path)
    first = load_model(str(path), "teacher")
    sha = first.revision.removeprefix("sha256:")
    folder = Path(os.environ["DISTIL_CACHE"]) / "gguf" / sha
    assert json.loads((folder / "distil-gguf.json").read_text())["sha256"] == sha

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_module, "_convert", no_conversion)
    again = load_model(str(path), "student")
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_the_hash_is_read_once_per_path_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    reads = []
    digest = gguf_module.file_digest
    monkeypatch.setattr(gguf_module, "file_digest", lambda p: reads.append(p) or digest(p))
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert gguf_module.file_sha256(path) == expected
    assert gguf_module.file_sha256(path) == expected
    assert len(reads) == 1
    path.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 64)  # same size, new content
    os.utime(path, ns=(1, 1))
    assert gguf_module.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(reads) == 2


def test_a_student_from_chosen_layers_of_a_gguf_teacher_starts_from_them(demo_gguf):
    teacher = load_model(str(demo_gguf), "teacher")
    student = load_model(str(demo_gguf), "student", layers=[0, 9])
    assert student.model.config.num_hidden_layers == 2
    assert student.model.training or any(p.requires_grad for p in student.model.parameters())
    for kept, source in ((0, 0), (1, 9)):
        assert torch.equal(
            student.model.model.layers[kept].mlp.down_proj.weight,
            teacher.model.model.layers[source].mlp.down_proj.weight,
        )


def test_a_layer_selected_gguf_student_trains_from_a_gguf_teacher(
    tmp_path, dataset, demo_gguf, monkeypatch, capsys
):
    raw = recipe_dict(
        tmp_path,
        dataset,
        teacher={"model": str(demo_gguf)},
        student={"model": str(demo_gguf), "layers": [0, 9]},
        train={"max_steps": 3, "save_every": 3, "log_every": 1},
    )
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    result = run_cli(monkeypatch, capsys, "train", str(tmp_path / "recipe.yaml"))
    assert result.returncode == 0, result.stderr
    saved = load_model(str(tmp_path / "run" / "student"), "student")
    assert saved.model.config.num_hidden_layers == 2
    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
        if "loss" in line
    ]
    assert losses and all(np.isfinite(losses))


def test_the_files_sha256_reaches_every_fingerprint(tmp_path, dataset, demo_gguf):
    path = tmp_path / "teacher.gguf"
    shutil.copy(demo_gguf, path)
    recipe = validate_recipe(
        recipe_dict(
            tmp_path, dataset, teacher={"model": str(path)}, student={"model": str(path), "layers": [0, 9]}
        )
    )
    tokenizer = load_model("demo", "teacher").tokenizer

    def identity() -> dict:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        train = input_values(recipe, "train")
        assert train["teacher.model_sha256"] == train["student.model_sha256"] == sha
        assert input_values(recipe, "synth")["teacher.model_sha256"] == sha
        assert signal_identity(recipe, tokenizer, 1.0)["teacher"]["revision"] == f"sha256:{sha}"
        assert model_id(recipe) == f"{path}@sha256:{sha}"
        return {"train": input_values(recipe, "train"), "capture": input_values(recipe, "capture")}

    before = identity()
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one changed weight byte
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    after = identity()
    for stage in ("train", "capture"):
        changed = {k for k in before[stage] if before[stage][k] != after[stage].get(k)}
        assert changed == (
            {"teacher.model_sha256", "student.model_sha256"} if stage == "train" else {"teacher.model_sha256"}
        ), stage


def test_other_models_carry_no_file_hash(tmp_path, dataset):
    recipe = validate_recipe(recipe_dict(tmp_path, dataset))
    values = input_values(recipe, "train")
    assert not any(key.endswith("model_sha256") for key in values)
    assert signal_identity(recipe, None, 1.0)["teacher"]["revision"] is None


def test_a_gguf_whose_tokenizer_transformers_cannot_build_is_refused_in_one_line(demo_gguf, tmp_path):
    # a merge that is not two tokens: tokenizers' BPE builder rejects it (as a Rust panic, a
    # BaseException, in some versions); the file is otherwise the demo teacher's
    import gguf

    broken = tmp_path / "broken.gguf"
    shutil.copy(demo_gguf, broken)
    reader = gguf.GGUFReader(broken, "r+")
    merges = reader.get_field("tokenizer.ggml.merges")
    merges.parts[merges.data[0]][:] = ord("~")
    del reader
    with pytest.raises(ModelError, match=r"^transformers cannot load .*broken.gguf \("):
        load_model(str(broken), "teacher")


def test_a_gguf_file_gives_a_tokenizer_alone_for_an_api_teacher(demo_gguf):
    from distil.teachers.tokenmap import load_tokenizer

    tokenizer, demo = load_tokenizer(str(demo_gguf)), load_model("demo", "teacher").tokenizer
    assert [tokenizer(t).input_ids for t in TEXTS] == [demo(t).input_ids for t in TEXTS]
    assert len(tokenizer) == len(demo)  # no token past the model's head
