"""The teacher's terms travel with the data: refused when they forbid training unless
acknowledged; recorded in every synth row, the dataset card and the student's model card."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import ModelCard

from distil.errors import RecipeError
from distil.hub import model_card
from distil.recipe import validate_recipe
from distil.synth.stage import run_synth
from tests.conftest import write_jsonl
from tests.synth.conftest import outputs, synth_recipe

FORBIDS = {"license": "https://provider.example/terms", "outputs_may_train": False}
ACK = "written permission from the provider, ref. 2026-114"


@pytest.fixture
def seed_file(tmp_path):
    return write_jsonl(
        tmp_path / "seeds.jsonl", [{"prompt": "Reverse the word: lantern"}, {"prompt": "What is 17 plus 25?"}]
    )


def _recipe(tmp_path, seed_file, terms):
    raw = synth_recipe(tmp_path, seed_file)
    raw["teacher"]["terms"] = terms
    return raw


def test_a_teacher_whose_terms_forbid_training_is_refused(tmp_path, seed_file):
    with pytest.raises(
        RecipeError,
        match=r"teacher\.terms.*forbid training other models.*"
        r"teacher\.terms\.acknowledged",
    ):
        validate_recipe(_recipe(tmp_path, seed_file, FORBIDS))
    with pytest.raises(RecipeError, match="acknowledges nothing"):
        validate_recipe(_recipe(tmp_path, seed_file, {**FORBIDS, "acknowledged": "  "}))
    assert not (tmp_path / "run").exists()


def test_an_acknowledged_run_records_the_terms_everywhere(tmp_path, seed_file):
    recipe = validate_recipe(_recipe(tmp_path, seed_file, {**FORBIDS, "acknowledged": ACK}))
    run_synth(recipe)
    rows, _, summary = outputs(tmp_path / "run")
    assert rows and all(json.loads(r["terms"]) == {**FORBIDS, "acknowledged": ACK} for r in rows)
    assert summary["terms"]["acknowledged"] == ACK
    card = (tmp_path / "run" / "data" / "README.md").read_text()
    assert "training other models on the teacher's outputs: **forbidden**" in card
    assert f'went ahead on the recipe\'s acknowledgement: "{ACK}"' in card


def _metadata(card: str, path) -> dict:
    """The card's metadata as huggingface_hub reads it from the file."""
    path.write_text(card)
    return ModelCard.load(path).data.to_dict()


def test_the_model_card_names_teacher_data_and_terms(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    pq.write_table(pa.table({"prompt": ["a"], "response": ["b"]}), run / "data" / "train.parquet")
    (run / "recipe.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "demo",
                "teacher": {"model": "demo", "terms": {**FORBIDS, "acknowledged": ACK}},
                "student": {"model": "demo", "layers": [0, 9]},
                "data": {"train": str(run / "data" / "train.parquet")},
            }
        )
    )
    card = model_card(run)
    meta = _metadata(card, tmp_path / "README.md")
    assert "base_model" not in meta and meta["teacher"] == "demo"  # demo is no Hub model
    assert meta["tags"] == ["distillation"] and "datasets" not in meta  # a local file is no Hub id
    assert meta["license"] == "other" and meta["license_link"] == FORBIDS["license"]
    assert meta["teacher_terms"] == {**FORBIDS, "acknowledged": ACK}
    assert meta["data_fingerprint"].startswith("sha256:") and len(meta["data_fingerprint"]) == 71
    assert ACK in card and "**forbidden**" in card
    assert "training data: `data/train.parquet`" in card and str(tmp_path) not in card
    (run / "recipe.yaml").write_text(
        yaml.safe_dump(
            {
                "teacher": {"model": "t", "terms": {"license": "Apache-2.0", "outputs_may_train": True}},
                "student": {"model": "s"},
            }
        )
    )
    meta = _metadata(model_card(run), tmp_path / "README.md")
    assert meta["license"] == "apache-2.0" and "license_link" not in meta
    assert _metadata(model_card(None), tmp_path / "README.md")["license"] == "unknown"
