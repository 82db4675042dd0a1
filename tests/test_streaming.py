"""data.streaming: rows read while training (JSONL line by line, Parquet batch by batch, an
IterableDataset row by row), a hash split, a seeded shuffle buffer, epochs counted in a
pass, and a resume that re-reads to its position and ends with an uninterrupted run's
weights."""

import math
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.torch import load_file

from distil.data import load_pairs
from distil.errors import DataError, RecipeError
from distil.recipe import DataSection, validate_recipe
from distil.streaming import RowStream, shuffled
from distil.train import run_training
from distil.train.session import prepare_session
from tests.cli_helpers import run_cli
from tests.conftest import recipe_dict, skill_rows, write_jsonl

STREAMED = {"streaming": True, "shuffle_buffer": 16}


def _recipe(tmp_path, dataset, name="run", data=None, **train):
    raw = recipe_dict(
        tmp_path,
        dataset,
        output_dir=str(tmp_path / name),
        train={"max_steps": 12, "save_every": 4, "keep_checkpoints": 3, **train},
    )
    raw["data"].update({**STREAMED, **(data or {})})
    return validate_recipe(raw)


def test_the_shuffle_buffer_gives_every_item_once_in_a_seeded_order():
    items = list(range(100))
    first = list(shuffled(items, 10, random.Random(3)))
    assert sorted(first) == items and first != items
    assert first == list(shuffled(items, 10, random.Random(3)))
    assert first != list(shuffled(items, 10, random.Random(4)))
    # a buffer as large as the data draws among all of it: the first item can come last
    lasts = {list(shuffled(items, 100, random.Random(s)))[-1] for s in range(20)}
    assert len(lasts) > 10


