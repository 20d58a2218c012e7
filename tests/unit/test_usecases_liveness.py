"""Every run reaches an end: cancel from anywhere, merge-queue ejections, stale work,
retries, and jobs whose enqueue was lost. The use cases over the SQLite adapters and the
GitHub and Discord stand-ins (the harness of test_usecases)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from test_usecases import REPO, Harness, harness, planned  # noqa: F401  (fixture)

from valine.core.liveness import expire
from valine.core.models import Run, retry_task
from valine.core.policy import Liveness, Policy
from valine.core.states import RunState, Step, TaskState
from valine.core.tracking import settle
from valine.ports import GitHubError
from valine.testing import payloads
from valine.testing.faults import Match
from valine.testing.launcher import LossyQueue
from valine.usecases import CLAIM_TIMEOUT, DISPATCH, Actor
from valine.usecases.base import dispatch_key
from valine.usecases.tracking import STALL_AFTER

ADA = Actor("42", "ada")


@pytest.fixture
def h(harness: Harness) -> Harness:  # noqa: F811  (the fixture of test_usecases)
    return harness


def executing(h: Harness, issues: int = 1) -> Run:
    """A run approved and started: every task handed to the workflow."""
    run_id = planned(h, issues)
    h.orchestrator.approve(run_id, ADA)
    h.drain()
    run = h.run(run_id)
    assert run.state is RunState.EXECUTING
    assert all(t.state is TaskState.DISPATCHED for t in run.tasks)
    return run


def green(h: Harness, run: Run, count: int | None = None) -> Run:
    """The first ``count`` (default all) tasks with an open PR whose checks passed."""
    tasks = list(run.tasks[count:]) if count is not None else []
    for task in reversed(run.tasks[:count]):
        pr, sha = h.github.open_pull(
            REPO, f"fix-{task.issue_number}", f"Fixes #{task.issue_number}"
        )
        h.github.report_checks(REPO, sha, "success")
        tasks.insert(
            0,
            replace(
                task, state=TaskState.CHECKS_PASSED, pr_number=pr, head_sha=sha, checks_sha=sha
            ),
        )
    ready = all(t.state is TaskState.CHECKS_PASSED for t in tasks)
    state = RunState.READY_TO_SHIP if ready else RunState.EXECUTING
    return h.orchestrator.store.save_run(replace(run, state=state, tasks=tuple(tasks)))


def labels(h: Harness, number: int) -> set[str]:
    return set(h.github.issue(REPO, number).labels)


def deliver(h: Harness, event: str, payload: dict[str, Any]) -> None:
    h.deliver({"event": event, "delivery_id": f"d-{h.clock.t}-{event}", "payload": payload})


# -- a way out of every state ----------------------------------------------------------


def ship_failed(h: Harness) -> Run:
    """Two green tasks; the second's head moves before the merge, so the ship fails."""
    run = green(h, executing(h, issues=2))
    h.github.push(REPO, int(run.tasks[1].pr_number or 0))  # the merge is refused: 409
    h.orchestrator.ship(run.run_id, ADA)
    h.drain()
    run = h.run(run.run_id)
    assert run.state is RunState.SHIP_FAILED
    # The ship-time re-check saw the new head (no check on it yet): not merged.
    assert [t.state for t in run.tasks] == [TaskState.MERGED, TaskState.CHECKS_PENDING]
    assert "head moved to" in str(run.tasks[1].reason)
    return run


def test_cancel_from_ship_failed_keeps_what_shipped_and_releases_the_rest(h: Harness) -> None:
    run = ship_failed(h)
    shipped, left = run.tasks
    answer = h.orchestrator.cancel(run.run_id, ADA)
    content = answer.text
    assert f"PR #{shipped.pr_number} (#{shipped.issue_number})" in content
    assert f"back to ready: #{left.issue_number}" in content
    assert h.run(run.run_id).state is RunState.CANCELLING
    assert h.orchestrator.store.active_run(REPO) is not None, "the lock is held until released"
    h.drain()
    done = h.run(run.run_id)
    assert done.state is RunState.CANCELLED
    assert h.orchestrator.store.active_run(REPO) is None
    assert "shipped" in labels(h, shipped.issue_number)
    assert h.github.issue(REPO, shipped.issue_number).state == "closed"
    assert labels(h, left.issue_number) >= {"ready"}
    assert "in-progress" not in labels(h, left.issue_number)
    assert h.github.issue(REPO, left.issue_number).state == "open"
    assert "back to ready" in str(done.reason)


