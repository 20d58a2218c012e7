"""Every run reaches an end, end to end: ``valine serve`` and the stand-ins over HTTP.

Timeouts are crossed with the test-only ``VALINE_TEST_CLOCK_FILE`` (seconds added to the
service's use-case clock) and a reconcile every second (``VALINE_RECONCILE_EVERY``); a
lost enqueue with the test-only ``VALINE_TEST_LOSE_ENQUEUE``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from helpers import pr_event
from valine.testing import wait_for
from valine.testing.faults import Fault, Match
from world import DEFAULT_CONFIG, REPO, World, start_world, stop_world


def shown(world: World, state: str) -> None:
    """Wait until the run's message shows ``state``: its notify job has saved its edit."""
    wait_for(
        f"the message to show {state}",
        lambda: state in str((world.discord.original(world.tokens["plan"]) or {}).get("embeds")),
    )


def announcements(world: World, text: str) -> list[dict[str, Any]]:
    return [m for m in world.posted() if text in (m.get("content") or "")]


@pytest.fixture
def timed(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> Iterator[tuple[World, Path]]:
    """A world whose service clock the test moves, reconciling every second."""
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    config = (
        DEFAULT_CONFIG.replace('ref = "main"', 'ref = "main"\npr_timeout = 60')
        + '\n[policy]\non_stale = "redispatch"\nmax_dispatches = 2\n'
    )
    env = {"VALINE_TEST_CLOCK_FILE": str(clock), "VALINE_RECONCILE_EVERY": "1"}
    running = start_world(tmp_path, signing_key, webhook_examples, config=config, env=env)
    try:
        yield running, clock
    finally:
        stop_world(running)


def test_cancel_from_ship_failed_releases_the_lock_and_plan_plans_afresh(world: World) -> None:
    run_id, issues, prs = world.to_ready_to_ship(2)
    world.github.push(REPO, prs[issues[1]][0])  # the head moves: the merge is refused
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "ship_failed")
    wait_for("the ship failure", lambda: announcements(world, "did not ship completely"))
    failed = announcements(world, "did not ship completely")[0]
    labels = [b["label"] for row in failed["components"] for b in row["components"]]
    assert labels == ["Retry ship", "Cancel"]
    answer = world.press(f"cancel:{run_id}")
    assert f"shipped and kept: PR #{prs[issues[0]][0]} (#{issues[0]})" in answer["data"]["content"]
    world.wait_state(run_id, "cancelled")
    assert "back to ready" in world.described(run_id)
    kept, back = (world.github.issue(REPO, n) for n in issues)
    assert kept.state == "closed" and "shipped" in kept.labels
    assert back.state == "open" and "ready" in back.labels and "in-progress" not in back.labels
    fresh = world.plan()
    assert fresh != run_id
    assert f"#{issues[1]}" in world.described(fresh)


def test_a_dequeued_pull_request_fails_the_ship_once_and_retry_ships(world: World) -> None:
    world.github.require_merge_queue(REPO)
    run_id, issues, prs = world.to_ready_to_ship(1)
    pr, sha = prs[issues[0]]
    world.command("ship", run_id=run_id)
    wait_for("the merge queue", lambda: world.github.merge_queue(REPO) == [pr])
    assert world.status(run_id) == "shipping"
    world.github.eject_from_merge_queue(REPO, pr)
    dequeued = pr_event(world.examples, "synchronize", repo=REPO, number=pr, head_sha=sha)
    dequeued.update(action="dequeued", reason="CI_FAILURE")
    assert world.deliver("pull_request", dequeued, delivery="dq-1") == 202
    world.wait_state(run_id, "ship_failed")
    assert "left the merge queue: CI_FAILURE" in world.described(run_id)
    wait_for("the ship failure", lambda: announcements(world, "did not ship completely"))
    assert world.deliver("pull_request", dequeued, delivery="dq-1") == 200  # redelivered: seen
    assert len(announcements(world, "did not ship completely")) == 1
    world.press(f"ship-confirm:{run_id}")  # Retry ship, confirmed
    wait_for("queued again", lambda: world.github.merge_queue(REPO) == [pr])
    world.github.land_merge_queue(REPO)
    merged = pr_event(world.examples, "closed", repo=REPO, number=pr, head_sha=sha, merged=True)
    assert world.deliver("pull_request", merged) == 202
    world.wait_state(run_id, "shipped")