def test_the_hash_split_holds_out_about_the_share_and_each_row_on_one_side(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", skill_rows(400))
    stream = RowStream(DataSection(train=str(data), eval_fraction=0.2, streaming=True), seed=0)
    train_ids = [p.sample_id for p in stream.train_pairs()]
    held_ids = [p.sample_id for p in stream.held_out()]
    assert not set(train_ids) & set(held_ids)
    assert len(train_ids) + len(held_ids) == 400
    assert 0.13 < len(held_ids) / 400 < 0.27  # binomial(400, 0.2): 4 standard deviations
    assert [p.sample_id for p in stream.held_out(limit=5)] == held_ids[:5]
    other = RowStream(DataSection(train=str(data), eval_fraction=0.2, streaming=True), seed=1)
    assert {p.sample_id for p in other.held_out()} != set(held_ids)


def test_global_batches_run_on_across_epochs_and_start_anywhere(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", skill_rows(20))
    stream = RowStream(
        DataSection(train=str(data), eval_fraction=0.0, streaming=True, shuffle_buffer=4), seed=0
    )
    batches = stream.global_batches(size=6)
    straight = [[p.sample_id for p in next(batches)] for _ in range(8)]  # 48 rows: 2.4 epochs
    epoch_0 = [p.sample_id for p in stream.epoch(0)]
    epoch_1 = [p.sample_id for p in stream.epoch(1)]
    assert sum(straight, [])[:40] == epoch_0 + epoch_1
    assert sorted(epoch_0) == sorted(epoch_1) and epoch_0 != epoch_1
    later = RowStream(stream.data, seed=0).global_batches(size=6, start=5)  # fresh: length unknown
    assert [[p.sample_id for p in next(later)] for _ in range(3)] == straight[5:]


def test_a_streamed_parquet_file_gives_the_rows_of_the_same_jsonl(tmp_path):
    rows = skill_rows(50)
    jsonl = write_jsonl(tmp_path / "d.jsonl", rows)
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=7)
    read = [
        [
            (p.sample_id, p.prompt, p.response)
            for p in RowStream(DataSection(train=str(path), streaming=True), seed=0).train_pairs()
        ]
        for path in (jsonl, parquet)
    ]
    assert read[0] == read[1] and len(read[0]) > 40


@pytest.mark.parametrize(
    "rows",
    [
        skill_rows(12),
        [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(12)],  # TRL's, not templated
        [
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(12)
        ],
    ],
    ids=["pairs", "prompt_completion", "messages"],
)
def test_a_streamed_row_is_the_pair_the_memory_path_makes(tmp_path, rows):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    streamed = list(
        RowStream(DataSection(train=str(path), streaming=True, eval_fraction=0.0), seed=0).train_pairs()
    )
    assert streamed == load_pairs(path)


def test_epochs_count_the_rows_first(tmp_path, dataset):
    recipe = _recipe(tmp_path, dataset, max_steps=None, epochs=2, batch_size=8)
    session = prepare_session(recipe)
    rows = session.rows.count()
    assert rows == sum(1 for _ in RowStream(recipe.data, recipe.seed).train_pairs())
    assert session.state.total_steps == 2 * math.ceil(rows / 8)
    assert session.examples == []  # nothing tokenised up front


def test_a_resumed_streamed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, dataset):
    straight = _recipe(tmp_path, dataset, "straight", eval_every=4, eval_rows=4)
    run_training(straight)
    rewound = _recipe(tmp_path, dataset, "rewound", eval_every=4, eval_rows=4)
    run_training(rewound)
    run_training(rewound, resume=rewound.run_dir / "checkpoints" / "step-000004")
    a = load_file(straight.run_dir / "student" / "model.safetensors")
    b = load_file(rewound.run_dir / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_the_stream_and_the_memory_path_train_on_the_same_rows_in_another_order(tmp_path, dataset):
    recipe = _recipe(tmp_path, dataset, data={"eval_fraction": 0.0, "shuffle_buffer": 1})
    rows = prepare_session(recipe).rows
    streamed = [e.sample_id for n in range(12) for e in rows.micro_batch(n)]  # 96 rows: 1 epoch
    in_memory = validate_recipe(
        {**recipe.model_dump(mode="json"), "data": {**recipe.data.model_dump(), "streaming": False}}
    )
    memory_rows = prepare_session(in_memory).rows
    memorised = [e.sample_id for n in range(12) for e in memory_rows.micro_batch(n)]
    assert sorted(streamed) == sorted(memorised) and streamed != memorised
    assert streamed == [p.sample_id for p in RowStream(recipe.data, 0).train_pairs()]  # buffer 1


def test_a_bad_line_further_on_is_one_line_when_the_stream_reaches_it(tmp_path, monkeypatch, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", skill_rows(30))
    with data.open("a") as f:
        f.write("{not json\n")
    recipe = tmp_path / "recipe.yaml"
    raw = recipe_dict(tmp_path, data, train={"max_steps": 6, "batch_size": 8, "save_every": 6})
    raw["data"].update(STREAMED)
    recipe.write_text(yaml.safe_dump(raw))
    result = run_cli(monkeypatch, capsys, "train", str(recipe))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.error_lines() if line.startswith("error:")]
    assert errors == [result.error_lines()[-1]]  # after the training's progress lines
    assert "d.jsonl line 31 is not valid JSON" in errors[0]
    assert not (tmp_path / "run" / "student").exists()


def test_a_bad_first_row_fails_before_any_model_loads(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "answer": "x"}] * 3)
    with pytest.raises(DataError, match="has no column 'response'|no 'response'"):
        RowStream(DataSection(train=str(data), streaming=True), seed=0)


@pytest.mark.parametrize("sections", [{"signals": {"path": "signals"}}, {"compare": True}])
def test_what_needs_every_row_in_memory_is_refused_with_streaming(tmp_path, dataset, sections):
    raw = recipe_dict(tmp_path, dataset, **sections)
    raw["data"].update(STREAMED)
    with pytest.raises(RecipeError, match="data.streaming reads the rows while training"):
        validate_recipe(raw)


def test_a_folder_that_cannot_stream_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    with pytest.raises(DataError, match="holds no .parquet files; data.streaming reads"):
        RowStream(DataSection(train=str(folder), streaming=True), seed=0)