def test_the_failed_ship_message_offers_retry_ship_and_cancel(h: Harness) -> None:
    run = ship_failed(h)
    posted = [r.json for r in h.discord.requests if r.method == "POST" and r.json]
    failed = [m for m in posted if "did not ship completely" in str(m.get("content"))]
    assert failed, posted
    buttons = [b["custom_id"] for row in failed[-1]["components"] for b in row["components"]]
    assert buttons == [f"ship:{run.run_id}", f"cancel:{run.run_id}"]


def test_cancel_while_shipping_takes_effect_when_the_attempt_ends(h: Harness) -> None:
    h.github.require_merge_queue(REPO)
    run = green(h, executing(h))
    h.orchestrator.ship(run.run_id, ADA)
    h.drain()
    assert h.github.merge_queue(REPO) == [run.tasks[0].pr_number]
    answer = h.orchestrator.cancel(run.run_id, ADA)
    assert "takes effect when the merges in flight end" in answer.text
    assert h.run(run.run_id).state is RunState.SHIPPING
    h.drain()
    assert h.run(run.run_id).state is RunState.SHIPPING, "the queued merge is still in flight"
    task = h.run(run.run_id).tasks[0]
    deliver(
        h,
        "pull_request",
        {
            **payloads.pull_request(REPO, "dequeued", int(task.pr_number or 0), str(task.head_sha)),
            "reason": "MERGE_CONFLICT",
        },
    )
    h.drain()
    done = h.run(run.run_id)
    assert done.state is RunState.CANCELLED
    assert labels(h, task.issue_number) >= {"ready"}
    assert "in-progress" not in labels(h, task.issue_number)


def test_a_cancel_asked_while_shipping_survives_a_ship_job_that_dies(h: Harness) -> None:
    h.github.require_merge_queue(REPO)
    run = green(h, executing(h))
    h.orchestrator.ship(run.run_id, ADA)
    h.orchestrator.cancel(run.run_id, ADA)
    h.orchestrator.on_dead_letter("ship_run", {"run_id": run.run_id}, "GitHub down")
    h.drain()
    done = h.run(run.run_id)
    assert done.state is RunState.CANCELLED
    assert "GitHub down" not in str(done.reason)  # the detail is in the log only
    assert "(ref " in str(done.reason)
    assert "ready" in labels(h, run.tasks[0].issue_number)


def test_every_cancellable_state_ends_and_releases_the_lock(h: Harness) -> None:
    run_id = planned(h)
    h.orchestrator.cancel(run_id, ADA)
    assert h.run(run_id).state is RunState.CANCELLED  # nothing on GitHub yet
    run = executing(h)
    h.orchestrator.cancel(run.run_id, ADA)
    h.drain()
    assert h.run(run.run_id).state is RunState.CANCELLED
    assert h.orchestrator.store.active_run(REPO) is None
    refused = h.orchestrator.cancel(run.run_id, ADA)
    assert "is `cancelled`" in refused.text


class Interleaved:
    """The real client, except that ``update_issues`` first runs ``before`` once."""

    def __init__(self, client: Any, before: Any) -> None:
        self._client = client
        self.before = before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_issues(self, *args: Any, **kwargs: Any) -> Any:
        before, self.before = self.before, None
        if before is not None:
            before()
        return self._client.update_issues(*args, **kwargs)


@pytest.mark.parametrize("cancel_job_runs_mid_way", [False, True])
def test_cancel_racing_the_start_job_leaves_every_issue_ready(
    h: Harness, cancel_job_runs_mid_way: bool
) -> None:
    run_id = planned(h, issues=2)
    h.orchestrator.approve(run_id, ADA)

    def cancel_now() -> None:  # while the start job relabels: its claim is fresh
        h.orchestrator.cancel(run_id, ADA)
        if cancel_job_runs_mid_way:
            h.orchestrator.run_cancel_job({"run_id": run_id})
            assert h.run(run_id).state is RunState.CANCELLING, "it waits for the relabel"

    h.client["github"] = Interleaved(h.client["github"], cancel_now)
    h.drain()
    h.clock.t += CLAIM_TIMEOUT + 1
    h.drain()
    run = h.run(run_id)
    assert run.state is RunState.CANCELLED
    for task in run.tasks:
        assert "ready" in labels(h, task.issue_number)
        assert "in-progress" not in labels(h, task.issue_number)
    assert h.github.dispatches(REPO) == [], "a cancelled run dispatches nothing"


