"""Webhook payloads (real examples, re-aimed at a run) -> domain events -> task changes.

``github/`` reads each payload into a domain event (and its queued essentials into the
same one); the core's rules turn the event into task changes, table-driven.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from helpers import check_suite_event, issue_event, pr_event
from valine.core.checks import Check, CheckKind, CheckPicture
from valine.core.events import CheckSuiteCompleted, CommitStatusChanged, GitHubEvent
from valine.core.models import Run, Task
from valine.core.policy import Labels
from valine.core.states import RunState, TaskState
from valine.core.tracking import (
    apply_changes,
    changes_for,
    check_changes,
    check_targets,
    claimed_issue,
    dequeued,
    left_queue,
    settle,
)
from valine.github.events import essentials, event_of

REPO = "octo/widgets"
RUN_ID = "r20261125-abc123"
SHA, NEW_SHA = "1" * 40, "2" * 40
T, R = TaskState, RunState


def run_with(*tasks: Task, state: RunState = R.EXECUTING) -> Run:
    return Run(RUN_ID, REPO, 0.0, state=state, tasks=tasks, version=1)


def news(event: str, payload: dict[str, Any]) -> GitHubEvent | None:
    """The domain event of a delivery; what the endpoint stores (the essentials) is the same."""
    seen = event_of(event, payload)
    assert event_of(event, essentials(event, payload)) == seen
    return seen


def step(run: Run, event: str, payload: dict[str, Any]) -> Run:
    seen = news(event, payload)
    changes = [] if seen is None else changes_for(seen, run, Labels())
    return settle(apply_changes(run, changes, 1.0), 1.0, fail_run_on_task_failure=False)


def targets(event: str, payload: dict[str, Any], run: Run) -> tuple[int, ...]:
    """The PRs a check delivery has re-read (none for a delivery that is no check news)."""
    seen = news(event, payload)
    if not isinstance(seen, CheckSuiteCompleted | CommitStatusChanged):
        return ()
    return check_targets(seen, run)


@pytest.mark.parametrize(
    ("body", "ref", "expected"),
    [
        ("Fixes #12", "x", 12),
        ("This closes octo/widgets#12 for good", "x", 12),
        ("resolved: #13", "x", 13),
        ("Fixes other/repo#12", "x", None),  # another repository's issue
        ("Fixes #99", "x", None),  # not a task of this run
        ("", f"valine/{RUN_ID}/13", 13),
        ("", "valine/r-other/13", None),
        (f"Part of {RUN_ID}, see #13", "x", 13),
        ("see #13", "x", None),  # a mention alone is not a link
    ],
)
def test_pr_linking(body: str, ref: str, expected: int | None) -> None:
    run = run_with(Task(12, "a"), Task(13, "b"))
    assert claimed_issue(body, ref, run) == expected


def picture(number: int, sha: str, *checks: tuple[str, str, str | None]) -> CheckPicture:
    """A picture of PR ``number`` at ``sha``: ``(name, status, conclusion)`` check runs."""
    return CheckPicture(
        number,
        sha,
        tuple(Check(n, CheckKind.CHECK_RUN, st, c, f"https://ci/{n}") for n, st, c in checks),
    )


def on_checks(
    run: Run, event: str, payload: dict[str, Any], pictures: dict[int, CheckPicture]
) -> Run:
    """A check event: the PRs it names are re-read (``pictures``) and judged."""
    seen = news(event, payload)
    assert seen is not None
    assert changes_for(seen, run, Labels()) == []  # nothing from the event itself
    read = [pictures[n] for n in targets(event, payload, run) if n in pictures]
    return settle(apply_changes(run, check_changes(run, read), 1.0), 1.0, False)


def test_happy_path_to_ready_to_ship(webhook_examples: dict[str, Any]) -> None:
    run = run_with(Task(12, "a", T.DISPATCHED), Task(13, "b", T.SKIPPED))
    run = step(
        run,
        "pull_request",
        pr_event(webhook_examples, "opened", repo=REPO, number=40, body="Fixes #12", head_sha=SHA),
    )
    assert (run.task(12).state, run.task(12).pr_number, run.task(12).head_sha) == (
        T.PR_OPEN,
        40,
        SHA,
    )
    done = check_suite_event(
        webhook_examples, "completed", repo=REPO, head_sha=SHA, conclusion="success", pulls=[40]
    )
    # One suite done, another still running on the same head: pending, named.
    half = picture(40, SHA, ("test", "completed", "success"), ("e2e", "in_progress", None))
    run = on_checks(run, "check_suite", done, {40: half})
    assert (run.task(12).state, run.task(12).reason, run.state) == (
        T.CHECKS_PENDING,
        "waiting for check run `e2e` (in_progress)",
        R.EXECUTING,
    )
    green = picture(40, SHA, ("test", "completed", "success"), ("e2e", "completed", "skipped"))
    run = on_checks(run, "check_suite", done, {40: green})
    assert (run.task(12).state, run.task(12).checks_sha, run.task(12).reason) == (
        T.CHECKS_PASSED,
        SHA,
        None,
    )
    assert run.state is R.READY_TO_SHIP


def test_requested_suites_are_not_read(webhook_examples: dict[str, Any]) -> None:
    run = run_with(Task(12, "a", T.PR_OPEN, pr_number=40, head_sha=SHA))
    requested = check_suite_event(
        webhook_examples, "requested", repo=REPO, head_sha=SHA, conclusion=None, pulls=[40]
    )
    assert targets("check_suite", requested, run) == ()


def test_a_status_event_reads_the_prs_whose_head_it_is(webhook_examples: dict[str, Any]) -> None:
    run = run_with(
        Task(12, "a", T.CHECKS_PASSED, pr_number=40, head_sha=SHA, checks_sha=SHA),
        Task(13, "b", T.CHECKS_PENDING, pr_number=41, head_sha=NEW_SHA),
    )
    status = {**webhook_examples["status"][0], "sha": SHA}
    status["repository"] = {**status["repository"], "full_name": REPO}
    assert targets("status", status, run) == (40,)
    red = CheckPicture(
        40, SHA, (Check("ci/jenkins", CheckKind.STATUS, "failure", None, "https://j/1"),)
    )
    run = on_checks(run, "status", status, {40: red})
    assert (run.task(12).state, run.task(12).reason) == (
        T.CHECKS_FAILED,
        "status `ci/jenkins` failure: https://j/1",
    )


def test_red_checks_then_a_fixing_push(webhook_examples: dict[str, Any]) -> None:
    run = run_with(Task(12, "a", T.CHECKS_PENDING, pr_number=40, head_sha=SHA))
    red = check_suite_event(
        webhook_examples, "completed", repo=REPO, head_sha=SHA, conclusion="failure", pulls=[40]
    )
    failing = picture(40, SHA, ("lint", "completed", "failure"), ("test", "completed", "success"))
    run = on_checks(run, "check_suite", red, {40: failing})
    assert (run.task(12).state, run.task(12).reason) == (
        T.CHECKS_FAILED,
        "check run `lint` failure: https://ci/lint",
    )
    run = step(
        run,
        "pull_request",
        pr_event(webhook_examples, "synchronize", repo=REPO, number=40, head_sha=NEW_SHA),
    )
    assert (run.task(12).state, run.task(12).head_sha) == (T.CHECKS_PENDING, NEW_SHA)
    # A late suite of the old head names a commit no task is on: nothing is read.
    assert targets("check_suite", red, run) == ()
    fixed = check_suite_event(
        webhook_examples, "completed", repo=REPO, head_sha=NEW_SHA, conclusion="success", pulls=[40]
    )
    run = on_checks(
        run, "check_suite", fixed, {40: picture(40, NEW_SHA, ("lint", "completed", "success"))}
    )
    assert run.task(12).state is T.CHECKS_PASSED
    assert run.state is R.READY_TO_SHIP


def test_a_picture_of_a_newer_head_moves_the_task_to_it() -> None:
    run = run_with(Task(12, "a", T.CHECKS_PASSED, pr_number=40, head_sha=SHA, checks_sha=SHA))
    changes = check_changes(run, [picture(40, NEW_SHA, ("ci", "queued", None))])
    moved = apply_changes(run, changes, 1.0).task(12)
    assert (moved.state, moved.head_sha, moved.checks_sha) == (T.CHECKS_PENDING, NEW_SHA, None)


def test_push_after_ready_takes_the_run_back_to_executing(webhook_examples: dict[str, Any]) -> None:
    run = run_with(
        Task(12, "a", T.CHECKS_PASSED, pr_number=40, head_sha=SHA, checks_sha=SHA),
        state=R.READY_TO_SHIP,
    )
    run = step(
        run,
        "pull_request",
        pr_event(webhook_examples, "synchronize", repo=REPO, number=40, head_sha=NEW_SHA),
    )
    assert (run.state, run.task(12).state, run.task(12).checks_sha) == (
        R.EXECUTING,
        T.CHECKS_PENDING,
        None,
    )


def test_pr_closed_without_merge_waits_for_another(webhook_examples: dict[str, Any]) -> None:
    run = run_with(Task(12, "a", T.CHECKS_FAILED, pr_number=40, head_sha=SHA))
    run = step(run, "pull_request", pr_event(webhook_examples, "closed", repo=REPO, number=40))
    task = run.task(12)
    assert (task.state, task.pr_number) == (T.DISPATCHED, None)
    assert "closed without merging" in str(task.reason)
    run = step(
        run,
        "pull_request",
        pr_event(
            webhook_examples, "opened", repo=REPO, number=41, body="Fixes #12", head_sha=NEW_SHA
        ),
    )
    assert (run.task(12).state, run.task(12).pr_number) == (T.PR_OPEN, 41)


@pytest.mark.parametrize(("action", "label"), [("closed", None), ("unlabeled", "in-progress")])
def test_a_person_closing_or_unlabelling_skips_the_task(
    webhook_examples: dict[str, Any], action: str, label: str | None
) -> None:
    run = run_with(
        Task(12, "a", T.DISPATCHED),
        Task(13, "b", T.CHECKS_PASSED, pr_number=41, head_sha=SHA, checks_sha=SHA),
    )
    run = step(
        run,
        "issues",
        issue_event(
            webhook_examples,
            action,
            repo=REPO,
            number=12,
            labels=["ready"],
            label=label,
            sender="grace",
        ),
    )
    assert run.task(12).state is T.SKIPPED
    assert "grace" in str(run.task(12).reason)
    assert run.task(12).labels == ("ready",)
    assert run.state is R.READY_TO_SHIP  # the other task is green


def test_our_own_ship_closing_issues_does_not_skip(webhook_examples: dict[str, Any]) -> None:
    run = run_with(Task(12, "a", T.CHECKS_PASSED, pr_number=40), state=R.SHIPPING)
    run = step(
        run,
        "issues",
        issue_event(webhook_examples, "closed", repo=REPO, number=12, labels=["shipped"]),
    )
    assert run.task(12).state is T.CHECKS_PASSED


def test_unrelated_deliveries_change_nothing(webhook_examples: dict[str, Any]) -> None:
    run = run_with(Task(12, "a", T.DISPATCHED))
    for event, payload in [
        (
            "pull_request",
            pr_event(webhook_examples, "opened", repo=REPO, number=50, body="unrelated"),
        ),
        ("pull_request", pr_event(webhook_examples, "synchronize", repo=REPO, number=50)),
        (
            "check_suite",
            check_suite_event(
                webhook_examples,
                "completed",
                repo=REPO,
                head_sha=SHA,
                conclusion="success",
                pulls=[50],
            ),
        ),
        ("issues", issue_event(webhook_examples, "closed", repo=REPO, number=77, labels=[])),
        ("issue_comment", webhook_examples["issue_comment"][0]),
    ]:
        assert step(run, event, payload) == run


def test_duplicate_and_out_of_order_deliveries_are_harmless(
    webhook_examples: dict[str, Any],
) -> None:
    run = run_with(Task(12, "a", T.DISPATCHED))
    opened = pr_event(
        webhook_examples, "opened", repo=REPO, number=40, body="Fixes #12", head_sha=SHA
    )
    merged = pr_event(webhook_examples, "closed", repo=REPO, number=40, merged=True)
    run = step(run, "pull_request", opened)
    once = step(run, "pull_request", merged)
    assert once.task(12).state is T.MERGED
    assert step(once, "pull_request", merged) == once
    assert step(once, "pull_request", opened) == once  # late "opened" after merge


def test_failed_task_fails_the_run_only_when_the_policy_says_so() -> None:
    run = run_with(Task(12, "a", T.FAILED), Task(13, "b", T.CHECKS_PASSED))
    # "continue": the run ships what it can; "fail_run": the run fails with the task.
    assert settle(run, 1.0, fail_run_on_task_failure=False).state is R.READY_TO_SHIP
    assert settle(run, 1.0, fail_run_on_task_failure=True).state is R.FAILED


def test_a_run_whose_every_task_left_fails_instead_of_waiting_forever() -> None:
    run = run_with(Task(12, "a", T.SKIPPED), Task(13, "b", T.FAILED))
    settled = settle(run, 1.0, fail_run_on_task_failure=False)
    assert settled.state is R.FAILED
    assert "nothing left to ship" in str(settled.reason)


def test_a_pr_merged_by_a_person_counts_as_ready(webhook_examples: dict[str, Any]) -> None:
    run = run_with(
        Task(12, "a", T.CHECKS_PENDING, pr_number=40, head_sha=SHA),
        Task(13, "b", T.CHECKS_PASSED, pr_number=41, head_sha=SHA, checks_sha=SHA),
    )
    run = step(
        run, "pull_request", pr_event(webhook_examples, "closed", repo=REPO, number=40, merged=True)
    )
    assert (run.task(12).state, run.state) == (T.MERGED, R.READY_TO_SHIP)


def test_essentials_of_every_real_example_are_small_and_keep_the_shape(
    webhook_examples: dict[str, Any],
) -> None:
    import json

    for event in ("pull_request", "check_suite", "issues", "issue_comment", "status"):
        for example in webhook_examples[event]:
            slim = essentials(event, example)
            assert "malformed" not in slim, (event, slim)
            assert len(json.dumps(slim)) < max(2048, len(json.dumps(example)) // 4)
            assert slim["repository"]["full_name"] == example["repository"]["full_name"]
            assert slim.get("action") == example.get("action")


def test_checks_of_a_push_that_beat_its_synchronize_are_read_when_the_push_lands() -> None:
    """A new head's check result processed before its ``synchronize`` is not lost.

    Found by ``make demo`` (1 run in 3): the task waited for the 5-minute reconcile.
    """
    from dataclasses import replace

    from valine.core.tracking import claimed_late, remember_unclaimed

    green = Task(7, "t", TaskState.CHECKS_FAILED, pr_number=5, head_sha="old", checks_sha="old")
    before = run_with(green)
    remembered = remember_unclaimed(before, "new")
    assert remembered is not None and "new" in remembered.unclaimed_checks
    pushed = replace(
        remembered,
        tasks=(replace(green, state=TaskState.CHECKS_PENDING, head_sha="new", checks_sha=None),),
    )
    assert claimed_late(pushed, remembered) == (5,)
    assert claimed_late(remembered, remembered) == ()


# -- merge-queue ejections seen by a read (the reconcile's mergeQueueEntry) -------------


def queued_task(at: float = 100.0) -> Task:
    return Task(
        12,
        "a",
        state=T.CHECKS_PASSED,
        pr_number=7,
        head_sha=SHA,
        checks_sha=SHA,
        steps_done=("labelled", "queued", f"queued-at:{at}"),
    )


@pytest.mark.parametrize(
    ("in_queue", "merged", "ejected"),
    [
        (False, False, True),  # gone from the queue, not merged: ejected
        (True, False, False),  # still waiting in the queue
        (False, True, False),  # the queue merged it (its closed webhook does the rest)
        (None, False, False),  # the read did not ask: says nothing about the queue
    ],
)
def test_a_read_sees_a_pull_request_leave_the_merge_queue(
    in_queue: bool | None, merged: bool, ejected: bool
) -> None:
    run = run_with(queued_task(), state=R.SHIPPING)
    checks = picture(7, SHA, ("ci", "completed", "success")).checks
    read = CheckPicture(7, SHA, checks, in_merge_queue=in_queue, merged=merged)

    changes = left_queue(run, [read], before=run)

    after = apply_changes(run, changes, 1.0).tasks[0]
    assert ("dequeued" in after.steps_done) is ejected
    assert ("queued" in after.steps_done) is not ejected
    if ejected:
        # exactly what the dequeued webhook does: the same change, another reason
        webhook = dequeued(run.tasks[0], "MERGE_CONFLICT")
        assert [c.fields["steps_done"] for c in changes] == [
            c.fields["steps_done"] for c in webhook
        ]
        assert "PR #7 left the merge queue: it is no longer in the queue" in str(after.reason)


def test_a_pull_request_queued_again_after_the_read_is_not_ejected() -> None:
    """Retry ship re-queued the PR between the read and the save: the read is older."""
    before = run_with(replace(queued_task(), steps_done=("labelled", "dequeued")), state=R.SHIPPING)
    now = run_with(queued_task(at=200.0), state=R.SHIPPING)
    gone = CheckPicture(7, SHA, (), True, in_merge_queue=False)

    assert left_queue(now, [gone], before=before) == []
    assert left_queue(now, [gone], before=now) != []
    older = run_with(queued_task(at=100.0), state=R.SHIPPING)
    assert left_queue(now, [gone], before=older) == []  # queued again since: a new entry


# -- the reconcile's reads become the same events as the webhooks -------------------------


@pytest.mark.parametrize(
    ("action", "merged", "known_head"),
    [
        ("closed", True, SHA),  # merged while the webhook was lost
        ("closed", False, SHA),  # closed unmerged
        ("synchronize", False, SHA),  # pushed to: the read's head is not the known one
    ],
)
def test_a_read_pull_request_is_the_event_its_lost_webhook_would_have_been(
    webhook_examples: dict[str, Any], action: str, merged: bool, known_head: str
) -> None:
    from valine.core.events import from_pull_read
    from valine.github.mapping import pull

    payload = pr_event(
        webhook_examples, action, repo=REPO, number=40, head_sha=NEW_SHA, merged=merged
    )
    # The webhook's pull_request object is the REST pull request the reconcile reads.
    read = pull(payload["pull_request"])
    assert from_pull_read(read, known_head) == news("pull_request", payload) is not None
    run = run_with(Task(12, "a", T.CHECKS_PENDING, pr_number=40, head_sha=SHA))
    assert step(run, "pull_request", payload) != run  # news that moves the task


def test_a_read_of_an_unchanged_open_pull_request_is_no_news(
    webhook_examples: dict[str, Any],
) -> None:
    from valine.core.events import from_pull_read
    from valine.github.mapping import pull

    payload = pr_event(webhook_examples, "opened", repo=REPO, number=40, head_sha=SHA)
    assert from_pull_read(pull(payload["pull_request"]), SHA) is None
    assert from_pull_read(pull(payload["pull_request"]), None) is None  # no head known yet
