"""The synth stage with an API teacher (in-process fake endpoint): faults, budget, dry run.

The same paths against a real `distil serve` and its fault proxy: test_serve_e2e.py.
"""

import functools
import random

import pytest

from distil.losses import IGNORE_INDEX
from distil.pipeline import default_stages, run_pipeline
from distil.recipe import validate_recipe
from distil.synth import SynthError
from distil.synth import stage as synth_stage
from distil.synth.stage import run_synth
from distil.synth.teacher import open_synth_teacher
from distil.teachers.budget import BudgetExhaustedError
from tests.synth.conftest import journal_lines, outputs, synth_recipe
from tests.teachers.fake_api import FakeApi, dropped, malformed, status, timed_out

API = {
    "base_url": "http://fake.test/v1",
    "api_key_env": None,
    "concurrency": 4,
    "backoff_s": 0.01,
    "backoff_max_s": 0.02,
    "max_retries": 2,
}


def api_recipe(tmp_path, seed_file, api=None, **synth) -> dict:
    raw = synth_recipe(tmp_path, seed_file, **synth)
    raw["teacher"] = {"model": "fake-teacher", "api": {**API, **(api or {})}}
    raw["distill"] = {"kd_weight": 0.0, "ce_weight": 1.0}
    return raw


@pytest.fixture
def serve_fake(monkeypatch):
    """Route the stage's API teacher to a FakeApi; returns a function that installs one."""

    def install(fake: FakeApi) -> FakeApi:
        monkeypatch.setattr(
            synth_stage,
            "open_synth_teacher",
            functools.partial(open_synth_teacher, http_client=fake.client()),
        )
        return fake

    return install


def flaky(rate: float, seed: int):
    """A fault on each generation request with probability `rate`, of a seeded random kind."""
    rng = random.Random(seed)
    kinds = [
        lambda: status(429, headers={"retry-after": "0.01"}),
        lambda: status(500),
        malformed,
        dropped,
        timed_out,
    ]

    def fault(number: int, body: dict):
        if "messages" in body and body.get("max_tokens", 0) > 4 and rng.random() < rate:
            return rng.choice(kinds)()
        return None

    return fault


def test_failed_requests_leave_the_stage_not_done_and_a_rerun_sends_only_them(
    tmp_path, seed_file, serve_fake
):
    prompts = {"tasks": ["all"], "per_task": 10}
    recipe = validate_recipe(
        api_recipe(tmp_path, seed_file, prompts=prompts, sampling={"max_new_tokens": 64})
    )
    synth_only = tuple(s for s in default_stages() if s.name == "synth")
    marker = tmp_path / "run" / "stages" / "synth.json"
    fake = serve_fake(FakeApi(fault=flaky(0.6, seed=1)))
    with pytest.raises(SynthError) as caught:
        run_pipeline(recipe, synth_only)
    rows, rejects, summary = outputs(tmp_path / "run")
    responses = summary["responses"]["requested"]
    failed = [r for r in rejects if r["reason"] == "request_failed"]
    assert failed, "at this fault rate some requests exhaust their 3 attempts"
    message = str(caught.value)
    assert message.startswith(f"{len(failed)} of {responses} requests to the teacher failed")
    assert "the stage is not done" in message and "a rerun sends only those" in message
    assert "\n" not in message
    assert not marker.exists()  # the stage is not done: `distil run` will not train on this
    assert len(rows) + len(failed) == responses and summary["responses"]["not_sent"] == 0
    assert all("(3 attempts)" in r["detail"] for r in failed)
    assert len({r["id"] for r in rows} | {r["id"] for r in failed}) == responses
    assert all(r["response"] == r["prompt"][::-1] for r in rows)  # nothing mixed up
    assert summary["attempts"]["retries"] > 0

    calls_before = len(fake.generation_calls())
    serve_fake(FakeApi())  # the endpoint recovers
    run_pipeline(recipe, synth_only)  # not "done already": the failed rows are sent again
    rows, rejects, summary = outputs(tmp_path / "run")
    assert marker.is_file()
    assert len(rows) == responses and not [r for r in rejects if r["reason"] == "request_failed"]
    assert summary["sent_this_run"] == len(failed)
    assert calls_before > responses  # retries happened on the flaky endpoint
    keys = [line["key"] for line in journal_lines(tmp_path / "run") if line["status"] == "ok"]
    assert len(keys) == len(set(keys)) == responses  # no request succeeded twice


