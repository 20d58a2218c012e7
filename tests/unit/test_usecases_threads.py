"""A thread per run: the use cases over the Discord stand-in's thread model (real HTTP).

The plan message stays in the channel and is edited in place; the run's events go into a
thread started from it, each once; the thread is archived when the run ends; a crash or a
lost answer never makes a second thread; without thread permissions the run posts in the
channel as before threads and says so once.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_usecases import INTERACTION, REPO, Harness, harness  # noqa: F401  (the fixture)

from helpers import examples
from valine.core import threads
from valine.core.errors import DiscordUnavailable
from valine.core.models import Run
from valine.core.replies import Deferred
from valine.core.states import RunState, TaskState
from valine.discord.client import DiscordClient
from valine.testing.faults import Match, server_error
from valine.usecases import Actor
from valine.usecases.notifications import POSTED, SUPERSEDED

ADA = Actor("42", "ada")
CHANNEL = "3"  # where the harness's plan interactions come from
THREAD_START = "/channels/{channel_id}/messages/{message_id}/threads"


@pytest.fixture
def h(harness: Harness) -> Harness:  # noqa: F811  (the fixture of test_usecases)
    return harness


def executing(h: Harness, issues: int = 1) -> Run:
    """A run planned by its own ``/plan`` from channel 3, approved and handed over."""
    for i in range(issues):
        h.github.add_issue(REPO, f"Task {i}", ["ready"])
    n = len(h.discord.requests) + len(h.github.requests)
    interaction = {**INTERACTION, "id": f"{n}", "token": f"tok-{n}"}
    h.discord.interaction_received(interaction["token"], CHANNEL)
    assert h.orchestrator.request_plan(interaction, ADA) == Deferred()
    h.drain()
    run = h.orchestrator.store.active_run(REPO)
    assert run is not None
    h.orchestrator.approve(run.run_id, ADA)
    h.drain()
    return h.run(run.run_id)


def move(h: Harness, run_id: str, **changes: Any) -> Run:
    """The stored run's first task changed as a webhook would change it; then notified."""
    run = h.run(run_id)
    task = replace(run.tasks[0], **changes)
    saved = h.orchestrator.store.save_run(replace(run, tasks=(task, *run.tasks[1:])))
    h.orchestrator.run_notify_job({"run_id": run_id})
    return saved


def end(h: Harness, run_id: str, state: RunState, **changes: Any) -> Run:
    """The stored run in ``state`` (as its transition leaves it), then notified."""
    run = h.run(run_id)
    entered = {**run.entered, state.value: run.entered.get(state.value, 0) + 1}
    h.orchestrator.store.save_run(replace(run, state=state, entered=entered, **changes))
    h.orchestrator.run_notify_job({"run_id": run_id})
    return h.run(run_id)


def plan_message(h: Harness, run: Run) -> dict[str, Any]:
    message = h.discord.original(run.discord["token"])
    assert message is not None
    return message


def in_thread(h: Harness, run: Run) -> list[str]:
    assert run.thread_id is not None
    return [str(m["content"]) for m in h.discord.channel_messages(run.thread_id)]


def in_channel(h: Harness, run: Run) -> list[str]:
    """What the run posted outside its thread: channel messages and follow-ups."""
    posts = h.discord.channel_messages(CHANNEL) + h.discord.followups(run.discord["token"])
    return [str(m.get("content") or m.get("embeds")) for m in posts]


def test_the_runs_events_go_into_a_thread_started_from_the_plan_message(h: Harness) -> None:
    run = executing(h)
    number = run.tasks[0].issue_number
    pr, sha = h.github.open_pull(REPO, "fix", f"Fixes #{number}")

    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=pr, head_sha=sha)
    move(h, run.run_id, state=TaskState.CHECKS_FAILED, reason="ci/test failed")
    pushed = "f" * 40
    move(h, run.run_id, state=TaskState.CHECKS_PASSED, head_sha=pushed, checks_sha=pushed)
    run = end(h, run.run_id, RunState.READY_TO_SHIP)

    plan = plan_message(h, run)
    assert run.thread_id == plan["id"] == plan["thread"]["id"]  # started from the plan
    assert run.thread == threads.OPEN
    assert h.discord.thread(run.thread_id)["parent_id"] == CHANNEL  # type: ignore[index]
    assert h.discord.thread(run.thread_id)["name"] == f"Run {run.run_id} · {REPO}"  # type: ignore[index]
    posts = in_thread(h, run)
    assert len(posts) == 4, posts
    assert f"#{number} Task 0: [PR #{pr}]" in posts[0] and "opened" in posts[0]
    assert f"checks failed on PR #{pr} at `{sha[:7]}`: ci/test failed" in posts[1]
    assert f"checks green on PR #{pr} at `fffffff`" in posts[2]
    assert "Ready to ship" in posts[3]
    assert in_channel(h, run) == []  # nothing in the channel but the plan
    assert plan["embeds"][0]["title"].startswith(f"Run {run.run_id}")  # edited in place
    assert len(h.discord.threads()) == 1


