"""The cards as the Hub reads them: huggingface_hub's own ModelCard / DatasetCard load the
front matter distil writes (library_name, base_model as a hub id where one is known, licence,
teacher and terms), and RUN/student carries its card when training ends."""

import yaml
from huggingface_hub import DatasetCard, ModelCard

from distil.hub import hub_model_id, model_card
from distil.hub.metadata import dataset_metadata, front_matter, size_category
from distil.hub.push import push_plan
from distil.recipe import validate_recipe
from distil.recipe.terms import TermsSection
from distil.synth.stage import run_synth
from distil.train import train
from tests.conftest import recipe_dict, write_jsonl
from tests.synth.conftest import synth_recipe


def _model_meta(tmp_path, recipe: dict) -> dict:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "README.md").write_text(model_card(run))
    return ModelCard.load(tmp_path / "README.md").data.to_dict()


def test_a_known_student_is_named_by_its_hub_id(tmp_path):
    meta = _model_meta(
        tmp_path, {"teacher": {"model": "demo"}, "student": {"model": "smollm2-135m-instruct"}}
    )
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["base_model_relation"] == "finetune"


def test_a_hub_id_is_kept_and_a_local_folder_is_not_a_base_model(tmp_path):
    meta = _model_meta(
        tmp_path,
        {
            "teacher": {"model": "t"},
            "student": {"model": "org/student"},
            "data": {"train": "org/some-dataset"},
        },
    )
    assert meta["base_model"] == "org/student" and meta["datasets"] == ["org/some-dataset"]
    (tmp_path / "org" / "student").mkdir(parents=True)  # the same name, now a folder here
    assert hub_model_id(str(tmp_path / "org" / "student")) is None
    meta = _model_meta(
        tmp_path, {"teacher": {"model": "t"}, "student": {"model": str(tmp_path / "org" / "student")}}
    )
    assert "base_model" not in meta and "base_model_relation" not in meta
    assert meta["library_name"] == "transformers"


def test_the_dataset_card_front_matter_loads_with_datasetcard(tmp_path):
    terms = TermsSection(license="https://provider.example/terms", outputs_may_train=True)
    meta = dataset_metadata(name="r", teacher="gpt-x", terms=terms, rows=1500, license=terms.license)
    (tmp_path / "README.md").write_text(front_matter(meta) + "# r\n")
    data = DatasetCard.load(tmp_path / "README.md").data.to_dict()
    assert data["license"] == "other" and data["license_link"] == terms.license
    assert data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["1K<n<10K"]
    assert data["teacher"] == "gpt-x"
    assert data["teacher_terms"] == {"license": terms.license, "outputs_may_train": True}
    assert data["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "train.parquet"}]}
    ]


def test_size_categories_follow_the_hubs_bounds():
    assert [size_category(n) for n in (0, 999, 1000, 9999, 10_000, 10**9)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "1K<n<10K",
        "10K<n<100K",
        "n>1B",
    ]


def test_the_trained_student_has_its_card(tmp_path, dataset):
    recipe = validate_recipe(recipe_dict(tmp_path, dataset, train={"max_steps": 2}))
    train(recipe)
    card = ModelCard.load(recipe.run_dir / "student" / "README.md")
    assert card.data.library_name == "transformers" and card.data.teacher == "tiny-teacher"
    assert "# test: a student distilled with distil" in card.text
    assert str(tmp_path) not in card.content  # no path of this machine in a shared card
    written = {p.name for p in (recipe.run_dir / "student").iterdir()}
    assert set(push_plan(recipe.run_dir, "student").files) == written  # distil push sends all


def test_no_path_of_this_machine_in_the_cards(tmp_path, tiny_models):
    teacher = str(tiny_models["tiny-teacher"])  # a local folder, written as its absolute path
    meta = _model_meta(
        tmp_path, {"teacher": {"model": teacher}, "student": {"model": str(tiny_models["tiny-student"])}}
    )
    assert meta["teacher"] == "tiny-teacher" and "base_model" not in meta
    assert teacher not in (tmp_path / "README.md").read_text()
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"prompt": "Name a prime number."}])
    raw = synth_recipe(tmp_path, seeds)
    raw["teacher"]["model"] = teacher
    run_synth(validate_recipe(raw))
    card = tmp_path / "run" / "data" / "README.md"
    assert DatasetCard.load(card).data.teacher == "tiny-teacher"
    assert str(tiny_models["tiny-teacher"].parent) not in card.read_text()
