"""The synth stage with a local teacher: every prompt accounted for, provenance, resume, a whole run."""

import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from distil import __version__
from distil.data import load_pairs
from distil.recipe import validate_recipe
from distil.synth.stage import run_synth
from distil.tasks import task_names
from tests.synth.conftest import SEEDS, journal_lines, outputs, synth_recipe


def test_local_synth_accounts_for_every_prompt_and_resumes(tmp_path, seed_file):
    task = task_names()[0]
    raw = synth_recipe(tmp_path, seed_file, prompts={"tasks": [task], "per_task": 4}, license="test terms")
    recipe = validate_recipe(raw)
    result = run_synth(recipe)
    run = tmp_path / "run"
    rows, rejects, summary = outputs(run)
    assert result.kept == len(rows) and result.train_path == run / "data" / "train.parquet"
    # 6 seed rows: one empty, one identical to an earlier one; then 4 task prompts
    assert sorted((r["kind"], r["reason"]) for r in rejects) == [
        ("prompt", "empty_prompt"),
        ("prompt", "near_duplicate"),
    ]
    assert len(rows) == 4 + 4 and len({r["id"] for r in rows}) == 8
    assert [r["prompt"] for r in rows[:4]] == [p for p in dict.fromkeys(SEEDS) if p]
    row = rows[0]
    assert row["backend"] == "local" and row["teacher"] == "tiny-teacher" and row["endpoint"] is None
    assert row["toolkit_version"] == __version__ and row["license"] == "test terms"
    assert row["seed"] == 0 and row["completion_tokens"] == 6 and row["finish_reason"] == "length"
    assert row["id"] == row["request_key"][:16] and row["source"] == "file"
    assert {r["source"] for r in rows[4:]} == {f"task:{task}"}
    pairs = load_pairs(result.train_path)
    assert [p.sample_id for p in pairs] == [r["id"] for r in rows]
    assert summary["responses"] == {"requested": 8, "kept": 8, "not_sent": 0}
    card = (run / "data" / "README.md").read_text()
    assert "`tiny-teacher`" in card and "test terms" in card and "| responses kept" in card
    meta = DatasetCard.load(run / "data" / "README.md").data  # as the Hub reads it
    assert (meta.teacher, meta.license, meta.size_categories) == ("tiny-teacher", "other", ["n<1K"])

    before = pq.read_table(result.train_path)
    again = run_synth(recipe)
    assert again.summary["sent_this_run"] == 0 and len(journal_lines(run)) == 8
    assert pq.read_table(result.train_path).equals(before)


def test_dry_run_counts_what_the_journal_lacks(tmp_path, seed_file):
    recipe = validate_recipe(synth_recipe(tmp_path, seed_file))
    plan = run_synth(recipe, dry_run=True)
    assert plan["requests"] == {"planned": 4, "answered_in_journal": 0, "to_send": 4}
    assert plan["prompts"]["dropped"] == 2 and plan["cost"]["at_most"] == 0.0
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
    run_synth(recipe)
    plan = run_synth(recipe, dry_run=True)
    assert plan["requests"]["to_send"] == 0 and plan["tokens"]["completion_at_most"] == 0


def test_a_whole_run_trains_on_the_synthesised_data(tmp_path, seed_file):
    from distil.pipeline import run_pipeline

    recipe = validate_recipe(synth_recipe(tmp_path, seed_file, prompts={"tasks": ["all"], "per_task": 3}))
    run_pipeline(recipe)
    run = tmp_path / "run"
    for stage in ("synth", "train", "eval"):
        assert (run / "stages" / f"{stage}.json").is_file()
    assert (run / "student").is_dir() and (run / "eval.json").is_file()


def test_a_local_teacher_writes_expansions_in_batches(tmp_path, seed_file, monkeypatch):
    from distil.teachers.local import LocalTeacher

    sizes = []
    generate = LocalTeacher.generate

    def counted(self, prompts, sampling):
        sizes.append(len(prompts))
        return generate(self, prompts, sampling)

    monkeypatch.setattr(LocalTeacher, "generate", counted)
    raw = synth_recipe(
        tmp_path, seed_file, prompts={"expand": 10}, batch_size=4, sampling={"temperature": 0.7}
    )
    run_synth(validate_recipe(raw))
    # 10 expansions in batches of 4 (a seed per request made them 10 calls of 1), then the
    # responses to the 4 distinct seeds and whatever expansions were kept
    assert sizes[:3] == [4, 4, 2]
