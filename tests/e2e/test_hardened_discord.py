"""Who may reach the bot, and how often: guild scoping, replays, abuse bounds, no leaks.

Each test drives ``valine serve`` (with the stand-ins) only with signed HTTP requests.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from helpers import WEBHOOK_SECRET, discord_headers, interaction, start_service, stop_service
from valine.testing import faults, wait_for
from world import GUILD, World

SENTINEL = "SENTINEL-7f3a arn:aws:iam::123456789012:role/secret-path /repos/octo/x/issues"


def signed(world: World, document: dict[str, Any], timestamp: str | None = None) -> dict[str, Any]:
    body = json.dumps(document).encode()
    headers = discord_headers(world.key, body, timestamp)
    status, answer = world.service.request("POST", "/discord", body, headers)
    assert status == 200, answer
    result: dict[str, Any] = json.loads(answer)
    return result


def command(name: str, **options: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(interaction(name=name, **options))
    return document


def audit_lines(world: World) -> list[str]:
    from valine.infra.sqlite import Database
    from valine.store.sqlite import SqliteRunStore

    db = Database(world.service.workdir / ".valine" / "valine.db")
    try:
        return [f"{e.actor} {e.action} {e.outcome}" for e in SqliteRunStore(db).audit_trail()]
    finally:
        db.close()


def test_a_foreign_server_and_a_dm_are_refused_change_nothing_and_are_audited(
    world: World,
) -> None:
    world.github.add_issue("octo/widgets", "Task", ["ready"])
    before = world.github_requests()
    foreign = command("plan")
    foreign["guild_id"] = "999"
    dm = command("status")
    del dm["guild_id"]
    dm["user"] = dm.pop("member")["user"]
    answers = [signed(world, foreign), signed(world, dm)]
    for answer in answers:
        assert answer["type"] == 4
        assert answer["data"]["flags"] == 64
        assert f"serves only the Discord server {GUILD}" in answer["data"]["content"]
    # Autocomplete shows nothing outside the server either.
    suggest = command("status", run_id="r")
    suggest["type"], suggest["guild_id"] = 4, "999"
    suggest["data"]["options"][0]["focused"] = True
    assert signed(world, suggest)["data"]["choices"] == []
    assert world.github_requests() == before  # nothing planned
    assert "No active run" in json.dumps(world.command("status"))
    lines = audit_lines(world)
    assert "42 plan refused: outside the served server (999)" in lines
    assert "42 status refused: outside the served server (a direct message)" in lines
    # Refusals repeat without growing the trail.
    for _ in range(5):
        signed(world, {**foreign, "id": str(time.time_ns())[:18]})
    assert len(audit_lines(world)) == len(lines)


def test_a_stale_or_future_timestamp_is_a_401(world: World) -> None:
    body = interaction(kind=1)
    for skew in (-301, 301, -86_400, 10**9):
        headers = discord_headers(world.key, body, str(int(time.time()) + skew))
        assert world.service.request("POST", "/discord", body, headers)[0] == 401
    fresh = discord_headers(world.key, body, str(int(time.time()) - 200))
    assert world.service.request("POST", "/discord", body, fresh)[0] == 200


def test_a_replayed_interaction_is_not_acted_on_again(world: World) -> None:
    world.github.add_issue("octo/widgets", "Task", ["ready"])
    plan = command("plan")
    assert signed(world, plan) == {"type": 5}
    wait_for("the plan", lambda: (world.discord.original(plan["token"]) or {}).get("embeds"))
    requests = world.github_requests()
    replay = signed(world, plan)  # the same signed interaction, captured and sent again
    assert replay["data"]["flags"] == 64
    assert "already handled" in replay["data"]["content"]
    time.sleep(0.5)
    assert world.github_requests() == requests


def test_a_6000_character_run_id_gets_a_clear_ephemeral_error(world: World) -> None:
    for name in ("approve", "status", "ship"):
        answer = signed(world, command(name, run_id="r" + "9" * 5999))
        assert answer["data"]["flags"] == 64
        content = answer["data"]["content"]
        assert "`run_id` is longer than 32 characters" in content
        assert len(content) < 200
    # A button carries the run id in its custom_id (up to 100 characters): checked too.
    button = json.loads(interaction(kind=3))
    button["data"] = {"custom_id": "ship:r" + "9" * 90, "component_type": 2}
    assert "not one of Valine's" in signed(world, button)["data"]["content"]
    typed = signed(world, command("status", run_id="r2026-not-an-id"))["data"]["content"]
    assert "is not a run id: they look like `r20261125-k3f9qa`" in typed


def test_guarded_commands_are_rate_limited_per_user(world: World) -> None:
    answers = [
        world.command("approve", run_id="r20990101-nope00")["data"]["content"] for _ in range(11)
    ]
    assert all("There is no run" in a for a in answers[:10])
    assert "at most 10 commands a minute" in answers[10]
    # Another user has their own budget; /status is not guarded.
    assert (
        "There is no run"
        in world.command("approve", user="43", run_id="r20990101-nope00")["data"]["content"]
    )
    assert (
        "There is no run" in world.command("status", run_id="r20990101-nope00")["data"]["content"]
    )


def test_internal_error_text_never_reaches_discord(world: World) -> None:
    world.github.add_issue("octo/widgets", "Task", ["ready"])
    body = {"message": SENTINEL, "documentation_url": SENTINEL, "status": "404"}
    world.github.faults.add(faults.server_error(404, body=body), 5)
    plan = command("plan")
    assert signed(world, plan) == {"type": 5}
    original = wait_for(
        "the planning failure", lambda: world.discord.original(plan["token"]) or None
    )
    assert "Could not read the issues" in original["content"]
    assert "(ref " in original["content"]
    sent = json.dumps([r.json for r in world.discord.requests], default=str)
    assert "SENTINEL" not in sent
    assert "SENTINEL" in world.service.logs()  # the detail is in the log, under the ref


def _slow_body(port: int, path: str, declared: int, sent: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n"
    sock.sendall(head.encode() + sent)
    return sock


def _status(sock: socket.socket) -> int:
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_bodies_in_flight_are_capped_and_slow_bodies_time_out(
    tmp_path: Path, public_key_hex: str, signing_key: SigningKey
) -> None:
    service = start_service(
        tmp_path,
        {
            "DISCORD_PUBLIC_KEY": public_key_hex,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "VALINE_MAX_BODY_IN_FLIGHT": "10000",
            "VALINE_BODY_TIMEOUT": "1.5",
        },
    )
    try:
        holding = _slow_body(service.port, "/github/webhook", 9000, b"{")
        time.sleep(0.3)  # the first body now holds 9,000 of the 10,000 bytes
        refused = _slow_body(service.port, "/discord", 2000, b"{")
        assert _status(refused) == 503
        refused.close()
        assert _status(holding) == 408  # it never finished arriving
        holding.close()
        body = interaction(kind=1)  # once released, the budget is back
        headers = discord_headers(signing_key, body)
        assert service.request("POST", "/discord", body, headers)[0] == 200
    finally:
        stop_service(service)