def test_each_event_is_posted_once_however_often_the_notify_job_runs(h: Harness) -> None:
    run = executing(h, issues=2)
    first, second = (t.issue_number for t in run.tasks)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    for _ in range(4):
        h.orchestrator.run_notify_job({"run_id": run.run_id})
        h.drain()

    run = h.run(run.run_id)
    posts = in_thread(h, run)
    assert sum(f"#{first} " in p for p in posts) == 1
    assert not any(f"#{second} " in p for p in posts)
    assert run.announced == {f"pr:{first}:7": "posted"}
    starts = [r for r in h.discord.requests if r.route == THREAD_START]
    assert len(starts) == 1  # started once, then remembered on the run


def test_the_thread_is_archived_when_the_run_ends_and_once(h: Harness) -> None:
    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)

    run = end(h, run.run_id, RunState.CANCELLED, reason="cancelled by <@42>")
    h.orchestrator.run_notify_job({"run_id": run.run_id})

    assert run.thread == threads.ARCHIVED
    thread = h.discord.thread(run.thread_id or "")
    assert thread is not None and thread["thread_metadata"]["archived"] is True
    assert "cancelled: cancelled by <@42>" in in_thread(h, run)[-1]
    archives = [r for r in h.discord.requests if r.method == "PATCH" and r.route.endswith("}")]
    assert [(r.route, r.json) for r in archives] == [("/channels/{channel_id}", {"archived": True})]


def test_a_post_after_the_archive_reopens_the_thread_and_it_is_archived_again(
    h: Harness,
) -> None:
    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    run = end(h, run.run_id, RunState.FAILED, reason="#1 failed")
    assert run.thread == threads.ARCHIVED
    # a moderator did not lock it: a late event (another failure episode) is posted
    move(h, run.run_id, state=TaskState.FAILED, reason="the executor gave up", retries=1)

    run = h.run(run.run_id)
    assert "the executor gave up" in in_thread(h, run)[-1]
    assert run.thread == threads.ARCHIVED
    archives = [r for r in h.discord.requests if r.method == "PATCH" and r.route.endswith("}")]
    assert len(archives) == 2


def test_a_thread_start_whose_answer_was_lost_makes_one_thread(h: Harness) -> None:
    run = executing(h)
    h.discord.apply_then_fail_next(502, match=Match(method="POST", path="/threads$"), count=4)

    with contextlib.suppress(DiscordUnavailable):  # the job is retried later
        move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    h.orchestrator.run_notify_job({"run_id": run.run_id})

    run = h.run(run.run_id)
    assert len(h.discord.threads()) == 1
    assert run.thread_id == plan_message(h, run)["id"]
    assert len(in_thread(h, run)) == 1


def test_a_post_whose_answer_was_lost_and_whose_event_passed_still_lets_the_thread_close(
    h: Harness,
) -> None:
    """Found by the property below at 20 times its examples: the red checks were posted
    but every answer was lost, then a push made that event no longer called for. Its
    claim must not keep the ended run's thread open (nor be posted a second time)."""
    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    h.discord.apply_then_fail_next(502, match=Match(method="POST"), count=4)
    with contextlib.suppress(DiscordUnavailable):  # the notify job is retried later
        move(h, run.run_id, state=TaskState.CHECKS_FAILED, reason="red")
    h.discord.faults.clear()
    move(h, run.run_id, state=TaskState.PR_OPEN, head_sha="b" * 40)  # the push

    run = end(h, run.run_id, RunState.CANCELLED)

    assert run.thread == threads.ARCHIVED
    posts = in_thread(h, run)
    assert sum("checks failed" in p for p in posts) == 1  # posted once, never again
    assert all(v in (POSTED, SUPERSEDED) for v in run.announced.values()), run.announced


def test_a_crash_after_starting_the_thread_finds_it_again(h: Harness) -> None:
    run = executing(h)
    # the crashed attempt started the thread and died before saving its id
    with DiscordClient(h.discord.url, h.discord.application_id, h.discord.bot_token) as client:
        made = client.start_thread(CHANNEL, plan_message(h, run)["id"], "Run (crashed attempt)")

    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)

    run = h.run(run.run_id)
    assert run.thread_id == made
    assert len(h.discord.threads()) == 1
    assert len(in_thread(h, run)) == 1