def test_a_failed_share_within_max_failed_fraction_finishes_the_stage(tmp_path, seed_file, serve_fake):
    prompts = {"tasks": ["all"], "per_task": 10}
    raw = api_recipe(
        tmp_path, seed_file, prompts=prompts, sampling={"max_new_tokens": 64}, max_failed_fraction=0.9
    )
    serve_fake(FakeApi(fault=flaky(0.6, seed=2)))
    result = run_synth(validate_recipe(raw))
    failed = result.summary["responses"]["requested"] - result.kept
    assert failed > 0 and result.summary["failed_this_run"] == failed


def test_a_budget_cap_stops_cleanly_and_a_rerun_continues(tmp_path, seed_file, serve_fake):
    prompts = {"tasks": ["all"], "per_task": 6}
    raw = api_recipe(
        tmp_path, seed_file, api={"budget": {"max_requests": 8}, "concurrency": 2}, prompts=prompts
    )
    fake = serve_fake(FakeApi(max_top=20))
    with pytest.raises(BudgetExhaustedError, match=r"max_requests=8.* rows so far in .*train.parquet"):
        run_synth(validate_recipe(raw))
    rows, _, summary = outputs(tmp_path / "run")
    probes = 2  # billed: one generation with top-20 logprobs, one scoring echo

    requested = summary["responses"]["requested"]
    assert len(fake.generation_calls()) == 8 and len(rows) == 8 - probes
    assert summary["stopped"] and summary["responses"]["not_sent"] == requested - len(rows)
    assert summary["spent"]["requests"] == 8
    raw["teacher"]["api"]["budget"]["max_requests"] = 1000
    fake = serve_fake(FakeApi(max_top=20))
    result = run_synth(validate_recipe(raw))
    assert result.kept == requested and result.summary["stopped"] is None
    assert result.summary["sent_this_run"] == requested - len(rows)
    assert len(fake.generation_calls()) == probes + requested - len(rows)


def test_a_request_cap_holds_over_reruns_with_faults(tmp_path, seed_file, serve_fake):
    """Every billed attempt counts against the cap across runs: probes, retries, and the
    attempts of a request the cap stopped mid-retry (counted at the endpoint)."""
    cap = 30
    raw = api_recipe(
        tmp_path,
        seed_file,
        api={"budget": {"max_requests": cap}, "concurrency": 2},
        prompts={"tasks": ["all"], "per_task": 10},
        sampling={"max_new_tokens": 64},
    )
    sent = []
    for run in range(4):
        fake = serve_fake(FakeApi(fault=flaky(0.5, seed=run)))
        with pytest.raises(BudgetExhaustedError, match=f"max_requests={cap}"):
            run_synth(validate_recipe(raw))
        sent.append(len(fake.generation_calls()))
    assert sent[0] > 0 and sum(sent) <= cap, sent


def test_an_endpoint_that_refuses_logprobs_stops_a_run_that_needs_them(tmp_path, seed_file, serve_fake):
    serve_fake(FakeApi(logprobs=False))
    raw = api_recipe(tmp_path, seed_file, sampling={"top_logprobs": 3})
    with pytest.raises(SynthError, match=r"refuses logprobs .*set synth.sampling.top_logprobs=0"):
        run_synth(validate_recipe(raw))
    raw["synth"]["sampling"]["top_logprobs"] = 0
    serve_fake(FakeApi(logprobs=False))
    assert run_synth(validate_recipe(raw)).kept == 4  # text only works


def test_top_k_is_clamped_to_what_the_endpoint_gives_and_stored_per_token(tmp_path, seed_file, serve_fake):
    serve_fake(FakeApi(max_top=3))
    raw = api_recipe(tmp_path, seed_file, sampling={"top_logprobs": 8})
    raw["teacher"]["api"]["tokenizer"] = "tiny-teacher"
    run_synth(validate_recipe(raw))
    rows, _, summary = outputs(tmp_path / "run")
    first = rows[0]["token_logprobs"]
    assert len(first) == len(rows[0]["response"]) and all(len(t["top"]) == 3 for t in first)
    assert all(t["token_id"] is not None for t in first)
    assert any("asked for the top-8, it gives at most 3" in n for n in summary["teacher"]["notes"])


