"""Prompt sources: seed files in three formats, task prompts without answers, expansion requests."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distil.recipe.synth import SynthPromptsSection
from distil.synth import SynthError
from distil.synth.prompts import clean_expansion, expansion_messages, seed_prompts
from distil.tasks import generate_items, task_names
from tests.conftest import write_jsonl


def test_seed_files_in_every_format(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in ["a?", "  ", None, "b?"]])
    pq.write_table(pa.table({"question": ["c?", "d?"]}), tmp_path / "p.parquet")
    (tmp_path / "p.txt").write_text("e?\n\n f? \n")
    items, rejects = seed_prompts(SynthPromptsSection(file=str(tmp_path / "p.jsonl")), seed=0)
    assert [i.text for i in items] == ["a?", "b?"] and {i.source for i in items} == {"file"}
    assert [r.reason for r in rejects] == ["empty_prompt", "empty_prompt"]
    assert "row 2 of" in rejects[0].detail
    items, _ = seed_prompts(SynthPromptsSection(file=str(tmp_path / "p.parquet"), field="question"), 0)
    assert [i.text for i in items] == ["c?", "d?"]
    items, _ = seed_prompts(SynthPromptsSection(file=str(tmp_path / "p.txt")), 0)
    assert [i.text for i in items] == ["e?", "f?"]


def test_bad_seed_files(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"text": "a"}])
    with pytest.raises(SynthError, match=r"no column 'prompt' \(columns: text\); set synth.prompts.field"):
        seed_prompts(SynthPromptsSection(file=str(tmp_path / "p.jsonl")), 0)
    with pytest.raises(SynthError, match="synth.prompts.file: dataset not found"):
        seed_prompts(SynthPromptsSection(file=str(tmp_path / "none.jsonl")), 0)


def test_task_prompts_are_train_prompts_without_answers():
    name = task_names()[0]
    items, _ = seed_prompts(SynthPromptsSection(tasks=[name], per_task=20), seed=3)
    train = generate_items("train", 20, 3, [name])
    heldout = {i.prompt for i in generate_items("heldout", 50, 3, [name])}
    assert [i.text for i in items] == [t.prompt for t in train]
    assert {i.source for i in items} == {f"task:{name}"}
    assert not heldout & {i.text for i in items}
    assert all(t.answer not in i.text for t, i in zip(train, items, strict=True) if len(t.answer) > 3)
    everything, _ = seed_prompts(SynthPromptsSection(tasks=["all"], per_task=2), seed=3)
    assert {i.source for i in everything} == {f"task:{n}" for n in task_names()}


def test_expansion_requests_are_seeded_samples_of_the_seeds():
    seeds = [f"seed prompt {i}" for i in range(10)]
    first = expansion_messages(seeds, 0, examples=3, seed=0)
    assert first == expansion_messages(seeds, 0, examples=3, seed=0)
    assert first != expansion_messages(seeds, 1, examples=3, seed=0)
    content = first[0]["content"]
    assert sum(s in content for s in seeds) == 3 and "1. seed prompt" in content
    assert expansion_messages(seeds[:2], 5, examples=3, seed=0)[0]["content"].count("seed prompt") == 2


@pytest.mark.parametrize(
    "reply,instruction",
    [
        ("4. Write a limerick about rain.\n5. Another one", "Write a limerick about rain."),
        ('\n  "Name three rivers in Asia."  ', "Name three rivers in Asia."),
        ("- List two primes", "List two primes"),
        ("  \n ", ""),
    ],
)
def test_clean_expansion(reply, instruction):
    assert clean_expansion(reply) == instruction


def test_a_prompt_text_file_that_is_not_utf8_is_one_clear_error(tmp_path):
    from distil.synth import SynthError
    from distil.synth.prompts import read_prompt_file

    path = tmp_path / "prompts.txt"
    path.write_bytes(b"first prompt\nsecond \xff prompt\n")
    with pytest.raises(SynthError, match=r"line 2 is not UTF-8"):
        read_prompt_file(path, "prompt")