class RefusingUpdates:
    """The real client, except that relabelling is refused (422)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_issues(self, *args: Any, **kwargs: Any) -> None:
        raise GitHubError(422, "Could not resolve to a node")


def test_a_run_whose_every_task_fails_while_starting_ends(h: Harness) -> None:
    run_id = planned(h, issues=2)
    h.client["github"] = RefusingUpdates(h.client["github"])
    h.orchestrator.approve(run_id, ADA)
    h.drain()
    run = h.run(run_id)
    assert run.state is RunState.FAILED
    assert all(t.state is TaskState.FAILED for t in run.tasks)
    assert h.orchestrator.store.active_run(REPO) is None


def test_a_cancel_whose_relabel_is_refused_for_good_still_ends_the_run(h: Harness) -> None:
    run = executing(h)
    h.client["github"] = RefusingUpdates(h.client["github"])
    h.orchestrator.cancel(run.run_id, ADA)
    h.drain()
    done = h.run(run.run_id)
    assert done.state is RunState.CANCELLED
    assert "relabel them by hand" in str(done.reason)
    assert h.orchestrator.store.active_run(REPO) is None


# -- merge queues ------------------------------------------------------------------------


def queued(h: Harness) -> Run:
    h.github.require_merge_queue(REPO)
    run = green(h, executing(h))
    h.orchestrator.ship(run.run_id, ADA)
    h.drain()
    run = h.run(run.run_id)
    assert run.state is RunState.SHIPPING
    assert "queued" in run.tasks[0].steps_done
    return run


def enqueues(h: Harness) -> int:
    return sum(1 for r in h.github.requests if "enqueuePullRequest" in str(r.body))


def test_a_dequeued_pull_request_fails_the_ship_and_retry_queues_it_again(h: Harness) -> None:
    run = queued(h)
    task = run.tasks[0]
    h.github.eject_from_merge_queue(REPO, int(task.pr_number or 0))
    payload = payloads.pull_request(REPO, "dequeued", int(task.pr_number or 0), str(task.head_sha))
    deliver(h, "pull_request", {**payload, "reason": "CI_FAILURE"})
    h.drain()
    failed = h.run(run.run_id)
    assert failed.state is RunState.SHIP_FAILED
    assert "left the merge queue: CI_FAILURE" in str(failed.tasks[0].reason)
    assert Step.DEQUEUED in failed.tasks[0].steps_done
    assert enqueues(h) == 1
    h.orchestrator.ship(run.run_id, ADA)  # Retry ship
    h.drain()
    assert enqueues(h) == 2
    assert h.github.merge_queue(REPO) == [task.pr_number]
    h.github.land_merge_queue(REPO)
    deliver(
        h,
        "pull_request",
        payloads.pull_request(
            REPO, "closed", int(task.pr_number or 0), str(task.head_sha), merged=True
        ),
    )
    h.drain()
    assert h.run(run.run_id).state is RunState.SHIPPED


def test_a_failing_merge_group_check_suite_ejects_the_pull_request(h: Harness) -> None:
    run = queued(h)
    task = run.tasks[0]
    suite = payloads.check_suite(REPO, "c" * 40, "failure", 0)
    suite["check_suite"]["pull_requests"] = []
    suite["check_suite"]["head_branch"] = f"gh-readonly-queue/main/pr-{task.pr_number}-{'d' * 40}"
    deliver(h, "check_suite", suite)
    h.drain()
    failed = h.run(run.run_id)
    assert failed.state is RunState.SHIP_FAILED
    assert "merge group checks concluded failure" in str(failed.tasks[0].reason)


def announced(h: Harness, text: str) -> int:
    """How many messages that exist on Discord say ``text``."""
    return sum(1 for m in h.discord.messages() if text in str(m.get("content")))


def test_a_lost_dequeue_webhook_is_seen_by_the_reconcile(h: Harness) -> None:
    """The reconcile reads ``mergeQueueEntry`` with the checks: an ejection whose
    ``dequeued`` webhook was lost ends the attempt as that webhook would, at once."""
    run = queued(h)
    task = run.tasks[0]
    before = len(h.github.requests)
    h.orchestrator.reconcile()  # still queued: nothing changes
    assert h.run(run.run_id).state is RunState.SHIPPING
    assert len(h.github.requests) - before == 2  # one get_pull, one checks query
    h.github.eject_from_merge_queue(REPO, int(task.pr_number or 0))  # no webhook

    before = len(h.github.requests)
    h.orchestrator.reconcile()
    reconcile_requests = len(h.github.requests) - before
    h.drain()
    h.orchestrator.reconcile()  # a later reconcile, and a late webhook: no second news
    payload = payloads.pull_request(REPO, "dequeued", int(task.pr_number or 0), str(task.head_sha))
    deliver(h, "pull_request", {**payload, "reason": "MERGE_CONFLICT"})
    h.drain()

    assert reconcile_requests == 2  # the queue is read in the same query as the checks
    failed = h.run(run.run_id)
    assert failed.state is RunState.SHIP_FAILED
    assert "left the merge queue: it is no longer in the queue" in str(failed.tasks[0].reason)
    assert Step.DEQUEUED in failed.tasks[0].steps_done
    assert announced(h, "did not ship completely") == 1
    h.orchestrator.ship(run.run_id, ADA)  # Retry ship queues it again
    h.drain()
    assert h.github.merge_queue(REPO) == [task.pr_number]
    h.orchestrator.reconcile()
    assert h.run(run.run_id).state is RunState.SHIPPING  # queued again, not ejected


def test_a_pull_request_stuck_in_the_queue_ends_the_ship_after_the_checks_timeout(
    h: Harness,
) -> None:
    run = queued(h)  # the queue never merges nor ejects it
    h.orchestrator.reconcile()
    assert h.run(run.run_id).state is RunState.SHIPPING
    h.clock.t += h.orchestrator.policy.liveness.checks_timeout
    h.orchestrator.reconcile()
    h.drain()
    failed = h.run(run.run_id)
    assert failed.state is RunState.SHIP_FAILED
    assert "not merged" in str(failed.tasks[0].reason)


# -- stale work ----------------------------------------------------------------------


def with_liveness(h: Harness, **changes: Any) -> None:
    policy = h.orchestrator.policy
    h.orchestrator.policy = replace(policy, liveness=replace(policy.liveness, **changes))


def test_a_task_without_a_pull_request_goes_stale_and_is_reported(h: Harness) -> None:
    run = executing(h)
    h.clock.t += h.orchestrator.policy.executor.pr_timeout - 10
    h.orchestrator.reconcile()
    assert h.run(run.run_id).tasks[0].state is TaskState.DISPATCHED
    h.clock.t += 10
    h.orchestrator.reconcile()
    h.drain()
    task = h.run(run.run_id).tasks[0]
    assert task.state is TaskState.STALE
    assert "no pull request 60 min after the hand-over" in str(task.reason)
    edits = [r.json for r in h.discord.requests if r.method == "PATCH" and r.json]
    assert "stale" in str(edits[-1]["embeds"][0]["description"])
    assert len(h.github.dispatches(REPO)) == 1, "notify re-dispatches nothing"
    # a late pull request still counts
    pr, sha = h.github.open_pull(REPO, "late", f"Fixes #{task.issue_number}")
    deliver(
        h,
        "pull_request",
        payloads.pull_request(REPO, "opened", pr, sha, f"Fixes #{task.issue_number}"),
    )
    assert h.run(run.run_id).tasks[0].state is TaskState.PR_OPEN


def stale_posts(h: Harness) -> list[dict[str, Any]]:
    """The stale announcements on Discord (channel messages and follow-ups)."""
    return [m for m in h.discord.messages() if "is stale: " in str(m.get("content"))]


def test_a_stale_task_is_announced_once_however_often_the_jobs_run(h: Harness) -> None:
    run = executing(h)
    h.clock.t += h.orchestrator.policy.executor.pr_timeout
    # posted in the run's thread, the answer lost
    h.discord.apply_then_fail_next(502, match=Match(method="POST", path="/messages$"))
    h.orchestrator.reconcile()
    h.drain()
    for _ in range(2):  # the reconcile again, the notify job redelivered
        h.orchestrator.reconcile()
        h.orchestrator.run_notify_job({"run_id": run.run_id})
        h.drain()

    [post] = stale_posts(h)
    number = run.tasks[0].issue_number
    assert f"#{number} Task 0 is stale: no pull request 60 min after the hand-over" in str(
        post["content"]
    )
    assert [b["custom_id"] for row in post["components"] for b in row["components"]] == [
        f"retry:{run.run_id}:{number}"
    ]
    assert h.run(run.run_id).announced[f"stale:{number}:1"] == "posted"
    tries = [r for r in h.discord.requests if r.method == "POST" and "stale" in str(r.json)]
    assert len({r.json["nonce"] for r in tries}) == 1 and len(tries) == 2  # resent, same nonce


def test_each_stale_event_is_its_own_announcement(h: Harness) -> None:
    """A re-dispatch after a stale event and a second expiry: two events, two posts."""
    with_liveness(h, on_stale="redispatch", max_dispatches=3)
    run = executing(h)
    timeout = h.orchestrator.policy.executor.pr_timeout
    for expiry in (1, 2):
        h.clock.t += timeout
        h.orchestrator.reconcile()
        h.drain()
        h.orchestrator.reconcile()  # not overdue again yet: no new event
        h.drain()
        assert len(stale_posts(h)) == expiry
        assert h.run(run.run_id).tasks[0].stales == expiry
    assert len(h.github.dispatches(REPO)) == 3
    assert all("handed to the executor again" in str(p["content"]) for p in stale_posts(h))


def test_redispatch_hands_a_stale_task_over_at_most_max_dispatches_times(h: Harness) -> None:
    with_liveness(h, on_stale="redispatch", max_dispatches=2)
    run = executing(h)
    timeout = h.orchestrator.policy.executor.pr_timeout
    h.clock.t += timeout
    h.orchestrator.reconcile()
    h.drain()
    assert len(h.github.dispatches(REPO)) == 2
    task = h.run(run.run_id).tasks[0]
    assert (task.state, task.dispatches) == (TaskState.DISPATCHED, 2)
    h.clock.t += timeout
    h.orchestrator.reconcile()
    h.drain()
    assert len(h.github.dispatches(REPO)) == 2, "max_dispatches reached"
    done = h.run(run.run_id)
    assert done.tasks[0].state is TaskState.FAILED
    assert "gave up after 2 hand-over(s)" in str(done.tasks[0].reason)
    assert done.state is RunState.FAILED, "nothing left to wait for: the run ends"
    assert h.orchestrator.store.active_run(REPO) is None


def test_on_stale_fail_fails_the_task_and_the_rest_of_the_run_goes_on(h: Harness) -> None:
    with_liveness(h, on_stale="fail")
    run = green(h, executing(h, issues=2), count=1)
    first, second = run.tasks
    waiting = replace(second, state=TaskState.DISPATCHED, pr_number=None, since=h.clock.t)
    run = h.orchestrator.store.save_run(
        replace(run, state=RunState.EXECUTING, tasks=(first, waiting))
    )
    h.clock.t += h.orchestrator.policy.executor.pr_timeout
    h.orchestrator.reconcile()
    after = h.run(run.run_id)
    assert after.tasks[1].state is TaskState.FAILED
    assert after.state is RunState.READY_TO_SHIP


def test_checks_that_never_conclude_make_the_task_stale(h: Harness) -> None:
    run = executing(h)
    task = run.tasks[0]
    pr, sha = h.github.open_pull(REPO, "fix", f"Fixes #{task.issue_number}")
    deliver(
        h,
        "pull_request",
        payloads.pull_request(REPO, "opened", pr, sha, f"Fixes #{task.issue_number}"),
    )
    h.clock.t += h.orchestrator.policy.liveness.checks_timeout
    h.orchestrator.reconcile()
    stale = h.run(run.run_id).tasks[0]
    assert stale.state is TaskState.STALE
    assert f"checks of PR #{pr} did not conclude" in str(stale.reason)
    h.github.report_checks(REPO, sha, "success")
    deliver(h, "check_suite", payloads.check_suite(REPO, sha, "success", pr))
    assert h.run(run.run_id).tasks[0].state is TaskState.CHECKS_PASSED


def test_expiry_only_counts_time_in_the_current_state() -> None:
    from valine.core.models import Task

    now = 10_000.0
    run = Run(
        run_id="r1",
        repo=REPO,
        created_at=0.0,
        state=RunState.EXECUTING,
        tasks=(
            Task(1, "a", state=TaskState.DISPATCHED, since=now - 3600),
            Task(2, "b", state=TaskState.DISPATCHED, since=now - 3599),
            Task(3, "c", state=TaskState.DISPATCHED, since=None),  # stored before `since`
        ),
    )
    after, again = expire(run, now, Policy())
    assert [t.state for t in after.tasks] == [
        TaskState.STALE,
        TaskState.DISPATCHED,
        TaskState.DISPATCHED,
    ]
    assert again == []


# -- retry -----------------------------------------------------------------------------


def failed_task(h: Harness) -> Run:
    run = executing(h)
    h.orchestrator._fail_task(run.run_id, run.tasks[0].issue_number, "workflow dispatch failed")
    return h.run(run.run_id)


def test_retry_re_dispatches_exactly_once_per_retry(h: Harness) -> None:
    run = failed_task(h)
    assert run.state is RunState.FAILED  # the only task failed: nothing left to wait for
    h.drain()  # its issue goes back to ready; take it out of the next plan
    h.github.set_labels(REPO, run.tasks[0].issue_number, [])
    run = green(h, executing(h, issues=2), count=1)
    h.orchestrator._fail_task(run.run_id, run.tasks[1].issue_number, "workflow dispatch failed")
    assert h.run(run.run_id).state is RunState.READY_TO_SHIP
    number = run.tasks[1].issue_number
    before = len(h.github.dispatches(REPO))
    first = h.orchestrator.retry(run.run_id, str(number), ADA)
    second = h.orchestrator.retry(run.run_id, f"#{number}", ADA)
    assert "retried" in first.text
    assert "only a failed or stale task" in second.text
    h.orchestrator.press_button(
        {"user_id": "42", "user_name": "ada", "roles": [], "guild_id": "4"},
        f"retry:{run.run_id}:{number}",
    )
    h.drain()
    assert len(h.github.dispatches(REPO)) == before + 1
    assert h.run(run.run_id).task(number).state is TaskState.DISPATCHED
    assert h.run(run.run_id).state is RunState.EXECUTING, "ready_to_ship went back"
    outcomes = [
        e.outcome for e in h.orchestrator.store.audit_trail(run.run_id) if e.action == "retry"
    ]
    assert sorted(outcomes) == sorted(
        [
            f"ok: #{number}",
            f"refused: #{number} is not retryable",
            f"refused: #{number} is not retryable",
        ]
    )


def racing_saves(h: Harness, run_id: str, *saves: Callable[[Run], Run]) -> Callable[[], None]:
    """Make the next saves of the store lose a race: before each, ``saves[i]`` is applied
    to the stored run and saved (as a webhook job would). Returns the undo."""
    store = h.orchestrator.store
    real_save = store.save_run
    pending = list(saves)

    def save(candidate: Run) -> Run:
        if pending:
            real_save(pending.pop(0)(store.get_run(run_id)))
        return real_save(candidate)

    store.save_run = save  # type: ignore[method-assign]

    def undo() -> None:
        store.save_run = real_save  # type: ignore[method-assign]
        assert not pending, "the race was not staged"

    return undo


def test_a_retry_racing_a_webhook_save_reloads_and_retries_once(h: Harness) -> None:
    """A webhook saving the run between the retry's read and its write (here a delivery
    recorded, then a second one) is no lost race: the retry decides again and wins."""
    run = green(h, executing(h, issues=2), count=1)
    number = run.tasks[1].issue_number
    h.orchestrator._fail_task(run.run_id, number, "workflow dispatch failed")
    before = len(h.github.dispatches(REPO))
    undo = racing_saves(
        h,
        run.run_id,
        lambda r: replace(r, applied=(*r.applied, "d1")),
        lambda r: replace(r, applied=(*r.applied, "d2")),
    )
    answer = h.orchestrator.retry(run.run_id, str(number), ADA)
    undo()
    h.drain()

    assert not answer.private, answer  # public "retried", not "try again"
    assert "retried #" in answer.text
    saved = h.run(run.run_id)
    assert {"d1", "d2"} <= set(saved.applied)  # the webhooks' saves were kept
    assert saved.task(number).state is TaskState.DISPATCHED
    assert saved.task(number).retries == 1
    assert len(h.github.dispatches(REPO)) == before + 1


def test_a_retry_racing_another_retry_dispatches_once(h: Harness) -> None:
    """The save that beat the retry was a retry of the same task: the reload finds the
    task no longer failed, so this one is refused and nothing is dispatched twice."""
    run = green(h, executing(h, issues=2), count=1)
    number = run.tasks[1].issue_number
    h.orchestrator._fail_task(run.run_id, number, "workflow dispatch failed")
    before = len(h.github.dispatches(REPO))
    undo = racing_saves(  # the first press's save
        h,
        run.run_id,
        lambda r: settle(retry_task(r, number, h.clock.t, "by ada"), h.clock.t, False),
    )
    answer = h.orchestrator.retry(run.run_id, str(number), ADA)  # a second press of ada's
    undo()
    h.orchestrator.queue.enqueue(  # the winner's own dispatch job
        DISPATCH,
        {"run_id": run.run_id, "issue": number},
        dedupe_key=dispatch_key(run.run_id, h.run(run.run_id).task(number)),
    )
    h.drain()

    assert "only a failed or stale task" in answer.text
    assert h.run(run.run_id).task(number).retries == 1
    assert len(h.github.dispatches(REPO)) == before + 1


def test_retry_is_authorised_like_approve(h: Harness) -> None:
    run = green(h, executing(h, issues=2), count=1)
    h.orchestrator._fail_task(run.run_id, run.tasks[1].issue_number, "boom")
    answer = h.orchestrator.retry(run.run_id, str(run.tasks[1].issue_number), Actor("7", "eve"))
    assert answer.text.startswith("⛔ You may not retry tasks.")
    assert h.run(run.run_id).tasks[1].state is TaskState.FAILED
    from valine.core.render import help_message
    from valine.usecases import ROUTER

    policy = h.orchestrator.policy
    shown = help_message(REPO, "workflow", "ready", policy.permissions, ROUTER.offered())
    shown = {"description": shown.cards[0].description}
    retry_line = next(line for line in shown["description"].splitlines() if "/retry" in line)
    assert retry_line.endswith("Allowed: <@42>."), "/help names the approvers for /retry"


def test_retry_autocompletes_the_failed_and_stale_tasks(h: Harness) -> None:
    run = green(h, executing(h, issues=3), count=2)
    h.orchestrator._fail_task(run.run_id, run.tasks[2].issue_number, "boom")
    assert h.orchestrator.retry_choices(run.run_id, "") == [str(run.tasks[2].issue_number)]
    assert h.orchestrator.retry_choices("nope", "") == []


# -- no state without its job ----------------------------------------------------------


@pytest.mark.parametrize("action", ["approve", "ship", "cancel"])
def test_a_lost_enqueue_after_a_save_is_carried_on_by_the_reconcile(
    h: Harness, action: str
) -> None:
    kind = {"approve": "start_run", "ship": "ship_run", "cancel": "cancel_run"}[action]
    run_id = planned(h) if action == "approve" else green(h, executing(h)).run_id
    real = h.orchestrator.queue
    h.orchestrator.queue = LossyQueue(real, {kind})  # type: ignore[assignment]
    getattr(h.orchestrator, action)(run_id, ADA)
    h.drain()
    waiting = h.run(run_id).state
    assert waiting in (RunState.APPROVED, RunState.SHIPPING, RunState.CANCELLING)
    h.orchestrator.reconcile()
    h.drain()
    assert h.run(run_id).state is waiting, "not before STALL_AFTER"
    h.clock.t += STALL_AFTER
    h.orchestrator.reconcile()
    h.drain()
    expected = {
        "approve": RunState.EXECUTING,
        "ship": RunState.SHIPPED,
        "cancel": RunState.CANCELLED,
    }
    assert h.run(run_id).state is expected[action]


def test_a_policy_with_bad_liveness_keys_names_them() -> None:
    from valine.core.errors import ConfigurationError
    from valine.core.policy import policy_from_mapping

    assert policy_from_mapping({}).liveness == Liveness()
    assert policy_from_mapping({}).executor.pr_timeout == 3600
    for data, key in [
        ({"executor": {"pr_timeout": 5}}, "executor.pr_timeout"),
        ({"checks": {"timeout": "soon"}}, "checks.timeout"),
        ({"policy": {"on_stale": "panic"}}, "policy.on_stale"),
        ({"policy": {"max_dispatches": 0}}, "policy.max_dispatches"),
    ]:
        with pytest.raises(ConfigurationError, match=key):
            policy_from_mapping(data)


# -- a failed run lets go of its issues ------------------------------------------------


def mutations(h: Harness) -> int:
    return sum(1 for r in h.github.requests if "mutation" in str(r.body))


def test_a_failed_run_puts_its_unshipped_issues_back_to_ready(h: Harness) -> None:
    run = executing(h, issues=3)
    first, second, third = (t.issue_number for t in run.tasks)
    h.github.close_issue(REPO, third)  # a person closes one: its task is skipped
    deliver(h, "issues", payloads.issues(REPO, "closed", third, ["in-progress"]))
    h.orchestrator._fail_task(run.run_id, first, "workflow dispatch failed")
    h.orchestrator._fail_task(run.run_id, second, "workflow dispatch failed")
    assert h.run(run.run_id).state is RunState.FAILED  # nothing left to ship
    before = mutations(h)

    h.drain()
    h.orchestrator.run_release_job({"run_id": run.run_id})  # a second copy does nothing
    h.orchestrator.reconcile()
    h.drain()

    for number in (first, second):
        assert {"ready"} <= labels(h, number) and "in-progress" not in labels(h, number)
    assert "ready" not in labels(h, third), "a person's close stands"
    assert mutations(h) - before == 1  # one relabel of both, once
    done = h.run(run.run_id)
    assert done.reason is not None and f"Back to `ready`: #{first}, #{second}." in done.reason
    assert [m["content"] for m in h.discord.messages() if "failed:" in str(m.get("content"))]
    assert h.orchestrator.store.active_run(REPO) is None


def test_a_lost_release_job_is_carried_on_by_the_reconcile(h: Harness) -> None:
    run = executing(h)
    number = run.tasks[0].issue_number
    failed_run = replace(
        run, state=RunState.FAILED, tasks=(replace(run.tasks[0], state=TaskState.FAILED),)
    )
    h.orchestrator.store.save_run(failed_run)  # saved, but its job never enqueued
    h.orchestrator.reconcile()
    h.drain()
    assert "in-progress" in labels(h, number), "not before STALL_AFTER"
    h.clock.t += STALL_AFTER
    h.orchestrator.reconcile()
    h.drain()
    assert "ready" in labels(h, number) and "in-progress" not in labels(h, number)


def test_a_failed_run_leaves_alone_an_issue_a_newer_run_has_taken(h: Harness) -> None:
    old = executing(h)
    number = old.tasks[0].issue_number
    store = h.orchestrator.store
    store.save_run(  # failed before its release job ran
        replace(old, state=RunState.FAILED, tasks=(replace(old.tasks[0], state=TaskState.FAILED),))
    )
    h.github.set_labels(REPO, number, ["ready"])  # a person put it back, and it was planned
    newer = planned(h)
    assert number in [t.issue_number for t in h.run(newer).tasks]
    h.orchestrator.approve(newer, ADA)
    h.drain()  # the newer run's start relabels it in-progress (the old job ran meanwhile)
    h.orchestrator.run_release_job({"run_id": old.run_id})

    assert "in-progress" in labels(h, number) and "ready" not in labels(h, number)
    assert "not-released" in h.run(old.run_id).tasks[0].steps_done


class DeliversDuringRelabel:
    """The real client, except that while the first relabel request is in flight the
    next merged webhook is handled (another worker saving the run meanwhile)."""

    def __init__(self, client: Any, meanwhile: Callable[[], None]) -> None:
        self._client = client
        self._meanwhile: Callable[[], None] | None = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_issues(self, *args: Any, **kwargs: Any) -> Any:
        result = self._client.update_issues(*args, **kwargs)
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return result


def test_a_queue_merge_saved_while_the_ship_job_relabels_is_shipped_too(h: Harness) -> None:
    """Two PRs leave the merge queue merged; the second's webhook is saved while the ship
    job of the first is closing its issue. The run ends shipped only once both issues
    are relabelled ``shipped`` (the race a fresh clone once showed end to end)."""
    h.github.require_merge_queue(REPO)
    run = green(h, executing(h, issues=2))
    h.orchestrator.ship(run.run_id, ADA)
    h.drain()
    assert all(Step.QUEUED in t.steps_done for t in h.run(run.run_id).tasks)
    h.github.land_merge_queue(REPO)
    first, second = h.run(run.run_id).tasks

    def merged(task: Any) -> Callable[[], None]:
        number = int(task.pr_number or 0)
        payload = payloads.pull_request(REPO, "closed", number, str(task.head_sha), merged=True)
        return lambda: deliver(h, "pull_request", payload)

    real = h.client["github"]
    h.client["github"] = DeliversDuringRelabel(real, merged(second))
    merged(first)()  # saves the first MERGED and queues the ship job that closes it
    h.clock.t += 1
    h.drain()
    h.client["github"] = real

    shipped = h.run(run.run_id)
    assert shipped.state is RunState.SHIPPED
    for task in shipped.tasks:
        assert Step.SHIPPED in task.steps_done
        assert "shipped" in labels(h, task.issue_number)
        assert "in-progress" not in labels(h, task.issue_number)
