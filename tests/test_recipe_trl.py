"""A TRL or transformers argument name in a recipe is answered with the distil field it is,
wherever it was written; the recipe reference (docs/recipe.md) lists every one of them."""

import re

import pytest

from distil.errors import RecipeError
from distil.recipe import recipe_reference, validate_recipe
from distil.recipe.load import recipe_fields
from distil.recipe.trl import TRL_NAMES
from tests.conftest import REPO

BASE = {
    "teacher": {"model": "tiny-teacher"},
    "student": {"model": "tiny-student"},
    "data": {"train": "d.jsonl"},
}

# fmt: off
ASKED = ["per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
         "max_steps", "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps",
         "weight_decay", "max_grad_norm", "output_dir", "logging_steps", "save_steps",
         "save_total_limit", "seed", "bf16", "fp16", "gradient_checkpointing", "report_to", "lmbda",
         "beta", "temperature", "max_new_tokens", "max_length", "max_seq_length", "seq_kd",
         "dataset_text_field", "packing", "eval_steps", "resume_from_checkpoint",
         "model_init_kwargs", "teacher_model_name_or_path", "use_vllm"]
"""The names the toolkit promises to answer (issue "At home for a TRL user")."""
# fmt: on


def _error(raw: dict) -> str:
    with pytest.raises(RecipeError) as info:
        validate_recipe(raw)
    return str(info.value)


def _where(name: str) -> list[tuple[dict, str]]:
    """The name at the top of a recipe and inside a section, wherever it is not a field."""
    fields = set(recipe_fields())
    places = [({**BASE, name: 1}, name)] if name not in fields else []
    section = next(s for s in ("train", "eval", "distill") if f"{s}.{name}" not in fields)
    return [*places, ({**BASE, section: {name: 1}}, f"{section}.{name}")]


@pytest.mark.parametrize("name", ASKED)
def test_each_asked_name_is_answered_at_the_top_and_in_a_section(name):
    equivalent = TRL_NAMES[name]
    for raw, where in _where(name):
        message = _error(raw)
        if equivalent.field is None:
            assert f"unknown key {where}; TRL's {name}: {equivalent.note}" in message
        else:
            assert f"unknown key {where}; did you mean {equivalent.field}? (TRL: {name}" in message


def test_the_message_reads_as_promised():
    assert _error({**BASE, "per_device_train_batch_size": 8}) == (
        "recipe: unknown key per_device_train_batch_size; did you mean train.batch_size? "
        "(TRL: per_device_train_batch_size)"
    )
    assert (
        "TRL's seq_kd: distil trains sequence-level KD with distill.kd_weight=0, "
        "distill.ce_weight=1 on synthesised data" in _error({**BASE, "seq_kd": True})
    )


def test_every_named_field_exists():
    fields = set(recipe_fields())
    named = {e.field for e in TRL_NAMES.values() if e.field is not None}
    assert named <= fields, named - fields


def test_other_unknown_keys_get_the_closest_name_in_their_section_or_elsewhere():
    assert "unknown key train.batchsize (did you mean batch_size?)" in _error(
        {**BASE, "train": {"batchsize": 2}}
    )
    assert "unknown key train.divergence (did you mean distill.divergence?)" in _error(
        {**BASE, "train": {"divergence": "forward_kl"}}
    )
    assert "unknown key eval.kd_wieght (did you mean distill.kd_weight?)" in _error(
        {**BASE, "eval": {"kd_wieght": 1}}
    )
    assert re.search(r"unknown key train\.zzz; remove it", _error({**BASE, "train": {"zzz": 1}}))


def test_the_recipe_reference_lists_every_name_and_field():
    reference = recipe_reference()  # docs/recipe.md (tests/test_recipe.py keeps it current)
    table = reference[reference.index("## Coming from TRL") :]
    for name, equivalent in TRL_NAMES.items():
        field = f"`{equivalent.field}`" if equivalent.field else "none"
        assert f"| `{name}` | {field} | {equivalent.note} |" in table, name
    assert "[trl.md](trl.md)" in reference and (REPO / "docs" / "trl.md").is_file()
