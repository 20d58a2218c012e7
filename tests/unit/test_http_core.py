"""The one retry core of the service: backoff with jitter, rate-limit holds, redaction.

The GitHub and Discord clients and both job queues draw their waits from
``backoff_delay``; both clients hold rate limits in a ``RateLimitGate``; every secret
that could reach a log or an error passes through ``valine.logs.redact``.
"""

from __future__ import annotations

import random
import re

from hypothesis import given
from hypothesis import strategies as st

from valine.infra.http_client import RateLimitGate, backoff_delay
from valine.logs import redact
from valine.queue.retry import RetryPolicy


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.0, max_value=60.0),
    cap=st.floats(min_value=0.0, max_value=3600.0),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_stays_in_the_upper_half_of_its_capped_ceiling(
    attempt: int, base: float, cap: float, draw: float
) -> None:
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    delay = backoff_delay(attempt, base, cap, lambda: draw)
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_doubles_per_attempt_until_the_cap() -> None:
    delays = [backoff_delay(n, 0.5, 4.0, lambda: 0.999999) for n in range(1, 7)]
    assert [round(d, 3) for d in delays] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_queue_policy_draws_from_the_same_formula() -> None:
    policy = RetryPolicy(max_attempts=5, base_backoff=1.0, max_backoff=300.0, rng=random.Random(7))
    twin = random.Random(7)
    for attempt in range(1, 12):
        assert policy.backoff(attempt) == backoff_delay(attempt, 1.0, 300.0, twin.random)


def test_a_gate_holds_each_key_until_its_latest_hold() -> None:
    now = [100.0]
    gate = RateLimitGate(lambda: now[0])
    gate.block("route", 5.0)
    gate.block("route", 2.0)  # a shorter hold does not shorten the longer one
    gate.block_until("global", 103.0)
    assert gate.wait("route") == 5.0
    assert gate.wait("global", "route") == 5.0
    assert gate.wait("other") == 0.0
    now[0] = 104.0
    assert gate.wait("global") == 0.0
    assert gate.wait("route") == 1.0
    now[0] = 106.0
    assert gate.until("route") == 0.0  # past holds are forgotten


def test_redaction_hides_secrets_longest_first_and_tokens_by_place() -> None:
    token_in_url = re.compile(r"(/webhooks/[^/\s]+/)[^/\s?#]+")
    text = "POST /webhooks/123/tok-abc failed for bot-secret-long (bot-secret)"
    out = redact(text, ["bot-secret", "bot-secret-long", None, "ab"], [token_in_url])
    assert out == "POST /webhooks/123/[redacted] failed for [redacted] ([redacted])"
    assert redact("short ab stays", ["ab"]) == "short ab stays"  # under 4 characters