def test_an_ejection_whose_dequeued_webhook_is_lost_is_found_by_the_reconcile(
    timed: tuple[World, Path],
) -> None:
    world, _clock = timed  # the service reconciles every second
    world.github.require_merge_queue(REPO)
    run_id, issues, prs = world.to_ready_to_ship(1)
    pr, sha = prs[issues[0]]
    world.command("ship", run_id=run_id)
    wait_for("the merge queue", lambda: world.github.merge_queue(REPO) == [pr])
    time.sleep(2)  # reconciles that find it queued change nothing
    assert world.status(run_id) == "shipping"

    world.github.eject_from_merge_queue(REPO, pr)  # and GitHub's dequeued never arrives

    world.wait_state(run_id, "ship_failed", timeout=10)
    assert "left the merge queue: it is no longer in the queue" in world.described(run_id)
    wait_for("the ship failure", lambda: announcements(world, "did not ship completely"))
    time.sleep(2)  # more reconciles: the same ejection is not news again
    assert len(announcements(world, "did not ship completely")) == 1
    world.press(f"ship-confirm:{run_id}")  # Retry ship, confirmed
    wait_for("queued again", lambda: world.github.merge_queue(REPO) == [pr])
    world.github.land_merge_queue(REPO)
    merged = pr_event(world.examples, "closed", repo=REPO, number=pr, head_sha=sha, merged=True)
    assert world.deliver("pull_request", merged) == 202
    world.wait_state(run_id, "shipped")


def test_a_dispatched_task_past_pr_timeout_is_reported_and_re_dispatched(
    timed: tuple[World, Path],
) -> None:
    world, clock = timed
    run_id, issues = world.start(1)
    clock.write_text("61")
    wait_for("a second dispatch", lambda: len(world.github.dispatches(REPO)) == 2)
    wait_for(
        "the stale report",
        lambda: (
            "stale: no pull request 1 min after the hand-over; handed to the executor"
            in world.described(run_id)
        ),
    )
    wait_for("the first stale announcement", lambda: announcements(world, "is stale: "))
    clock.write_text("122")  # max_dispatches = 2: the next expiry fails the task
    world.wait_state(run_id, "failed")
    assert "gave up after 2 hand-over(s)" in world.described(run_id)
    assert len(world.github.dispatches(REPO)) == 2
    wait_for("the second", lambda: len(announcements(world, "is stale: ")) == 2)
    time.sleep(2)  # two more reconciles: the same two events, no more announcements
    stale = [m["content"] for m in announcements(world, "is stale: ")]
    assert len(stale) == 2, stale
    assert "handed to the executor again" in stale[0] and "gave up" in stale[1]
    wait_for(  # a failed run puts its unshipped issues back, as a cancel does
        "the issue back to ready",
        lambda: world.github.issue(REPO, issues[0]).labels == ["P1", "ready"],
    )
    wait_for(
        "the run to say so", lambda: f"Back to `ready`: #{issues[0]}" in world.described(run_id)
    )
    assert world.command("plan") == {"type": 5}, "the lock is released: /plan plans again"


def test_retry_re_dispatches_exactly_once(world: World) -> None:
    issues = world.ready_issues(2)
    run_id = world.plan()
    refused = Fault(
        status=422, body={"message": "Unexpected inputs"}, match=Match("POST", "dispatches")
    )
    world.github.faults.add(refused)
    assert "approved" in world.command("approve", run_id=run_id)["data"]["content"]
    wait_for("one dispatch", lambda: len(world.github.dispatches(REPO)) == 1)
    wait_for("the failed task", lambda: "`failed`" in world.described(run_id))
    failed = next(
        n
        for n in issues
        if f"#{n}" in world.described(run_id).split("`failed`")[0].rsplit("\n", 1)[-1]
    )
    first = world.command("retry", run_id=run_id, issue=str(failed))
    assert "retried" in first["data"]["content"]
    again = world.command("retry", run_id=run_id, issue=str(failed))
    assert "only a failed or stale task" in again["data"]["content"]
    pressed = world.press(f"retry:{run_id}:{failed}")
    assert "only a failed or stale task" in pressed["data"]["content"]
    wait_for("the re-dispatch", lambda: len(world.github.dispatches(REPO)) == 2)
    world.wait_state(run_id, "executing")
    wait_for("the task dispatched", lambda: "`failed`" not in world.described(run_id))
    assert [d.inputs["issue_number"] for d in world.github.dispatches(REPO)].count(str(failed)) == 1
    assert len(world.github.dispatches(REPO)) == 2


def test_a_failed_enqueue_right_after_a_save_still_lets_the_run_finish(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> None:
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    env = {
        "VALINE_TEST_CLOCK_FILE": str(clock),
        "VALINE_RECONCILE_EVERY": "1",
        "VALINE_TEST_LOSE_ENQUEUE": "start_run,ship_run",
    }
    world = start_world(tmp_path, signing_key, webhook_examples, env=env)
    try:
        issues = world.ready_issues(1)
        run_id = world.plan()
        assert "approved" in world.command("approve", run_id=run_id)["data"]["content"]
        assert world.status(run_id) == "approved"
        shown(world, "· approved")
        clock.write_text("181")  # past STALL_AFTER: the reconcile enqueues the start job
        wait_for("the dispatch", lambda: len(world.github.dispatches(REPO)) == 1)
        pr, sha = world.open_pr(run_id, issues[0])
        world.checks(pr, sha, "success")
        world.wait_state(run_id, "ready_to_ship")
        world.command("ship", run_id=run_id)
        assert world.status(run_id) == "shipping"
        shown(world, "· shipping")
        clock.write_text("400")
        world.wait_state(run_id, "shipped")
        assert world.github.pull(REPO, pr).merged
    finally:
        stop_world(world)
