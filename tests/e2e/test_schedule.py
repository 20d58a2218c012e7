"""The daily plan on a schedule, end to end: ``valine serve`` ticking its scheduler.

The service's clock is moved to a slot with the test-only ``VALINE_TEST_CLOCK_FILE``
(seconds added to the use cases' clock, which the scheduler reads too), so a 9:00 slot
comes in a second. Once per slot: across a restart and with a second ``valine serve`` on
the same state; a reminder instead while a run is active; nothing without ready issues;
the scheduled digest once per slot from stored state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from helpers import start_service, stop_service
from valine.runtime.scheduler import next_slot
from valine.testing import wait_for
from valine.testing.discord_standin import DEFAULT_CHANNEL_ID
from world import DEFAULT_CONFIG, REPO, World, start_world, stop_world

ZONE = "Europe/Paris"
CHANNEL = "1200000000000000777"
SCHEDULE_CONFIG = (
    DEFAULT_CONFIG
    + f"""
[schedule]
timezone = "{ZONE}"
plan = "0 9 * * 1-5"
digest = "0 17 * * 1-5"
channel_id = "{CHANNEL}"
"""
)


@pytest.fixture
def scheduled(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> Iterator[tuple[World, Path]]:
    """A scheduled world whose clock the test moves (ticking every second)."""
    clock = tmp_path / "clock-offset"
    move_to(clock, QUIET)  # no slot due when the service starts, whatever the real time
    env = {"VALINE_TEST_CLOCK_FILE": str(clock), "VALINE_RECONCILE_EVERY": "1"}
    running = start_world(tmp_path, signing_key, webhook_examples, config=SCHEDULE_CONFIG, env=env)
    try:
        yield running, clock
    finally:
        stop_world(running)


#: A Monday 3:00 in Paris: no slot within the scheduler's grace.
QUIET = next_slot("0 3 * * 1", ZONE, time.time())


def move_to(clock: Path, moment: float) -> None:
    """Set the service's clock to ``moment`` (epoch seconds) from now on."""
    clock.write_text(str(moment - time.time()))


def plans(world: World) -> list[dict[str, Any]]:
    """The plan messages posted in the schedule's channel."""
    return [
        m
        for m in world.discord.channel_messages(CHANNEL)
        if m.get("embeds") and m["embeds"][0].get("title", "").startswith("Run r")
    ]


def channel_texts(world: World, text: str) -> list[str]:
    return [
        str(m.get("content"))
        for m in world.discord.channel_messages(CHANNEL)
        if text in str(m.get("content"))
    ]


def logged(world: World, text: str) -> bool:
    return text in (world.service.workdir / "service.log").read_text()


def test_the_plan_is_posted_once_per_slot_and_a_reminder_while_a_run_is_active(
    scheduled: tuple[World, Path],
) -> None:
    world, clock = scheduled
    # A Monday 9:00 in Paris, with nothing ready: nothing is posted.
    monday = next_slot("0 9 * * 1", ZONE, QUIET)
    move_to(clock, monday + 1)
    wait_for("the empty slot", lambda: logged(world, "no ready issues, nothing posted"), 15)
    assert plans(world) == []

    # The Tuesday slot with two ready issues: the plan, for approval, once.
    first = world.github.add_issue(REPO, "Task A", ["ready"])
    world.github.add_issue(REPO, "Task B", ["ready"])
    tuesday = next_slot("0 9 * * 1-5", ZONE, monday + 60)
    move_to(clock, tuesday + 1)
    wait_for("the scheduled plan", lambda: plans(world), 15)
    # a restart within the slot, and a second service on the same state, tick again
    world.restart()
    second = start_service(world.service.workdir, world.env())
    try:
        time.sleep(3)
    finally:
        stop_service(second)
    (message,) = plans(world)
    title = message["embeds"][0]["title"]
    found = re.search(r"Run (r\d{8}-\w+)", title)
    assert found, title
    run = found.group(1)
    assert title.endswith("· planned")
    buttons = [b["custom_id"] for row in message["components"] for b in row["components"]]
    assert f"approve:{run}" in buttons
    assert world.status(run) == "planned"
    assert f"#{first}" in message["embeds"][0]["description"]

    # Approved by a person (planned by the schedule: not a self-approval).
    world.press(f"approve:{run}")
    world.wait_state(run, "executing")
    wait_for("the message edited", lambda: "executing" in str(world.discord.message(message["id"])))

    # Wednesday 9:00 while the run is active: a short reminder, no second plan, once.
    wednesday = next_slot("0 9 * * 1-5", ZONE, tuesday + 60)
    move_to(clock, wednesday + 1)
    wait_for("the reminder", lambda: channel_texts(world, "is still executing"), 15)
    world.restart()
    time.sleep(3)
    (reminder,) = channel_texts(world, "is still executing")
    assert f"`{run}`" in reminder and "0/2 ready" in reminder
    assert len(plans(world)) == 1
    assert world.discord.channel_messages(DEFAULT_CHANNEL_ID) == []


