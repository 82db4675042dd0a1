"""Datasets: formats, masks, splits, seeded order, and clear errors."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distil.batching import batches_per_epoch, collate, micro_batch_indices
from distil.data import Pair, encode_pairs, load_pairs, split_pairs
from distil.errors import DataError
from distil.losses import IGNORE_INDEX
from distil.models import byte_tokenizer
from tests.conftest import skill_rows, write_jsonl


def test_parquet_and_jsonl_give_the_same_pairs(tmp_path):
    rows = skill_rows(10)
    jsonl = write_jsonl(tmp_path / "d.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:4]), tmp_path / "shards" / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[4:]), tmp_path / "shards" / "b.parquet")
    got = [load_pairs(p) for p in (jsonl, tmp_path / "d.parquet", tmp_path / "shards")]
    assert got[0] == got[1] == got[2] and len(got[0]) == 10


def test_id_column_is_the_sample_id(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 7, "prompt": "p", "response": "r"}])
    assert load_pairs(path)[0].sample_id == "7"


def test_response_tokens_are_labelled_prompt_and_padding_are_not():
    tokenizer = byte_tokenizer()
    examples = encode_pairs(tokenizer, [Pair("a", "hi", "yo"), Pair("b", "hello", "x")], "chat", 64)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    n_prompt = len(tokenizer(prompt, add_special_tokens=False).input_ids)
    first = examples[0]
    assert first.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert tokenizer.decode(first.labels[n_prompt:]) == "yo<|end|>"
    batch = collate(examples, tokenizer.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    pad = batch["attention_mask"] == 0
    assert (batch["labels"][pad] == IGNORE_INDEX).all() and pad.any()


def test_long_rows_are_cut_and_keep_a_response_token():
    tokenizer = byte_tokenizer()
    (example,) = encode_pairs(tokenizer, [Pair("a", "p" * 100, "r" * 100)], "plain", 16)
    assert len(example.input_ids) == 16
    assert sum(label != IGNORE_INDEX for label in example.labels) >= 1


def test_split_is_seeded_and_disjoint():
    pairs = [Pair(str(i), f"p{i}", f"r{i}") for i in range(50)]
    train, held = split_pairs(pairs, 0.2, seed=3)
    assert len(held) == 10 and len(train) == 40
    assert not {p.sample_id for p in train} & {p.sample_id for p in held}
    assert split_pairs(pairs, 0.2, seed=3) == (train, held)
    assert split_pairs(pairs, 0.2, seed=4) != (train, held)


def test_micro_batches_cover_each_epoch_once_and_reshuffle():
    n, size = 10, 4
    per_epoch = batches_per_epoch(n, size)
    first = [i for b in range(per_epoch) for i in micro_batch_indices(b, n, size, seed=0)]
    second = [i for b in range(per_epoch, 2 * per_epoch) for i in micro_batch_indices(b, n, size, seed=0)]
    assert sorted(first) == sorted(second) == list(range(n)) and first != second
    assert micro_batch_indices(5, n, size, seed=0) == micro_batch_indices(5, n, size, seed=0)


def test_processes_get_disjoint_shards():
    shards = [micro_batch_indices(0, 16, 4, seed=1, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 4 and not set(shards[0]) & set(shards[1])


@pytest.mark.parametrize(
    "content,suffix,match",
    [
        (None, ".jsonl", "dataset not found"),
        ("", ".jsonl", r"is empty \(no rows\)"),
        ('{"prompt": "a", "response": ""}\n', ".jsonl", "no usable rows"),
        ('{"prompt": "a"\n', ".jsonl", "line 1 is not valid JSON"),
        ("[1, 2]\n", ".jsonl", "line 1 holds a list"),
        ('{"question": "a", "answer": "b"}\n', ".jsonl", r"no column 'prompt', 'response'.*question"),
        ("a,b\n", ".csv", "unsupported dataset format"),
        ("not parquet", ".parquet", "not a readable Parquet file"),
    ],
)
def test_bad_datasets_name_the_problem(tmp_path, content, suffix, match):
    path = tmp_path / f"d{suffix}"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_pairs(path)


def test_a_truncated_response_is_learned_without_an_end_of_turn_token(tmp_path):
    """finish_reason `length` (synth keeps such rows with drop_truncated: false): the teacher
    never ended the answer, so no end token is a target; a finished answer keeps its own."""
    tokenizer = byte_tokenizer()
    eos = tokenizer.eos_token_id
    rows = [
        {"prompt": "Count to nine", "response": "1 2 3 4", "finish_reason": "length"},
        {"prompt": "Count to two", "response": "1 2", "finish_reason": "stop"},
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"},
                {"role": "user", "content": "more"},
                {"role": "assistant", "content": "a b c"},
            ],
            "finish_reason": "length",
        },
    ]
    cut, done = load_pairs(write_jsonl(tmp_path / "p.jsonl", rows[:2]))
    (chat,) = load_pairs(write_jsonl(tmp_path / "c.jsonl", rows[2:]))
    assert (cut.truncated, done.truncated, chat.truncated) == (True, False, True)
    for template in ("chat", "plain"):
        cut_example, done_example, chat_example = encode_pairs(tokenizer, [cut, done, chat], template, 64)
        learned = [
            [t for t in e.labels if t != IGNORE_INDEX] for e in (cut_example, done_example, chat_example)
        ]
        assert eos not in learned[0] and tokenizer.decode(learned[0]) == "1 2 3 4"
        assert learned[1][-1] == eos and tokenizer.decode(learned[1]) == "1 2<|end|>"
        # a conversation: only its last assistant turn was cut off
        assert tokenizer.decode(learned[2]) == "yo<|end|>a b c" and learned[2].count(eos) == 1
