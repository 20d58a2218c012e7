"""The Discord experience over real HTTP: buttons, autocomplete, authorisation, audit.

Every answer the service gives is also checked against Discord's own published schemas
(discord-api-spec), strictly: a key the schema does not know fails the test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from discord_schema import validate_each
from helpers import discord_headers, interaction
from world import REPO, World, wait_for

pytestmark = pytest.mark.e2e

CALLBACK = "CreateMessageInteractionCallbackRequestSchema"
SCHEMAS = {
    1: "PongInteractionCallbackRequestSchema",
    4: CALLBACK,
    5: CALLBACK,
    7: "UpdateMessageInteractionCallbackRequestSchema",
    8: "ApplicationCommandAutocompleteCallbackRequestSchema",
}


def assert_discord_valid(answers: list[dict[str, Any]]) -> None:
    results = validate_each([(SCHEMAS[a["type"]], a) for a in answers])
    problems = [r.explain() for r in results if not r.ok]
    assert not problems, problems


def autocomplete(world: World, command: str, typed: str, user: str = "42") -> dict[str, Any]:
    document = json.loads(interaction(kind=4, name=command, run_id=typed))
    document["data"]["options"][0]["focused"] = True
    document["member"]["user"]["id"] = user
    body = json.dumps(document).encode()
    status, answer = world.service.request(
        "POST", "/discord", body, discord_headers(world.key, body)
    )
    assert status == 200
    result: dict[str, Any] = json.loads(answer)
    return result


def test_buttons_drive_the_same_use_cases(world: World) -> None:
    numbers = [world.github.add_issue(REPO, f"Task {i}", ["ready"]) for i in range(2)]
    run_id = world.plan()
    answers = [world.press(f"approve:{run_id}")]
    wait_for("dispatches", lambda: len(world.github.dispatches(REPO)) == 2)
    for number in numbers:
        pr, sha = world.open_pr(run_id, number)
        world.checks(pr, sha, "success")
    world.wait_state(run_id, "ready_to_ship")

    confirm = world.press(f"ship:{run_id}")  # asks first, ships nothing
    answers.append(confirm)
    assert confirm["data"]["flags"] == 64
    assert confirm["data"]["components"][0]["components"][0]["custom_id"] == (
        f"ship-confirm:{run_id}"
    )
    assert world.status(run_id) == "ready_to_ship"
    answers.append(world.press(f"ship-confirm:{run_id}"))
    world.wait_state(run_id, "shipped")

    stale = world.press(f"cancel:{run_id}")  # the run has moved on
    answers.append(stale)
    assert stale["data"]["flags"] == 64
    assert "`shipped`" in stale["data"]["content"]
    answers.append(world.press("mystery:button"))
    answers.append(world.command("status", run_id=run_id))
    answers.append(world.command("status"))
    answers.append(world.command("help"))
    assert_discord_valid(answers)

    plan_message = wait_for(
        "the plan message to show the shipped run",
        lambda: (
            m
            if (m := world.discord.original(world.tokens["plan"]))
            and m["embeds"][0]["color"] == 0x9B59B6
            else None
        ),
    )  # shipped purple
    embed = plan_message["embeds"][0]
    assert "▰▰▰▰▰▰▰▰▰▰ 2/2" in embed["description"]
    assert f"/{REPO}/pull/" in embed["description"]  # PR links
    assert "<t:" in embed["description"]  # Discord timestamps


def test_autocomplete_offers_the_active_run_first_then_the_newest(world: World) -> None:
    world.github.add_issue(REPO, "Task", ["ready"])
    first = world.plan()
    world.command("cancel", run_id=first)
    world.wait_state(first, "cancelled")
    world.github.add_issue(REPO, "Another", ["ready"])
    second = world.plan()
    before = world.github_requests()

    everything = autocomplete(world, "status", "")
    assert [c["value"] for c in everything["data"]["choices"]] == [second, first]
    narrowed = autocomplete(world, "approve", second[-6:])
    assert [c["value"] for c in narrowed["data"]["choices"]] == [second]
    assert autocomplete(world, "ship", "zzz-nothing")["data"]["choices"] == []
    assert world.github_requests() == before  # answered from stored state
    assert_discord_valid([everything, narrowed])


def test_unauthorised_users_are_refused_audited_and_change_nothing(world: World) -> None:
    world.github.add_issue(REPO, "Task", ["ready"])
    run_id = world.plan()
    before = world.github_requests()

    refusals = [
        world.command("approve", user="666", run_id=run_id),
        world.command("ship", user="666", run_id=run_id),
        world.command("cancel", user="666", run_id=run_id),
        world.press(f"approve:{run_id}", user="666"),
        world.press(f"cancel:{run_id}", user="666"),
    ]
    for answer in refusals:
        assert answer["data"]["flags"] == 64
        assert "You may not" in answer["data"]["content"]
    assert "<@42>" in refusals[0]["data"]["content"]  # says who may
    assert world.status(run_id) == "planned"
    assert world.github_requests() == before
    assert_discord_valid(refusals)

    audit = world.cli("audit", "--run", run_id)
    # One entry per user, action and outcome: the buttons repeat /approve and /cancel, so
    # they are coalesced (logged only) and nobody can flood the trail by retrying.
    assert audit.count("refused: not permitted") == 3
    assert "user 666" in audit

    allowed = world.command("approve", run_id=run_id)
    assert "approved by <@42>" in allowed["data"]["content"]
    audit = world.cli("audit", "--run", run_id)
    assert "approve  " in audit
    assert " ok" in audit


def test_a_user_without_the_plan_role_cannot_plan(world: World) -> None:
    body = json.loads(interaction(name="plan"))
    body["member"]["roles"] = ["8"]
    raw = json.dumps(body).encode()
    status, answer = world.service.request("POST", "/discord", raw, discord_headers(world.key, raw))
    document = json.loads(answer)
    assert status == 200
    assert document["data"]["flags"] == 64
    assert "<@&7>" in document["data"]["content"]  # the role that grants it