def test_samples_and_self_instruct_expansion(tmp_path, seed_file, serve_fake):
    fake = serve_fake(FakeApi())
    raw = api_recipe(
        tmp_path,
        seed_file,
        samples_per_prompt=2,
        prompts={"expand": 3},
        sampling={"temperature": 0.8, "max_new_tokens": 400},
    )
    result = run_synth(validate_recipe(raw))
    rows, rejects, summary = outputs(tmp_path / "run")
    # the fake answers with the request reversed: the three expansions share their first line,
    # so one new prompt survives and two are identical to it
    assert summary["prompts"]["sources"] == {"file": 5, "self_instruct": 3}  # before dedup
    assert [r["reason"] for r in rejects if r["source"] == "self_instruct"] == ["near_duplicate"] * 2
    assert len(rows) == result.kept == 2 * (4 + 1)
    assert {(r["sample_index"], r["seed"]) for r in rows} == {(0, 0), (1, 1)}
    chats = [b["messages"][0]["content"] for b in fake.generation_calls() if "messages" in b]
    expand_bodies = [b for b in fake.generation_calls() if "Examples:" in str(b.get("messages"))]
    assert len(chats) == 1 + 3 + 10  # probe, expansions, responses
    assert len(expand_bodies) == 3 and {b["temperature"] for b in expand_bodies} == {1.0}
    plan = run_synth(validate_recipe(raw), dry_run=True)  # judges the journaled expansions alike
    assert plan["requests"] == {"planned": 3 + 10, "answered_in_journal": 13, "to_send": 0}


