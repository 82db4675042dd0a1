"""The local teacher backend: batching is invisible, logprobs agree with scoring."""

import pytest

from distil.teachers import LocalTeacher, Sampling, Teacher

PROMPTS = ["hi", "hello there, teacher", "Reverse: abc", "a much longer prompt " * 3, "y"]


@pytest.fixture(scope="module")
def teacher() -> LocalTeacher:
    return LocalTeacher.load("tiny-teacher", device="cpu", batch_size=2)


def test_it_is_a_teacher(teacher):
    assert isinstance(teacher, Teacher)
    assert teacher.capabilities.can_score and teacher.capabilities.token_ids
    assert teacher.describe()["backend"] == "local"


def test_batched_greedy_equals_one_at_a_time(teacher):
    sampling = Sampling(max_new_tokens=8)
    batched = teacher.generate(PROMPTS, sampling)
    single = [teacher.generate([p], sampling)[0] for p in PROMPTS]
    assert [c.token_ids for c in batched] == [c.token_ids for c in single]
    assert all(c.finish_reason == "length" and c.usage.completion_tokens == 8 for c in batched)
    assert [c.usage.prompt_tokens for c in batched] == [len(teacher.render(p)) for p in PROMPTS]


def test_logprobs_are_the_teacher_forced_ones_and_sorted(teacher):
    (completion,) = teacher.generate(["Reverse: abc"], Sampling(max_new_tokens=6, top_logprobs=4))
    scored = teacher.score_ids(teacher.render("Reverse: abc"), completion.token_ids, top_logprobs=4)
    assert [t.token_id for t in scored] == list(completion.token_ids)
    for generated, forced in zip(completion.logprobs, scored, strict=True):
        assert generated.logprob == pytest.approx(forced.logprob, abs=1e-4)
        values = [t.logprob for t in generated.top]
        assert values == sorted(values, reverse=True) and len(values) == 4
        assert generated.top[0].token_id == generated.token_id  # greedy picks the argmax


def test_score_of_text_tokenises_the_completion(teacher):
    scored = teacher.score("Reverse: abc", "cba", top_logprobs=2)
    assert [t.token for t in scored] == ["c", "b", "a"] and all(len(t.top) == 2 for t in scored)


def test_stop_strings_cut_the_text(teacher):
    (free,) = teacher.generate(["hi"], Sampling(max_new_tokens=8))
    stop = free.text[3:5]
    (cut,) = teacher.generate(["hi"], Sampling(max_new_tokens=8, stop=(stop,)))
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.index(stop)]


def test_sampling_is_reproducible_with_a_seed(teacher):
    sampling = Sampling(max_new_tokens=8, temperature=1.0, seed=7)
    first = teacher.generate(PROMPTS, sampling)
    again = teacher.generate(PROMPTS, sampling)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    greedy = teacher.generate(PROMPTS, Sampling(max_new_tokens=8))
    assert [c.token_ids for c in first] != [c.token_ids for c in greedy]
