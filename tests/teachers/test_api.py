"""The API teacher against an in-process fake endpoint: parsing, retries, limits, budget, probe.

The end-to-end tests against `distil serve` and its fault proxy live in tests/synth.
"""

import asyncio
import random
import time
from collections import Counter

import pytest

from distil.models import byte_tokenizer
from distil.recipe.api import ApiSection
from distil.teachers import Sampling, Teacher, TeacherError
from distil.teachers.api import ApiTeacher
from distil.teachers.budget import BudgetExhaustedError, Spent
from distil.teachers.ratelimit import RateLimiter, TokenBucket, backoff_delay, retry_after_seconds
from distil.teachers.tokenmap import TokenMap
from tests.teachers.fake_api import FakeApi, dropped, malformed, status, timed_out, without_logprobs

SECRET = "sk-test-0123456789abcdefghijklmnop"


def make(fake: FakeApi, spent: Spent | None = None, **api) -> ApiTeacher:
    """A teacher of the fake endpoint; `api`: teacher.api fields over quick test defaults."""
    api = {
        "base_url": "http://fake.test/v1",
        "api_key_env": None,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
        **api,
    }
    return ApiTeacher.from_section("fake-teacher", ApiSection(**api), spent=spent, http_client=fake.client())


def on_generation(faults: dict[int, object]):
    """Inject faults by generation-request number (0 = first POST to a completions path)."""
    seen = {"n": 0}

    def fault(number: int, body: dict):
        if "messages" not in body and "prompt" not in body:
            return None
        index = seen["n"]
        seen["n"] += 1
        return faults.get(index)

    return fault


@pytest.fixture
def tokenizer():
    return byte_tokenizer()