def test_dry_run_estimates_tokens_and_cost_without_a_key_or_a_request(tmp_path, seed_file, monkeypatch):
    monkeypatch.delenv("DISTIL_NO_SUCH_KEY", raising=False)
    price = {"input_per_million": 1.0, "output_per_million": 2.0, "currency": "EUR"}
    raw = api_recipe(
        tmp_path,
        seed_file,
        api={"price": price, "api_key_env": "DISTIL_NO_SUCH_KEY", "budget": {"max_cost": 0.0001}},
        sampling={"max_new_tokens": 16},
    )
    plan = run_synth(validate_recipe(raw), dry_run=True)
    # 4 prompts kept; no tokenizer: 4 + ceil(chars / 4) tokens each
    kept = [
        "Reverse the word: lantern",
        "What is 17 plus 25?",
        "Name a prime number above 10.",
        "Translate 'good morning' into Spanish.",
    ]
    prompt_tokens = sum(4 + -(-len(p) // 4) for p in kept)
    assert plan["tokens"]["prompt"] == prompt_tokens and plan["tokens"]["completion_at_most"] == 4 * 16
    assert plan["cost"]["at_most"] == pytest.approx((prompt_tokens * 1.0 + 64 * 2.0) / 1e6)
    assert plan["cost"]["currency"] == "EUR" and not plan["cost"]["within_budget"]
    assert "max_cost=0.0001" in plan["cost"]["note"]


def too_long(number: int, body: dict):
    """The server's context is too small for the prompts that name a lantern: a 400, every time."""
    if "lantern" in str(body.get("messages")):
        return status(400, "prompt is too long: 5000 tokens, the context holds 4096")
    return None


def test_a_request_the_server_rejects_is_journaled_and_not_sent_again(
    tmp_path, seed_file, serve_fake, capsys
):
    raw = api_recipe(tmp_path, seed_file)
    fake = serve_fake(FakeApi(fault=too_long))
    with pytest.raises(SynthError, match=r"1 of 4 requests .*rejected by the server as invalid"):
        run_synth(validate_recipe(raw))
    assert sum("lantern" in str(b.get("messages")) for b in fake.generation_calls()) == 1  # no retry
    (line,) = [row for row in journal_lines(tmp_path / "run") if row["status"] != "ok"]
    assert line["status"] == "rejected" and "400: prompt is too long" in line["error"]
    _, rejects, _ = outputs(tmp_path / "run")
    assert [r["reason"] for r in rejects if r["kind"] == "response"] == ["request_rejected"]
    capsys.readouterr()

    fake = serve_fake(FakeApi(fault=too_long))  # a rerun: the rejected request is not resent
    with pytest.raises(SynthError, match="rejected by the server as invalid"):
        run_synth(validate_recipe(raw))
    assert not [b for b in fake.generation_calls() if "lantern" in str(b.get("messages"))]
    said = " ".join(capsys.readouterr().err.split())
    assert (
        "1 request the server rejected as invalid in an earlier run is not sent again "
        "(first: rejected by the server (400: prompt is too long"
    ) in said
    assert "teacher.api.resend_rejected=true" in said and "journal.jsonl" in said

    raw["teacher"]["api"]["resend_rejected"] = True  # the documented way to send them again
    fake = serve_fake(FakeApi())  # the server's context was raised
    result = run_synth(validate_recipe(raw))
    assert result.kept == 4 and result.summary["sent_this_run"] == 1
    assert [b for b in fake.generation_calls() if "lantern" in str(b.get("messages"))]


def test_a_rejected_expansion_is_not_sent_again(tmp_path, seed_file, serve_fake):
    raw = api_recipe(tmp_path, seed_file, prompts={"expand": 2}, max_failed_fraction=1.0)
    fake = serve_fake(FakeApi(fault=too_long))  # every expansion prompt holds the seeds
    run_synth(validate_recipe(raw))
    expansions = [b for b in fake.generation_calls() if "Examples:" in str(b.get("messages"))]
    assert len(expansions) == 2
    _, rejects, _ = outputs(tmp_path / "run")
    assert [r["reason"] for r in rejects if r["kind"] == "expansion"] == ["request_rejected"] * 2
    fake = serve_fake(FakeApi(fault=too_long))
    run_synth(validate_recipe(raw))
    assert not [b for b in fake.generation_calls() if "Examples:" in str(b.get("messages"))]
    plan = run_synth(validate_recipe(raw), dry_run=True)  # the dry run counts them as not sent
    assert plan["requests"]["to_send"] == 0


def test_the_budget_stop_counts_every_request_that_reached_the_server(tmp_path, seed_file, serve_fake):
    """Requests in flight when the cap is reached finish and are journaled; the last line
    counts them too (it said 54 requests sent while 60 had reached the server)."""
    cap = 11
    raw = api_recipe(
        tmp_path,
        seed_file,
        api={"budget": {"max_requests": cap}, "concurrency": 4},
        prompts={"tasks": ["all"], "per_task": 4},
    )
    fake = serve_fake(FakeApi(max_top=20, delay_s=0.05))
    with pytest.raises(BudgetExhaustedError) as caught:
        run_synth(validate_recipe(raw))
    assert len(fake.generation_calls()) == cap
    assert f"max_requests={cap}; {cap} requests sent" in str(caught.value)
    _, _, summary = outputs(tmp_path / "run")
    assert f"{cap} requests sent" in summary["stopped"] and summary["spent"]["requests"] == cap


def test_a_kept_truncated_response_trains_without_an_end_of_turn_token(tmp_path, seed_file, serve_fake):
    """The finish reason travels from the teacher through the Parquet to the labels."""
    from distil.data import encode_pairs, load_pairs
    from distil.models import byte_tokenizer

    serve_fake(FakeApi())  # answers with the prompt reversed, cut at max_tokens
    raw = api_recipe(tmp_path, seed_file, sampling={"max_new_tokens": 20})
    result = run_synth(validate_recipe(raw))
    rows, _, _ = outputs(tmp_path / "run")
    reasons = {r["prompt"]: r["finish_reason"] for r in rows}
    assert reasons["Reverse the word: lantern"] == "length" and reasons["What is 17 plus 25?"] == "stop"
    tokenizer = byte_tokenizer()
    pairs = load_pairs(result.train_path)
    for pair, example in zip(pairs, encode_pairs(tokenizer, pairs, "chat", 64), strict=True):
        learned = [t for t in example.labels if t != IGNORE_INDEX]
        ends = learned[-1] == tokenizer.eos_token_id
        assert ends == (reasons[pair.prompt] == "stop") and learned.count(tokenizer.eos_token_id) == ends
