"""The fault proxy: each fault at its seeded rate, as the openai client sees it, and counted."""

import subprocess
import sys
import time
import uuid
from collections import Counter

import httpx
import openai
import pytest

from distil.server.faults import FaultRates, FaultSchedule
from distil.server.settings import ServeError
from distil.server.testing import running_fault_proxy
from tests.server.conftest import API_KEY, MODEL

MIXED = {"rate_limit": 0.15, "server_error": 0.15, "drop": 0.15, "malformed": 0.15}


def test_the_schedule_keeps_each_rate_and_is_fixed_by_its_seed():
    rates = FaultRates(rate_limit=0.1, server_error=0.05, timeout=0.02, malformed=0.2, drop=0.13)
    draws = 20_000
    schedule = FaultSchedule(rates, seed=1)
    counts = Counter(schedule.next() for _ in range(draws))
    for kind, rate in [*vars(rates).items(), (None, 0.5)]:
        spread = 5 * (draws * rate * (1 - rate)) ** 0.5
        assert abs(counts[kind] - draws * rate) < spread, kind
    first, again, other = (FaultSchedule(rates, seed) for seed in (4, 4, 5))
    sequence = [first.next() for _ in range(200)]
    assert sequence == [again.next() for _ in range(200)]
    assert sequence != [other.next() for _ in range(200)]


@pytest.mark.parametrize("rates", [{"drop": 1.2}, {"drop": -0.1}, {"drop": 0.6, "timeout": 0.6}])
def test_impossible_rates_are_refused(rates):
    with pytest.raises(ServeError, match="sum to at most 1"):
        FaultRates(**rates)


def _outcome(client: openai.OpenAI, key: str) -> str | None:
    """The fault a request met, as told by what the client got."""
    try:
        client.completions.create(
            model=MODEL, prompt="hi", max_tokens=1, temperature=0, extra_headers={"Idempotency-Key": key}
        )
    except openai.RateLimitError as err:
        assert err.response.headers["retry-after-ms"] == "50"
        assert int(err.response.headers["retry-after"]) >= 1
        return "rate_limit"
    except openai.InternalServerError:
        return "server_error"
    except openai.APITimeoutError:
        return "timeout"
    except openai.APIConnectionError:
        return "drop"
    except ValueError:  # the body is not JSON (the client raises a JSONDecodeError)
        return "malformed"
    return None


def test_each_fault_reaches_the_client_as_scheduled_and_is_counted(server):
    requests, seed = 20, 3  # a seed under which every kind happens in 20 requests
    expected = FaultSchedule(FaultRates(**MIXED), seed)
    expected_kinds = [expected.next() for _ in range(requests)]
    keys = [f"mixed-{uuid.uuid4().hex}" for _ in range(requests)]
    with running_fault_proxy(server.url, seed=seed, **MIXED) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0, timeout=30)
        outcomes = [_outcome(client, key) for key in keys]
        stats = proxy.stats()
    assert outcomes == expected_kinds
    assert set(outcomes) == {None, *MIXED}  # every kind happened at least once
    paid = [key for key, kind in zip(keys, outcomes, strict=True) if kind in (None, "malformed")]
    assert stats["received"] == requests and stats["forwarded"] == len(paid)
    assert stats["faults"] == {kind: outcomes.count(kind) for kind in ("timeout", *MIXED)}
    assert stats["relayed"] == outcomes.count(None)
    completed = server.stats()["completed_by_key"]
    assert {key: completed.get(key, 0) for key in keys} == {key: int(key in paid) for key in keys}


def test_a_timeout_is_paid_upstream_but_never_answered_in_time(server):
    key = f"timeout-{uuid.uuid4().hex}"
    with running_fault_proxy(server.url, timeout=1.0, delay_s=3.0) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0, timeout=1.0)
        started = time.monotonic()
        assert _outcome(client, key) == "timeout"
        assert time.monotonic() - started < 3.0  # the client gave up before the answer came
        deadline = time.monotonic() + 30
        while server.stats()["completed_by_key"].get(key) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats()["completed_by_key"].get(key) == 1
        assert proxy.stats()["forwarded"] == 1 and proxy.stats()["faults"]["timeout"] == 1


def test_a_retrying_client_gets_every_answer_and_refusals_cost_nothing(server):
    rates = {"rate_limit": 0.3, "server_error": 0.1, "drop": 0.1}
    keys = [f"retry-{uuid.uuid4().hex}" for _ in range(8)]
    with running_fault_proxy(server.url, seed=2, **rates) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=10, timeout=30)
        for key in keys:
            assert _outcome(client, key) is None
        stats = proxy.stats()
    faults = sum(stats["faults"].values())
    assert faults > 0 and stats["received"] == len(keys) + faults
    assert stats["forwarded"] == len(keys)
    completed = server.stats()["completed_by_key"]
    assert [completed.get(key) for key in keys] == [1] * len(keys)


def test_only_generation_requests_meet_faults_and_stats_are_served(server):
    with running_fault_proxy(server.url, drop=1.0) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0)
        assert [m.id for m in client.models.list().data] == [MODEL]
        assert _outcome(client, "dropped") == "drop"
        assert httpx.get(proxy.url + "/_proxy/stats").json() == proxy.stats()
        assert proxy.stats()["received"] == 2 and proxy.stats()["faults"]["drop"] == 1


def test_the_proxy_command_refuses_impossible_rates_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "distil.server.faults", "--upstream", "http://127.0.0.1:9", "--drop", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "sum to at most 1" in result.stderr
