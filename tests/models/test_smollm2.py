"""The packaged SmolLM2-135M-Instruct, for real: fetched once a run (tests/conftest.py), it
answers a chat prompt sensibly and gives a 4-layer student of its own layers."""

import json

import pytest
import torch

from distil.models import PACKAGED_MODELS, load_model
from distil.teachers.base import Sampling
from distil.teachers.local import LocalTeacher
from tests.conftest import SMOLLM2

pytestmark = pytest.mark.slow


def test_smollm2_answers_a_chat_prompt_greedily(smollm2_teacher):
    assert smollm2_teacher.revision == f"sha256:{PACKAGED_MODELS[SMOLLM2].gguf_sha256}"
    teacher = LocalTeacher(smollm2_teacher)
    answers = teacher.generate(
        ["What is the capital of France?", "What is 2 + 3?"], Sampling(max_new_tokens=16, temperature=0.0)
    )
    assert "Paris" in answers[0].text, answers[0].text
    assert "5" in answers[1].text, answers[1].text


def test_a_four_layer_student_of_smollm2_loads_from_its_layers(smollm2_teacher):
    student = load_model(SMOLLM2, "student", layers=[0, 10, 20, 29])
    assert student.model.config.num_hidden_layers == 4
    for kept, source in enumerate([0, 10, 20, 29]):
        assert torch.equal(
            student.model.model.layers[kept].self_attn.q_proj.weight,
            smollm2_teacher.model.model.layers[source].self_attn.q_proj.weight,
        )
    ids = student.tokenizer("Hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = student.model(ids).logits  # (1, T, V)
    assert logits.shape[-1] == len(smollm2_teacher.tokenizer) and torch.isfinite(logits).all()


CHATS = [
    ("What is the capital city of Kenya?", "The capital city of Kenya is Nairobi."),
    ("Give the plural of mouse.", "The plural of mouse is mice."),
    ("What is the opposite of 'cheap'?", "The opposite of cheap is expensive."),
    ("Write 'seventy-six' as a number.", "76"),
    ("Which continent is Peru in?", "Peru is in South America."),
    (
        "Explain why the sky is blue in one sentence.",
        "Sunlight scatters off air molecules, and blue light scatters the most.",
    ),
]


def _stored_matches_the_teacher(recipe, teacher) -> None:
    """The store's top-8 of the first training row are the teacher's own, from its float64
    log-softmax at each response position."""
    from distil.data import encode_pairs
    from distil.loading import load_splits
    from distil.signals.reader import SignalStore

    train_pairs, _ = load_splits(recipe.data, recipe.seed)
    (example,) = encode_pairs(
        teacher.tokenizer, train_pairs[:1], recipe.data.template, recipe.data.max_length
    )
    with torch.no_grad():
        logits = teacher.model(torch.tensor([example.input_ids])).logits[0].double()  # (T, V)
    positions = [i - 1 for i, label in enumerate(example.labels) if label != -100]
    reference = torch.log_softmax(logits[positions], -1)  # (n, V)
    with SignalStore(recipe.run_dir / "signals") as store:
        stored = store.get(example.sample_id)
    assert stored.ids.shape == (len(positions), 8)
    top = reference.topk(8, dim=-1)
    for row, (ids, logprobs) in enumerate(zip(stored.ids, stored.logprobs, strict=True)):
        assert sorted(ids.tolist()) == sorted(top.indices[row].tolist())
        expected = reference[row, torch.as_tensor(ids)].numpy()
        assert abs(logprobs - expected).max() < 0.02  # float16 logprobs


@pytest.fixture(scope="module")
def trained_from_a_store(smollm2_teacher, tmp_path_factory):
    """The real path on the real teacher: its top-8 captured on a handful of chats, then a
    2-layer student of its layers ([0, 29]) trained 3 steps from that store."""
    from distil.capture import capture
    from distil.recipe import validate_recipe
    from distil.train.stage import train
    from tests.conftest import recipe_dict, write_jsonl

    tmp_path = tmp_path_factory.mktemp("smollm2-store")
    data = write_jsonl(tmp_path / "chats.jsonl", [{"prompt": p, "response": r} for p, r in CHATS])
    raw = recipe_dict(
        tmp_path,
        data,
        teacher={"model": SMOLLM2},
        student={"model": SMOLLM2, "layers": [0, 29]},
        capture={"top_k": 8, "batch_size": 6},
        signals={"path": "capture"},
        eval={"max_samples": 2},
        train={"max_steps": 3, "batch_size": 5, "learning_rate": 1e-3, "save_every": 3, "log_every": 1},
    )
    raw["data"].update(eval_fraction=0.2, max_length=64)
    recipe = validate_recipe(raw)
    capture(recipe)
    train(recipe)
    return recipe


def test_the_store_holds_smollm2s_top_k_and_a_student_learns_from_it(trained_from_a_store, smollm2_teacher):
    recipe = trained_from_a_store
    _stored_matches_the_teacher(recipe, smollm2_teacher)
    log = [json.loads(line) for line in (recipe.run_dir / "train_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log]
    assert len(losses) == 3 and losses[-1] < losses[0], losses  # the same 5 rows each step


def test_int8_onnx_of_a_smollm2_student_passes_parity(trained_from_a_store, tmp_path):
    from distil.export import ExportSection, export_run

    config = ExportSection(
        formats=["onnx-int8"],
        tasks=["instruct"],
        prompts_per_task=1,
        compared_prompts=4,
        max_new_tokens=8,
        allow_parity_failure=True,
    )
    result = export_run(trained_from_a_store.run_dir / "student", config, out=tmp_path / "export")
    variants = {v["name"]: v for v in result.parity["variants"]}
    assert variants["onnx"]["passed"], variants["onnx"]["failures"]  # fp32: 5e-5 of a logit
    assert variants["onnx-int8"]["passed"], variants["onnx-int8"]["failures"]  # dynamic: 72%
