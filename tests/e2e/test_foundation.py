"""The done-when list of the foundation, from outside the process, over real HTTP."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from helpers import (
    WEBHOOK_SECRET,
    Service,
    discord_headers,
    github_headers,
    interaction,
    start_service,
    stop_service,
)
from valine.github.webhooks import dedupe_key


def test_healthz_reports_store_and_missing_settings(service: Service) -> None:
    status, body = service.request("GET", "/healthz")
    document = json.loads(body)
    assert status == 200
    assert document["store"] == "sqlite:///.valine/valine.db"
    assert (
        "GITHUB_TOKEN (or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY)" in document["missing_settings"]
    )
    assert (service.workdir / ".valine" / "valine.db").is_file()


def test_signed_ping_pong_and_bad_signature(service: Service, signing_key: SigningKey) -> None:
    body = interaction(kind=1)
    assert service.request("POST", "/discord", body, discord_headers(signing_key, body)) == (
        200,
        b'{"type":1}',
    )
    forged = discord_headers(SigningKey.generate(), body)
    assert service.request("POST", "/discord", body, forged)[0] == 401


@pytest.fixture
def served(tmp_path: Path, public_key_hex: str) -> Iterator[Service]:
    """``valine serve`` as ``service``, serving the repository of the issues example."""
    running = start_service(
        tmp_path,
        {
            "DISCORD_PUBLIC_KEY": public_key_hex,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITHUB_REPOSITORY": "Codertocat/Hello-World",
        },
    )
    try:
        yield running
    finally:
        stop_service(running)


def test_without_a_repository_a_delivery_is_answered_and_not_written(
    service: Service, webhook_examples: dict[str, Any]
) -> None:
    body = json.dumps(webhook_examples["issues"][0]).encode()
    headers = github_headers(body, "issues", delivery="e2e-trial-1")
    answers = [service.request("POST", "/github/webhook", body, headers) for _ in range(2)]
    assert answers[0] == answers[1], "nothing written: the redelivery is no duplicate"
    assert answers[0][0] == 202
    assert json.loads(answers[0][1])["reason"] == "no repository is served"
    with sqlite3.connect(service.workdir / ".valine" / "valine.db") as conn:
        written = conn.execute(
            "SELECT (SELECT count(*) FROM queue_dedupe WHERE key = ?),"
            " (SELECT count(*) FROM queue_jobs WHERE kind = 'github_event')",
            (dedupe_key("e2e-trial-1"),),
        ).fetchone()
    assert tuple(written) == (0, 0), "no dedupe key (kept for its TTL), no job waiting"


def test_github_ping_signature_and_dedupe(
    served: Service, webhook_examples: dict[str, Any]
) -> None:
    service = served
    ping = json.dumps(webhook_examples["ping"][0]).encode()
    assert service.request("POST", "/github/webhook", ping, github_headers(ping, "ping"))[0] == 200
    bad = github_headers(ping, "ping", secret="not-the-secret")
    assert service.request("POST", "/github/webhook", ping, bad)[0] == 401

    body = json.dumps(webhook_examples["issues"][0]).encode()
    headers = github_headers(body, "issues", delivery="e2e-delivery-1")
    first = service.request("POST", "/github/webhook", body, headers)
    second = service.request("POST", "/github/webhook", body, headers)
    assert first[0] == 202
    assert (second[0], json.loads(second[1])["status"]) == (200, "duplicate")
    _wait_processed(service, dedupe_key("e2e-delivery-1"))  # recorded once, its one job done
    assert json.loads(service.request("GET", "/healthz")[1])["queue_depth"] == 0


def test_bad_input_never_yields_500(service: Service, signing_key: SigningKey) -> None:
    junk = b"\xff\xfe not json"
    assert service.request("POST", "/discord", junk, discord_headers(signing_key, junk))[0] == 400
    assert (
        service.request("POST", "/github/webhook", junk, github_headers(junk, "issues"))[0] == 400
    )
    huge = b"{" + b" " * (1 << 20) + b"}"
    assert service.request("POST", "/discord", huge, discord_headers(signing_key, huge))[0] == 413
    assert service.request("GET", "/github/webhook")[0] == 405
    assert service.request("DELETE", "/discord")[0] == 405
    assert service.request("GET", "/nowhere")[0] == 404


def test_commands_answer_with_the_missing_setting(
    service: Service, signing_key: SigningKey
) -> None:
    body = interaction(name="approve", run_id="r1")
    status, answer = service.request("POST", "/discord", body, discord_headers(signing_key, body))
    document = json.loads(answer)
    assert status == 200
    assert document["data"]["flags"] == 64
    assert "GITHUB_REPOSITORY" in document["data"]["content"]


def _jobs_of(service: Service, key: str) -> tuple[int, int]:
    """(dedupe records, jobs still queued) of one delivery, read from the service's file."""
    with sqlite3.connect(service.workdir / ".valine" / "valine.db") as conn:
        keys = conn.execute("SELECT count(*) FROM queue_dedupe WHERE key = ?", (key,)).fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM queue_jobs").fetchone()[0]
    return int(keys), int(queued)


def _wait_processed(service: Service, key: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _jobs_of(service, key) == (1, 0):
            return
        time.sleep(0.05)
    raise AssertionError(f"delivery {key} was not processed:\n{service.logs()}")