def test_without_thread_permissions_the_run_posts_in_the_channel_and_says_so_once(
    h: Harness,
) -> None:
    h.discord.deny("create_public_threads", channel_id=CHANNEL)
    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    move(h, run.run_id, state=TaskState.CHECKS_PASSED, checks_sha="a" * 40)
    for _ in range(3):
        run = end(h, run.run_id, RunState.READY_TO_SHIP)

    assert (run.thread, run.thread_id) == (threads.REFUSED, None)
    assert h.discord.threads() == []
    posts = in_channel(h, run)
    assert sum("Create Public Threads" in p for p in posts) == 1
    assert "Create Public Threads" in posts[0]  # the notice comes first
    assert sum("Ready to ship" in p for p in posts) == 1
    assert not any("PR #7" in p for p in posts)  # events stay on the plan message
    starts = [r for r in h.discord.requests if r.route == THREAD_START]
    assert [r.status for r in starts] == [403]  # asked once, not on every notify


def test_a_thread_the_bot_may_no_longer_post_in_sends_the_run_to_the_channel(
    h: Harness,
) -> None:
    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    h.discord.deny("send_messages_in_threads")

    run = end(h, run.run_id, RunState.READY_TO_SHIP)

    assert run.thread == threads.REFUSED
    assert len(in_thread(h, run)) == 1  # the PR, before the permission went
    posts = in_channel(h, run)
    assert len(posts) == 2 and "Send Messages in Threads" in posts[0]
    assert "Ready to ship" in posts[1]
    assert run.announced["ready"] == "posted"


def test_a_thread_locked_by_a_moderator_sends_the_run_to_the_channel_without_a_notice(
    h: Harness,
) -> None:
    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    h.discord.lock_thread(h.run(run.run_id).thread_id or "")

    run = end(h, run.run_id, RunState.READY_TO_SHIP)

    assert run.thread == threads.NONE
    assert [p for p in in_channel(h, run) if "Ready to ship" in p]
    assert not any("Create Public Threads" in p for p in in_channel(h, run))


@settings(
    max_examples=examples(15),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.sampled_from(["pr", "red", "green", "notify", "lose_next", "refuse_next"]),
        min_size=1,
        max_size=14,
    )
)
def test_whatever_fails_in_between_each_event_is_posted_at_most_once_and_one_thread(
    h: Harness, steps: list[str]
) -> None:
    """Random webhooks, notify runs and Discord failures (answers lost after the request
    was applied, 503s before it was): never a second thread, never an event twice; once
    Discord answers again every event the run called for is posted."""
    h.discord.faults.clear()
    threads_before = len(h.discord.threads())
    run = executing(h)
    try:
        _random_steps(h, run, steps)
        h.discord.faults.clear()
        h.orchestrator.run_notify_job({"run_id": run.run_id})

        run = h.run(run.run_id)
        assert len(h.discord.threads()) - threads_before <= 1
        posts = in_thread(h, run) if run.thread_id else []
        assert len(posts) == len(set(posts)), posts
        wanted = {k for k, _ in threads.thread_events(run, h.orchestrator.web_url)}
        assert wanted <= set(run.announced)  # what the run calls for now is posted
        # a claim whose event the run no longer calls for is let go (its post may or may
        # not have arrived); every other one is posted, and nothing is posted twice
        assert all(v in (POSTED, SUPERSEDED) for v in run.announced.values()), run.announced
        posted = sum(v == POSTED for v in run.announced.values())
        assert posted <= len(posts) <= len(run.announced)
    finally:
        h.discord.faults.clear()
        stored = h.run(run.run_id)
        h.orchestrator.store.save_run(replace(stored, state=RunState.CANCELLED))


def _random_steps(h: Harness, run: Run, steps: list[str]) -> None:
    sha = iter(f"{n:040x}" for n in range(1, 100))
    for step in steps:
        try:
            if step == "pr":
                move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha=next(sha))
            elif step == "red":
                move(h, run.run_id, state=TaskState.CHECKS_FAILED, pr_number=7, reason="red")
            elif step == "green":
                move(h, run.run_id, state=TaskState.CHECKS_PASSED, pr_number=7)
            elif step == "notify":
                h.orchestrator.run_notify_job({"run_id": run.run_id})
            elif step == "lose_next":
                h.discord.apply_then_fail_next(502, match=Match(method="POST"))
            else:
                h.discord.fail_next(8, status=503)
        except DiscordUnavailable:
            pass


