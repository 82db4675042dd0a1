"""A LoRA student (peft): only the adapters train, they are merged into the weights when
training ends (checked against W + alpha/r * B @ A from the checkpoint), and the merged
student exports like any other. Gradient checkpointing gives the same step."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from distil.export import export_run
from distil.models import build_tiny
from distil.recipe import ExportSection, validate_recipe
from distil.train import train
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import prepare_session
from tests.conftest import recipe_dict


def test_lora_student_trains_adapters_only_merges_and_exports(tmp_path, dataset):
    raw = recipe_dict(
        tmp_path,
        dataset,
        student={
            "model": "tiny-student",
            "lora": {"r": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj"]},
        },
        train={"max_steps": 3, "save_every": 3, "batch_size": 4, "learning_rate": 1e-2},
    )
    recipe = validate_recipe(raw)
    train(recipe)
    merged = load_file(recipe.run_dir / "student" / "model.safetensors")
    initial = build_tiny("tiny-student", seed=recipe.seed)[0].state_dict()
    assert merged.keys() == initial.keys()  # a plain model: no adapter weights left
    state = load_file(recipe.run_dir / "checkpoints" / "step-000003" / "accelerate" / "model.safetensors")
    changed = 0
    for name, weight in merged.items():
        if name.endswith(("q_proj.weight", "v_proj.weight")):
            stem = "model." + name.removesuffix(".weight")
            a = state[f"{stem}.lora_A.default.weight"].double()
            b = state[f"{stem}.lora_B.default.weight"].double()
            expected = initial[name].double() + (8.0 / 4) * b @ a
            torch.testing.assert_close(weight.double(), expected, rtol=0, atol=1e-6)
            changed += not torch.equal(weight, initial[name])
        else:  # frozen: exactly as loaded
            assert torch.equal(weight, initial[name]), name
    assert changed == 4  # q and v of both layers moved
    result = export_run(
        recipe.run_dir,
        ExportSection(formats=["hf"], prompts_per_task=2, compared_prompts=2, max_new_tokens=4),
    )
    assert result is not None and (recipe.run_dir / "export" / "hf-float16").is_dir()


@pytest.mark.parametrize("lora", [None, {"r": 2}])
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, dataset, lora):
    grads = []
    for checkpointing in (False, True):
        raw = recipe_dict(
            tmp_path,
            dataset,
            student={"model": "tiny-student", "lora": lora, "gradient_checkpointing": checkpointing},
        )
        session = prepare_session(validate_recipe(raw))
        model = session.student.model
        on = getattr(model, "is_activation_checkpointing", None)  # transformers 5
        assert (model.is_gradient_checkpointing if on is None else on) is checkpointing
        accumulate_gradients(session, next_micro_batches(session))
        grads.append({n: p.grad for n, p in session.student.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-7)


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("student", [{"model": "tiny-student"}, {"model": "tiny-teacher", "layers": [0, 3]}])
def test_the_adapter_loads_with_peft_on_its_base_and_answers_as_the_merged_student(
    tmp_path, dataset, student
):
    from peft import PeftModel

    from distil.models import load_model
    from distil.train.adapters import adapter_base

    raw = recipe_dict(
        tmp_path,
        dataset,
        student={**student, "lora": {"r": 4, "alpha": 8.0}},
        train={"max_steps": 4, "save_every": 2, "batch_size": 4, "learning_rate": 1e-2},
    )
    recipe = validate_recipe(raw)
    train(recipe)
    ids = torch.tensor([[5, 17, 40, 99, 3, 250, 61, 8]])
    merged = _logits(load_model(str(recipe.run_dir / "student"), "student").model, ids)
    base = adapter_base(recipe.run_dir)
    assert not torch.allclose(_logits(base, ids), merged, atol=1e-3)  # the adapter moved it
    adapted = PeftModel.from_pretrained(base, recipe.run_dir / "adapter")
    # merged W + s B A against W x + s B (A x): float32 rounding apart
    torch.testing.assert_close(_logits(adapted, ids), merged, rtol=1e-4, atol=1e-4)
    config = json.loads((recipe.run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == student["model"] and config["r"] == 4
    # each checkpoint holds its adapters too: step 4's are the final ones
    at_4 = PeftModel.from_pretrained(
        adapter_base(recipe.run_dir), recipe.run_dir / "checkpoints" / "step-000004" / "adapter"
    )
    torch.testing.assert_close(_logits(at_4, ids), merged, rtol=1e-4, atol=1e-4)
    readme = (recipe.run_dir / "adapter" / "README.md").read_text()
    assert "adapter_base(RUN)" in readme


@pytest.mark.parametrize(
    ("model", "layers", "base"),
    [
        ("org/student", None, "org/student"),
        ("smollm2-135m-instruct", None, "HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("org/student", [0, 1], None),
    ],
)  # cut to some layers: not the Hub model any more
def test_the_adapter_card_names_a_hub_base_model(tmp_path, model, layers, base):
    from distil.recipe.models import StudentSection
    from distil.train.adapters import adapter_readme

    (tmp_path / "README.md").write_text(adapter_readme(StudentSection(model=model, layers=layers)))
    data = ModelCard.load(tmp_path / "README.md").data
    assert (data.library_name, data.base_model) == ("peft", base)


def test_save_merged_false_writes_the_adapter_only(tmp_path, dataset):
    raw = recipe_dict(
        tmp_path,
        dataset,
        student={"model": "tiny-student", "lora": {"r": 2, "save_merged": False}},
        train={"max_steps": 2},
    )
    recipe = validate_recipe(raw)
    result = train(recipe)
    assert result.student_dir is None and result.adapter_dir == recipe.run_dir / "adapter"
    assert not (recipe.run_dir / "student").exists()
    assert (recipe.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    card = ModelCard.load(recipe.run_dir / "adapter" / "README.md")  # as the Hub reads it
    assert card.data.library_name == "peft" and card.data.base_model is None  # tiny: no hub id
    assert "adapter_base(RUN)" in card.text
    summary = json.loads((recipe.run_dir / "train_summary.json").read_text())
    assert summary["student_dir"] is None and summary["adapter_dir"].endswith("adapter")
    from distil.errors import RecipeError
    from distil.pipeline import run_pipeline

    with pytest.raises(RecipeError, match="save_merged: false writes no RUN/student"):
        run_pipeline(recipe)
