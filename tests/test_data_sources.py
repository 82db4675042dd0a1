"""The dataset layouts users bring: JSON arrays, save_to_disk and hub-layout folders, chat
`messages` (assistant turns only are learned), TRL's conversational prompt/completion, a
system prompt and a chat template file; each read from real files the test writes."""

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distil.data import encode_pairs, load_pairs
from distil.errors import DataError
from distil.loading import load_splits, set_chat_template
from distil.losses import IGNORE_INDEX
from distil.models import byte_tokenizer
from distil.recipe import DataSection
from tests.conftest import skill_rows, write_jsonl

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ]
    },
    {"messages": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "1"}]},
]


def _learned(example, tokenizer) -> list[str]:
    """The labelled stretches of an example, decoded one by one."""
    spans, current = [], []
    for label in [*example.labels, IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return spans


def test_json_array_save_to_disk_and_hub_folders_give_the_jsonl_pairs(tmp_path):
    rows = skill_rows(12)
    expected = load_pairs(write_jsonl(tmp_path / "d.jsonl", rows))
    (tmp_path / "d.json").write_text(json.dumps(rows, indent=1))
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:3])}
    ).save_to_disk(str(tmp_path / "saved"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hub/data/train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:3]), tmp_path / "hub/data/test-00000-of-00001.parquet")
    for source in ("d.json", "saved", "one", "hub"):
        assert load_pairs(tmp_path / source) == expected, source
    for source in ("saved", "hub"):
        data = DataSection(train=str(tmp_path / source), eval=str(tmp_path / source))
        train, held = load_splits(data, seed=0)
        assert train == expected and held == expected[:3], source
    with pytest.raises(DataError, match=r"no split 'dev' \(splits: train, test\)"):
        load_pairs(tmp_path / "saved", split="dev")


def test_json_array_errors_name_the_item(tmp_path):
    (tmp_path / "d.json").write_text('[{"prompt": "a", "response": "b"}, 3]')
    with pytest.raises(DataError, match="item 2 of the array is not a JSON object"):
        load_pairs(tmp_path / "d.json")
    (tmp_path / "e.json").write_text('[{"prompt": "a", "response": 5}]')
    with pytest.raises(DataError, match=r"e.json item 1: 'response' is a number"):
        load_pairs(tmp_path / "e.json")


def test_chat_messages_learn_every_assistant_turn_and_nothing_else(tmp_path):
    tokenizer = byte_tokenizer()
    pairs = load_pairs(write_jsonl(tmp_path / "chat.jsonl", CHAT))
    assert [(p.prompt, p.response) for p in pairs] == [("again", "ok"), ("one", "1")]
    multi, single = encode_pairs(tokenizer, pairs, "chat", 256)
    assert tokenizer.decode(multi.input_ids) == (
        "<|system|>Be brief.<|end|><|user|>hi<|end|><|assistant|>yo<|end|>"
        "<|user|>again<|end|><|assistant|>ok<|end|>"
    )
    assert _learned(multi, tokenizer) == ["yo<|end|>", "ok<|end|>"]
    # a single user/assistant chat encodes exactly as the same prompt/response pair
    (plain_pair,) = load_pairs(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "one", "response": "1"}]))
    assert single == encode_pairs(tokenizer, [plain_pair], "chat", 256)[0]
    # without a template: texts one a line, the end token after each answer
    multi_plain = encode_pairs(tokenizer, pairs, "plain", 256)[0]
    assert _learned(multi_plain, tokenizer) == ["yo<|end|>", "ok<|end|>"]
    assert tokenizer.decode(multi_plain.input_ids) == "Be brief.\n\nhiyo<|end|>againok<|end|>"
    # cut at max_length from the end, the first answer kept
    short = encode_pairs(tokenizer, pairs, "chat", 22)[0]
    assert len(short.input_ids) == 22 and _learned(short, tokenizer) == ["yo<|end|>"]


def test_trl_conversational_prompt_completion_parquet(tmp_path):
    rows = [
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "completion": [{"role": "assistant", "content": "4"}],
        }
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "trl.parquet")
    (pair,) = load_pairs(tmp_path / "trl.parquet")
    assert (pair.prompt, pair.response) == ("2+2?", "4")
    strings = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "2+2?", "completion": "4"}])
    (same,) = load_pairs(strings)
    assert (same.prompt, same.response) == ("2+2?", "4")


def test_system_prompt_and_chat_template_file(tmp_path):
    tokenizer = byte_tokenizer()
    template = tmp_path / "t.jinja"
    template.write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    set_chat_template(tokenizer, str(template))
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "hi", "a": "yo"}])
    (pair,) = load_pairs(path, "q", "a", system_prompt="Be brief.")
    assert pair.sample_id != load_pairs(path, "q", "a")[0].sample_id  # stores keep them apart
    (example,) = encode_pairs(tokenizer, [pair], "auto", 256)
    assert tokenizer.decode(example.input_ids) == "[system] Be brief.\n[user] hi\n[assistant] yo<|end|>"
    assert _learned(example, tokenizer) == ["yo<|end|>"]
    with pytest.raises(DataError, match="data.chat_template 'nope.jinja' cannot be read"):
        set_chat_template(tokenizer, "nope.jinja")


@pytest.mark.parametrize(
    "messages,match",
    [
        ([{"role": "user", "content": "hi"}], "no assistant turn with text"),
        ([{"role": "bot", "content": "hi"}], "role 'bot'; use one of system, user"),
        ([{"role": "assistant", "content": "yo"}], "comes before any user turn"),
        ("hi", "messages must be a non-empty list"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "'image_url' content part"),
    ],
)
def test_bad_chats_name_the_row(tmp_path, messages, match):
    path = write_jsonl(tmp_path / "d.jsonl", [CHAT[1], {"messages": messages}])
    with pytest.raises(DataError, match=rf"d.jsonl line 2.*{match}"):
        load_pairs(path)


def test_a_hub_id_that_cannot_be_reached_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"cannot load hub dataset 'nobody-x/no-such-set'.*HF_HUB_OFFLINE"):
        load_pairs("nobody-x/no-such-set")
    with pytest.raises(DataError, match="dataset not found: missing.jsonl"):
        load_pairs("missing.jsonl")


def test_a_chat_dataset_is_captured_and_trained_on_from_the_store(tmp_path):
    from distil.capture import capture
    from distil.recipe import validate_recipe
    from distil.signals import SignalStore
    from distil.train.stage import train
    from tests.conftest import recipe_dict

    rows = [
        {
            "messages": [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["response"]},
                {"role": "user", "content": "again"},
                {"role": "assistant", "content": r["response"][::-1]},
            ]
        }
        for r in skill_rows(24)
    ]
    raw = recipe_dict(
        tmp_path,
        write_jsonl(tmp_path / "chat.jsonl", rows),
        train={"max_steps": 2, "batch_size": 4, "save_every": 2},
        capture={"top_k": 8},
    )
    raw["data"].update(eval_fraction=0.0, max_length=64, system_prompt="Answer.")
    capture(validate_recipe(raw))
    tokenizer = byte_tokenizer()
    with SignalStore(tmp_path / "run" / "signals") as store:
        pairs = load_pairs(tmp_path / "chat.jsonl", system_prompt="Answer.")
        examples = encode_pairs(tokenizer, pairs, "auto", 64)
        # one stored position per labelled token: both assistant turns, nothing of the prompts
        assert store.num_tokens == sum(sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in examples)
    result = train(validate_recipe({**raw, "signals": {"path": "capture"}}))
    assert result.steps == 2 and result.final_loss is not None