def test_posting_in_the_thread_is_no_progress_of_the_run(h: Harness) -> None:
    """The reconcile measures a stalled run from ``updated_at``: a late notify job that
    starts the thread and posts in it must not make a stalled run look fresh."""
    run = executing(h)
    moved = h.run(run.run_id)
    task = replace(moved.tasks[0], state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    saved = h.orchestrator.store.save_run(replace(moved, tasks=(task,)))
    h.clock.t += 600

    h.orchestrator.run_notify_job({"run_id": run.run_id})

    after = h.run(run.run_id)
    assert after.thread == threads.OPEN and after.announced  # it did post
    assert after.updated_at == saved.updated_at


def test_a_thread_deleted_by_a_moderator_sends_the_run_to_the_channel(h: Harness) -> None:
    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    h.discord.delete_thread(h.run(run.run_id).thread_id or "")

    run = end(h, run.run_id, RunState.READY_TO_SHIP)

    assert run.thread == threads.NONE
    assert [p for p in in_channel(h, run) if "Ready to ship" in p]
    assert run.announced["ready"] == "posted"
    assert h.discord.threads() == []


def test_a_run_that_moved_on_since_the_job_posted_is_not_archived_before_its_post(
    h: Harness,
) -> None:
    """A notify job posts for the run as it read it (cancelling), then finds it cancelled:
    it must leave the archive to the cancelled run's own notify, which posts first."""
    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    stored = h.run(run.run_id)
    entered = {**stored.entered, RunState.CANCELLED.value: 1}
    cancelled = h.orchestrator.store.save_run(
        replace(stored, state=RunState.CANCELLED, entered=entered, reason="by <@42>")
    )

    h.orchestrator._archive_if_ended(cancelled)  # the second half of the job, alone
    assert h.run(run.run_id).thread == threads.OPEN  # not archived: "cancelled" unposted

    h.orchestrator.run_notify_job({"run_id": run.run_id})  # the cancelled run's own notify
    run = h.run(run.run_id)
    assert run.thread == threads.ARCHIVED
    assert "cancelled: by <@42>" in in_thread(h, run)[-1]
    archives = [r for r in h.discord.requests if r.method == "PATCH" and r.route.endswith("}")]
    assert len(archives) == 1


def test_a_thread_left_open_by_an_attempt_that_died_is_archived_by_the_reconcile(
    h: Harness,
) -> None:
    """The cancelled run's notify posts its last event; Discord applies it but the answer
    is lost and that attempt is gone (nothing retries it): the post's claim is left
    unconfirmed and the thread open. The reconcile, STALL_AFTER after the run ended,
    runs the notify again: the post is sent with its claim's nonce (Discord returns the
    first message: one post) and the thread is archived; once, not again after."""
    from valine.usecases.base import STALL_AFTER

    run = executing(h)
    move(h, run.run_id, state=TaskState.PR_OPEN, pr_number=7, head_sha="a" * 40)
    h.discord.apply_then_fail_next(502, match=Match(method="POST"))
    retries = server_error(503, match=Match(method="POST"))
    h.discord.faults.add(retries, 8)  # and every retry of this attempt
    with contextlib.suppress(DiscordUnavailable):
        end(h, run.run_id, RunState.CANCELLED, reason="cancelled by <@42>")
    h.discord.faults.clear()
    stuck = h.run(run.run_id)
    assert stuck.thread == threads.OPEN
    assert stuck.announced["cancelled"].startswith("sending thread")
    assert sum("cancelled by" in p for p in in_thread(h, stuck)) == 1  # it did arrive

    h.orchestrator.reconcile()  # too soon: a live attempt may still be posting
    h.drain()
    assert h.run(run.run_id).thread == threads.OPEN
    h.clock.t += STALL_AFTER
    h.orchestrator.reconcile()
    h.drain()

    run = h.run(run.run_id)
    assert run.thread == threads.ARCHIVED
    assert run.announced["cancelled"] == "posted"
    assert sum("cancelled by" in p for p in in_thread(h, run)) == 1
    archives = [r for r in h.discord.requests if r.method == "PATCH" and r.route.endswith("}")]
    h.clock.t += STALL_AFTER
    h.orchestrator.reconcile()
    h.drain()
    after = [r for r in h.discord.requests if r.method == "PATCH" and r.route.endswith("}")]
    assert len(archives) == len(after) == 1