def test_chat_completion_carries_text_logprobs_and_ids(tokenizer):
    fake = FakeApi()
    with make(fake, tokenizer="tiny-teacher") as teacher:
        (done,) = teacher.generate(["hello"], Sampling(max_new_tokens=3, top_logprobs=3))
        assert isinstance(teacher, Teacher)  # (on Python 3.11 this reads .capabilities: a probe)
    assert done.text == "oll" and done.finish_reason == "length"
    assert done.usage.prompt_tokens == 5 and done.usage.completion_tokens == 3
    assert [t.token for t in done.logprobs] == ["o", "l", "l"]
    assert done.token_ids == tuple(tokenizer.convert_tokens_to_ids(list("oll")))
    for position in done.logprobs:
        values = [a.logprob for a in position.top]
        assert len(values) == 3 and values == sorted(values, reverse=True)
    body = fake.generation_calls()[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 3 and body["max_tokens"] == 3


def test_completions_endpoint_sends_the_rendered_prompt():
    fake = FakeApi()
    with make(fake, endpoint="completions", tokenizer="tiny-teacher") as teacher:
        (done,) = teacher.generate(["hi"], Sampling(max_new_tokens=64, logprobs=True))
    sent = fake.generation_calls()[0]["prompt"]
    assert sent == "<|user|>hi<|end|><|assistant|>"  # the tiny chat template
    assert done.text == sent[::-1] and done.finish_reason == "stop"
    assert len(done.logprobs) == len(sent) and all(t.top == () for t in done.logprobs)


def test_without_a_tokenizer_tokens_stay_strings():
    with make(FakeApi()) as teacher:
        (done,) = teacher.generate(["abc"], Sampling(max_new_tokens=8, top_logprobs=1))
    assert done.token_ids is None and [t.token_id for t in done.logprobs] == [None] * 3


@pytest.mark.parametrize(
    "fault,label",
    [
        (status(500), "server_error"),
        (malformed(), "malformed"),
        (dropped(), "connection"),
        (timed_out(), "timeout"),
        (status(503), "server_error"),
    ],
)
def test_transient_faults_are_retried(fault, label):
    fake = FakeApi(fault=on_generation({0: fault}))
    with make(fake) as teacher:
        outcome = teacher.submit("abc", Sampling(max_new_tokens=8)).result()
        counts = dict(teacher.counts)
    assert outcome.completion.text == "cba" and outcome.attempts == 2
    assert counts[label] == 1 and counts["retries"] == 1


def test_retry_after_is_honoured_and_pauses_every_request():
    fake = FakeApi(fault=on_generation({0: status(429, headers={"retry-after": "0.6"})}))
    with make(fake, concurrency=4) as teacher:
        first = teacher.submit("a", Sampling(max_new_tokens=4))
        time.sleep(0.2)  # the 429 has come back: every request now waits for the pause
        later = [teacher.submit(p, Sampling(max_new_tokens=4)) for p in ["b", "c"]]
        outcomes = [f.result() for f in [first, *later]]
    assert [o.completion.text for o in outcomes] == ["a", "b", "c"]
    assert [o.attempts for o in outcomes] == [2, 1, 1]
    times = [t for t, path, _ in fake.calls if path.endswith("completions")]
    assert len(times) == 4 and min(t - times[0] for t in times[1:]) >= 0.59


def test_exhausted_retries_are_a_failed_outcome_with_its_cause():
    fake = FakeApi(fault=on_generation({n: status(502, "bad gateway") for n in range(10)}))
    with make(fake, max_retries=2) as teacher:
        outcome = teacher.submit("abc", Sampling()).result()
        with pytest.raises(TeacherError, match=r"1 of 1 requests .* failed; first: server error \(502"):
            teacher.generate(["abc"], Sampling())
    assert outcome.completion is None and outcome.attempts == 3
    assert "server error (502: bad gateway) (3 attempts)" in outcome.error


def test_a_bad_request_is_recorded_not_retried():
    fake = FakeApi(fault=on_generation({0: status(400, "prompt too long")}))
    with make(fake) as teacher:
        outcome = teacher.submit("abc", Sampling()).result()
    assert outcome.attempts == 1 and "rejected by the server (400: prompt too long)" in outcome.error


@pytest.mark.parametrize(
    "code,match",
    [
        (401, r"refused the API key \(401: .*\); set the environment variable DISTIL_TEST_KEY"),
        (403, r"refused access to model 'fake-teacher' \(403"),
        (404, r"model 'fake-teacher' or the chat endpoint was not found"),
    ],
)
def test_errors_no_retry_can_fix_stop_the_run(monkeypatch, code, match):
    monkeypatch.setenv("DISTIL_TEST_KEY", SECRET)
    fake = FakeApi(fault=on_generation({0: status(code, f"no, {SECRET}")}))
    with (
        make(fake, api_key_env="DISTIL_TEST_KEY") as teacher,
        pytest.raises(TeacherError, match=match) as caught,
    ):
        teacher.submit("abc", Sampling()).result()
    assert SECRET not in str(caught.value) and SECRET[-12:] not in str(caught.value)
    assert len(fake.generation_calls()) == 1


def test_the_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.delenv("DISTIL_TEST_KEY", raising=False)
    with pytest.raises(TeacherError, match="environment variable DISTIL_TEST_KEY .* is not set"):
        make(FakeApi(), api_key_env="DISTIL_TEST_KEY")
    monkeypatch.setenv("DISTIL_TEST_KEY", SECRET)
    fake = FakeApi(key=SECRET)
    with make(fake, api_key_env="DISTIL_TEST_KEY") as teacher:
        assert teacher.generate(["ab"], Sampling(max_new_tokens=4))[0].text == "ba"


def test_concurrency_is_capped():
    fake = FakeApi(delay_s=0.05)
    with make(fake, concurrency=3) as teacher:
        done = teacher.generate([f"p{i}" for i in range(12)], Sampling(max_new_tokens=4))
    assert [c.text for c in done] == [f"p{i}"[::-1] for i in range(12)]
    assert fake.max_in_flight == 3


def test_budget_caps_stop_before_a_request_is_sent():
    fake = FakeApi()
    with (
        make(fake, budget={"max_requests": 3}, concurrency=1) as teacher,
        pytest.raises(BudgetExhaustedError, match=r"max_requests=3; 3 requests sent"),
    ):
        teacher.generate([f"p{i}" for i in range(5)], Sampling(max_new_tokens=4))
    assert len(fake.generation_calls()) == 3


def test_cost_cap_reserves_the_worst_case():
    price = {"input_per_million": 1e6, "output_per_million": 1e6}  # 1 per token
    already = Spent(requests=1, prompt_tokens=5, completion_tokens=5)
    fake = FakeApi()
    # each request reserves ~5 prompt tokens (estimated) + 8 completion tokens (worst case):
    # 10 spent + 13 fits under 30; the first then uses 4 + 4, and 18 + 13 does not fit
    with (
        make(fake, already, price=price, budget={"max_cost": 30}, concurrency=1) as teacher,
        pytest.raises(BudgetExhaustedError, match="max_cost=30"),
    ):
        teacher.generate(["abcd", "efgh", "ijkl"], Sampling(max_new_tokens=8))
    spend = teacher.spend
    assert len(fake.generation_calls()) == 1
    assert spend.spent.requests == 2 and spend.cost == pytest.approx(10 + 4 + 4)


@pytest.mark.parametrize("limit", [3, 5, 7, 20, 30])
def test_probe_finds_the_top_k_limit(limit):
    fake = FakeApi(max_top=limit)
    with make(fake) as teacher:
        assert teacher.probe(want_top_logprobs=8).capabilities.max_top_logprobs == min(limit, 20)
    assert len(fake.generation_calls()) <= 8


def test_probe_says_what_the_endpoint_offers():
    with make(FakeApi(max_top=5), tokenizer="tiny-teacher") as teacher:
        report = teacher.probe(want_top_logprobs=8)
    caps = report.capabilities
    assert caps.logprobs and caps.max_top_logprobs == 5 and caps.can_score and caps.token_ids
    text = "\n".join(report.lines)
    assert "top-5 logprobs per generated token" in text and "asked for the top-8" in text
    assert "scores given text" in text and "mapped to ids with tiny-teacher" in text


def test_probe_of_an_endpoint_without_logprobs_or_echo():
    with make(FakeApi(logprobs=False, echo=False)) as teacher:
        report = teacher.probe()
    assert not report.capabilities.logprobs and not report.capabilities.can_score
    text = "\n".join(report.lines)
    assert (
        "this endpoint returns no logprobs (rejected by the server (400: logprobs are not supported)"
    ) in text
    assert "trained on text only (sequence-level KD)" in text and "cannot score given text" in text


def any_fault(rate: float, seed: int):
    """A transient fault on any request (the probe's included) with probability `rate`."""
    rng = random.Random(seed)
    kinds = [
        lambda: status(500),
        lambda: status(503),
        malformed,
        dropped,
        timed_out,
        lambda: status(429, headers={"retry-after": "0.001"}),
    ]

    def fault(number: int, body: dict):
        return rng.choice(kinds)() if rng.random() < rate else None

    return fault


def test_faults_never_make_the_probe_say_an_endpoint_cannot_score():
    """Transient failures are retried; when they never stop the probe says so, and only a
    definite answer (a 4xx, an echo without logprobs) means the endpoint cannot score."""
    verdicts: Counter = Counter()
    for seed in range(40):
        with make(FakeApi(fault=any_fault(0.5, seed)), backoff_s=0.001, backoff_max_s=0.002) as teacher:
            try:
                verdicts[teacher.probe(want_top_logprobs=5).capabilities.can_score] += 1
            except TeacherError:
                verdicts["gave up, saying why"] += 1
    assert verdicts[False] == 0 and verdicts[True] >= 30, verdicts


def test_an_echo_without_prompt_logprobs_is_a_definite_no():
    def no_echo_logprobs(number: int, body: dict):
        return without_logprobs(body) if body.get("echo") else None

    fake = FakeApi(fault=no_echo_logprobs)
    with make(fake) as teacher:
        report = teacher.probe()
    assert not report.capabilities.can_score and report.capabilities.logprobs
    assert "cannot score given text (the echo response holds no prompt logprobs)" in "\n".join(report.lines)
    assert len([b for b in fake.generation_calls() if b.get("echo")]) == 1  # not retried


def test_probe_stops_at_an_unknown_model_and_an_unreachable_endpoint():
    fake = FakeApi(models=("other-model",))
    with (
        make(fake) as teacher,
        pytest.raises(TeacherError, match=r"'fake-teacher' is not served .* other-model"),
    ):
        teacher.probe()
    teacher = ApiTeacher("m", ApiSection(base_url="http://127.0.0.1:9/v1", api_key_env=None, backoff_s=0.01))
    with teacher, pytest.raises(TeacherError, match=r"cannot reach the teacher at http://127.0.0.1:9/v1"):
        teacher.probe()


def test_score_returns_the_completion_tokens_only(tokenizer):
    with make(FakeApi(), tokenizer="tiny-teacher") as teacher:
        scored = teacher.score("ab", "xyz", top_logprobs=2)
    assert [t.token for t in scored] == ["x", "y", "z"]
    assert [t.token_id for t in scored] == tokenizer.convert_tokens_to_ids(["x", "y", "z"])
    assert all(len(t.top) == 2 for t in scored)


def test_token_map_counts_mismatches(tokenizer):
    mapper = TokenMap(tokenizer, "tiny")
    assert mapper.to_id("a") == tokenizer.convert_tokens_to_ids("a")
    assert mapper.to_id("token_id:7") == 7
    assert mapper.to_id("ab") is None and mapper.to_id("token_id:99999") is None
    assert mapper.mapped == 2 and mapper.mismatched == 2
    assert mapper.report().startswith("2 of 4 token strings")


def test_a_split_character_maps_through_its_bytes(tokenizer):
    mapper = TokenMap(tokenizer)
    ids = tokenizer.encode("é", add_special_tokens=False)  # two byte tokens, each reads as U+FFFD
    assert len(ids) == 2 and tokenizer.decode(ids[:1]) == "\ufffd"
    assert [mapper.to_id("\ufffd", list(b)) for b in ([0xC3], [0xA9])] == ids
    assert mapper.to_id("\ufffd") is None and mapper.mismatched == 1


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    bucket = TokenBucket(rate_per_minute=60, capacity=2, clock=lambda: now[0])  # 1 per second
    assert bucket.wait_time(1) == 0
    bucket.take(2)
    assert bucket.wait_time(1) == pytest.approx(1.0)
    now[0] = 0.5
    assert bucket.wait_time(1) == pytest.approx(0.5)
    bucket.take(5)  # an oversized take drives the level negative: later ones wait for it
    assert bucket.wait_time(1) == pytest.approx(5.5)  # from 0.5 - 5 back up to 1


def test_rate_limiter_waits_for_tokens():
    async def run() -> float:
        limiter = RateLimiter(tokens_per_minute=6000)  # 100 tokens/s, bucket of 600
        await limiter.acquire(600)
        start = time.monotonic()
        await limiter.acquire(50)
        return time.monotonic() - start

    assert 0.45 <= asyncio.run(run()) < 1.5


def test_backoff_doubles_with_jitter_and_is_capped():
    import random

    rng = random.Random(0)
    for attempt, full in [(0, 1.0), (1, 2.0), (3, 8.0), (10, 30.0)]:
        delay = backoff_delay(attempt, 1.0, 30.0, rng)
        assert full / 2 <= delay <= full


def test_retry_after_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds(
        {"retry-after": "Thu, 01 Jan 2026 00:00:10 GMT"}, now=1767225600.0
    ) == pytest.approx(10.0)
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None


def test_without_the_openai_package_the_api_teacher_names_the_extra(monkeypatch):
    import importlib.util

    import distil.teachers

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openai" else real(name, *a)
    )
    with pytest.raises(TeacherError, match=r"pip install 'distil\[api\]'"):
        distil.teachers.ApiTeacher  # noqa: B018 (the lazy attribute is what is tested)