def test_the_scheduled_digest_is_posted_once_from_stored_state(
    scheduled: tuple[World, Path],
) -> None:
    world, clock = scheduled
    slot = next_slot("0 17 * * 1-5", ZONE, QUIET)
    before = world.github_requests()
    move_to(clock, slot + 1)
    wait_for("the digest", lambda: _digests(world), 15)
    world.restart()
    time.sleep(3)
    (digest,) = _digests(world)
    text = digest["embeds"][0]["description"]
    assert "Runs shipped: **0** of 0 run(s) today" in text
    assert "Ready issues left: no plan read them today" in text
    assert world.github_requests() == before


def _digests(world: World) -> list[dict[str, Any]]:
    return [
        m
        for m in world.discord.channel_messages(CHANNEL)
        if m.get("embeds") and m["embeds"][0].get("title", "").startswith("Digest")
    ]


GADGETS = "octo/gadgets"
CHANNELS = {REPO: "1300000000000000011", GADGETS: "1300000000000000012"}
TWO_SCHEDULES = (
    DEFAULT_CONFIG
    + f"""
[schedule]
timezone = "{ZONE}"
digest = "0 17 * * 1-5"
channel_id = "{CHANNEL}"

[[repositories]]
name = "{REPO}"
channel_id = "{CHANNELS[REPO]}"

[[repositories]]
name = "{GADGETS}"
channel_id = "{CHANNELS[GADGETS]}"
[repositories.schedule]
digest = "0 18 * * 1-5"
"""
)


def test_each_repository_posts_on_its_own_schedule_in_its_channel(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> None:
    """widgets keeps the top level's 17:00 digest, gadgets has its own at 18:00: each
    slot is posted once, by its repository only, in its repository's channel."""
    clock = tmp_path / "clock-offset"
    move_to(clock, QUIET)
    env = {"VALINE_TEST_CLOCK_FILE": str(clock), "VALINE_RECONCILE_EVERY": "1"}
    world = start_world(tmp_path, signing_key, webhook_examples, config=TWO_SCHEDULES, env=env)
    try:
        world.github.add_repo(GADGETS)

        def digests(repo: str) -> list[dict[str, Any]]:
            return [
                m
                for m in world.discord.channel_messages(CHANNELS[repo])
                if m.get("embeds") and m["embeds"][0].get("title", "").startswith("Digest")
            ]

        move_to(clock, next_slot("0 17 * * 1-5", ZONE, QUIET) + 1)
        wait_for("widgets' digest", lambda: digests(REPO), 15)
        time.sleep(3)
        assert (len(digests(REPO)), len(digests(GADGETS))) == (1, 0)
        move_to(clock, next_slot("0 18 * * 1-5", ZONE, QUIET) + 1)
        wait_for("gadgets' digest", lambda: digests(GADGETS), 15)
        time.sleep(3)
        assert (len(digests(REPO)), len(digests(GADGETS))) == (1, 1)
        assert GADGETS in str(digests(GADGETS)[0]) and REPO in str(digests(REPO)[0])
        assert world.discord.channel_messages(CHANNEL) == []  # each in its own channel
    finally:
        stop_world(world)
