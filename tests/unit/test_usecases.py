"""The use cases driven directly, over real adapters and the stand-ins (no HTTP server)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import examples
from valine.core.authz import GUARDED_ACTIONS, Grant, Permissions
from valine.core.errors import DiscordUnavailable, GitHubUnavailable
from valine.core.models import Run
from valine.core.policy import DiscordScope, Executor, Policy
from valine.core.replies import Deferred
from valine.core.states import RunState, StampedStep, TaskState
from valine.discord.client import DiscordClient
from valine.github.client import GitHubClient, TokenAuth
from valine.queue.worker import WorkerPool
from valine.runtime.wiring import jobs_of
from valine.testing.clock import ManualClock
from valine.testing.discord_standin import DiscordStandIn
from valine.testing.faults import Match, server_error
from valine.testing.github import GitHubStandIn
from valine.testing.memory import MemoryJobQueue, MemoryRunStore
from valine.usecases import CLAIM_TIMEOUT, GITHUB_EVENT, Actor, DispatchInProgress, Orchestrator

REPO = "octo/widgets"


@dataclass
class Harness:
    orchestrator: Orchestrator
    github: GitHubStandIn
    discord: DiscordStandIn
    client: Any
    clock: ManualClock
    pool: WorkerPool

    def drain(self, limit: int = 200) -> None:
        """Run every due job now (advancing the fake clock past notify delays)."""
        for _ in range(limit):
            if not self.pool.run_one():
                self.clock.t += 5
                if not self.pool.run_one():
                    return

    def run(self, run_id: str) -> Run:
        return self.orchestrator.store.get_run(run_id)

    def deliver(self, job: dict[str, Any]) -> None:
        """Handle one queued webhook delivery as the runtime does (read by github/)."""
        jobs_of(self.orchestrator)[GITHUB_EVENT](job)


class FlakyDispatch:
    """The real client, except that the next dispatch raises ``error``."""

    def __init__(self, client: GitHubClient, error: Exception) -> None:
        self._client = client
        self.error: Exception | None = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def dispatch_workflow(self, *args: Any) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self._client.dispatch_workflow(*args)


@pytest.fixture
def harness() -> Iterator[Harness]:
    """The use cases on the testing kit's store and queue, with GitHub and Discord stand-ins."""
    github = GitHubStandIn().start()
    discord = DiscordStandIn().start()
    discord.interaction_received("tok", "3")  # the plan interactions come from channel 3
    github.add_repo(REPO)
    clock = ManualClock()
    ids = (f"run{n:03d}" for n in range(1000))
    queue = MemoryJobQueue(clock=clock, base_backoff=0.0)
    client = GitHubClient(TokenAuth(github.token), api_url=github.url, sleep=lambda _: None)
    holder: dict[str, Any] = {"github": client}
    orchestrator = Orchestrator(
        repo=REPO,
        policy=Policy(
            executor=Executor(kind="workflow", workflow="agent.yml"),
            permissions=Permissions({a: Grant(users=frozenset({"42"})) for a in GUARDED_ACTIONS}),
            discord=DiscordScope(guild_ids=("4",)),
        ),
        store=MemoryRunStore(),
        queue=queue,
        github=lambda: holder["github"],
        discord=lambda: DiscordClient(discord.url, discord.application_id, discord.bot_token),
        clock=clock,
        entropy=lambda: next(ids),
        notify_window=0,
    )
    pool = WorkerPool(queue, jobs_of(orchestrator), on_dead_letter=orchestrator.on_dead_letter)
    h = Harness(orchestrator, github, discord, holder, clock, pool)
    try:
        yield h
    finally:
        github.stop()
        discord.stop()


INTERACTION = {
    "id": "1",
    "application_id": "1100000000000000000",
    "token": "tok",
    "channel_id": "3",
    "user_id": "42",
    "user_name": "ada",
}


def planned(h: Harness, issues: int = 1) -> str:
    for i in range(issues):
        h.github.add_issue(REPO, f"Task {i}", ["ready"])
    interaction = {**INTERACTION, "id": str(len(h.github.requests) + h.clock.t)}
    assert h.orchestrator.request_plan(interaction, Actor("42", "ada")) == Deferred()
    h.drain()
    run = h.orchestrator.store.active_run(REPO)
    assert run is not None
    return run.run_id


def ready_to_ship(h: Harness) -> str:
    """A one-task run, approved, its PR green at its head and the run ready to ship."""
    run_id = planned(h)
    h.orchestrator.approve(run_id, Actor("42", "ada"))
    h.drain()
    store = h.orchestrator.store
    run = store.get_run(run_id)
    number = run.tasks[0].issue_number
    pr, sha = h.github.open_pull(REPO, "fix", f"Fixes #{number}")
    h.github.report_checks(REPO, sha, "success")
    green = replace(
        run.tasks[0], state=TaskState.CHECKS_PASSED, pr_number=pr, head_sha=sha, checks_sha=sha
    )
    store.save_run(replace(run, state=RunState.READY_TO_SHIP, tasks=(green,)))
    return run_id


def test_a_dispatch_job_that_runs_twice_dispatches_once(harness: Harness) -> None:
    run_id = planned(harness)
    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()
    number = harness.run(run_id).tasks[0].issue_number
    harness.orchestrator.run_dispatch_job({"run_id": run_id, "issue": number})
    harness.orchestrator.run_dispatch_job({"run_id": run_id, "issue": number})
    assert len(harness.github.dispatches(REPO)) == 1
    assert len(harness.github.comments(REPO, number)) == 1


def test_an_unconfirmed_dispatch_is_not_sent_again(harness: Harness) -> None:
    run_id = planned(harness)
    harness.github.fail_next(1, status=502)  # the first GraphQL request after approval
    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()  # the client retries it; the relabelling and the dispatch go through
    assert len(harness.github.dispatches(REPO)) == 1

    run_id2 = _fresh_run(harness)
    harness.client["github"] = FlakyDispatch(
        harness.client["github"], GitHubUnavailable("POST dispatches: 502", request_sent=True)
    )
    harness.orchestrator.approve(run_id2, Actor("42", "ada"))
    harness.drain()
    unconfirmed = [t for t in harness.run(run_id2).tasks if t.reason]
    assert len(unconfirmed) == 1
    assert unconfirmed[0].state is TaskState.DISPATCHED
    assert "did not confirm the workflow dispatch" in str(unconfirmed[0].reason)
    sent = [
        d.inputs["issue_number"]
        for d in harness.github.dispatches(REPO)
        if d.inputs["run_id"] == run_id2
    ]
    assert str(unconfirmed[0].issue_number) not in sent  # not sent again
    assert len(sent) == len(harness.run(run_id2).tasks) - 1


def test_a_dispatch_that_never_left_is_retried(harness: Harness) -> None:
    run_id = planned(harness)
    harness.client["github"] = FlakyDispatch(
        harness.client["github"], GitHubUnavailable("connect refused", request_sent=False)
    )
    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()
    task = harness.run(run_id).tasks[0]
    assert task.state is TaskState.DISPATCHED
    assert task.reason is None
    assert len(harness.github.dispatches(REPO)) == 1


def test_a_fresh_claim_defers_and_a_stale_one_is_reported(harness: Harness) -> None:
    run_id = planned(harness)
    store = harness.orchestrator.store
    run = store.get_run(run_id)
    number = run.tasks[0].issue_number
    claimed = replace(
        run.tasks[0],
        steps_done=("labelled", "commented", StampedStep.DISPATCH_CLAIM.at(harness.clock.t)),
    )
    run = store.save_run(replace(run, state=RunState.EXECUTING, tasks=(claimed,)))
    with pytest.raises(DispatchInProgress):
        harness.orchestrator.run_dispatch_job({"run_id": run_id, "issue": number})
    harness.clock.t += CLAIM_TIMEOUT + 1
    harness.orchestrator.run_dispatch_job({"run_id": run_id, "issue": number})
    task = harness.run(run_id).tasks[0]
    assert task.state is TaskState.DISPATCHED
    assert "earlier attempt stopped" in str(task.reason)
    assert harness.github.dispatches(REPO) == []


class ProcessKilled(BaseException):
    """Stands for SIGKILL: not an Exception, so the worker neither retries nor acks."""


class DiesAfterRelabelling:
    """The real client, except that the process dies right after GitHub applied the
    first relabelling (its answer never read, nothing saved after it)."""

    def __init__(self, client: GitHubClient) -> None:
        self._client = client
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_issues(self, *args: Any, **kwargs: Any) -> Any:
        result = self._client.update_issues(*args, **kwargs)
        if self.armed:
            self.armed = False
            raise ProcessKilled
        return result


def test_a_start_job_killed_mid_relabelling_waits_for_its_claim_and_starts(
    harness: Harness,
) -> None:
    """Found by the proving ground (SIGKILL of valine serve right after the relabelling
    reached GitHub): the retried start job met its dead attempt's fresh claim, spent its
    five attempts in seconds and dead-lettered, failing the run with its issues left
    in-progress. A claim is a wait: the job comes back when it expires, no attempt spent."""
    run_id = planned(harness, issues=3)
    clock = harness.clock
    queue = harness.orchestrator.queue
    pool = WorkerPool(
        queue,
        jobs_of(harness.orchestrator),
        on_dead_letter=harness.orchestrator.on_dead_letter,
        visibility_timeout=60.0,
        clock=clock.now,
    )
    harness.client["github"] = DiesAfterRelabelling(harness.client["github"])
    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    with pytest.raises(ProcessKilled):
        while pool.run_one():
            pass
    issues = [t.issue_number for t in harness.run(run_id).tasks]
    assert all("in-progress" in harness.github.issue(REPO, n).labels for n in issues)
    for _ in range(10):  # more leases than the queue's attempts, all before the claim expires
        clock.t += 61 if _ == 0 else 5  # the dead attempt's lease runs out first
        while pool.run_one():
            pass
        assert harness.run(run_id).state is RunState.APPROVED
    assert queue.dead_letters() == []
    clock.t += CLAIM_TIMEOUT
    for _ in range(5):
        while pool.run_one():
            pass
        clock.t += 5
    run = harness.run(run_id)
    assert run.state is RunState.EXECUTING
    assert [t.state for t in run.tasks] == [TaskState.DISPATCHED] * 3
    assert sorted(int(d.inputs["issue_number"]) for d in harness.github.dispatches(REPO)) == issues
    for n in issues:  # read back, not sent again: one comment, one change per label
        assert len(harness.github.comments(REPO, n)) == 1
        events = harness.github.issue(REPO, n).label_events
        assert len(events) == len(set(events))
    assert queue.dead_letters() == []


def test_a_dispatch_job_that_finds_its_task_past_pending_sends_nothing(
    harness: Harness,
) -> None:
    """A dispatch job that waited out a claim while the task's pull request was linked
    does not dispatch (nor report the dispatch unconfirmed): the task is past it."""
    run_id = planned(harness)
    store = harness.orchestrator.store
    run = store.get_run(run_id)
    number = run.tasks[0].issue_number
    claim = StampedStep.DISPATCH_CLAIM.at(harness.clock.t - CLAIM_TIMEOUT - 1)
    linked = replace(
        run.tasks[0],
        state=TaskState.PR_OPEN,
        pr_number=99,
        steps_done=("labelled", "commented", claim),
    )
    store.save_run(replace(run, state=RunState.EXECUTING, tasks=(linked,)))
    harness.orchestrator.run_dispatch_job({"run_id": run_id, "issue": number})
    task = harness.run(run_id).tasks[0]
    assert task.state is TaskState.PR_OPEN
    assert task.reason is None
    assert harness.github.dispatches(REPO) == []


def test_plan_against_a_missing_repository_says_so(harness: Harness) -> None:
    harness.orchestrator.repo = "octo/missing"
    harness.orchestrator.request_plan(INTERACTION, Actor("42", "ada"))
    harness.drain()
    original = harness.discord.original("tok")
    assert original is not None
    assert "Could not read the issues of `octo/missing`" in original["content"]


def test_plan_dead_letter_tells_the_user(harness: Harness) -> None:
    harness.orchestrator.on_dead_letter("plan", {"interaction": INTERACTION}, "GitHub down")
    original = harness.discord.original("tok")
    assert original is not None
    assert "Planning failed" in original["content"]


def test_ship_job_run_twice_merges_once(harness: Harness) -> None:
    run_id = ready_to_ship(harness)
    harness.orchestrator.ship(run_id, Actor("42", "ada"))
    harness.orchestrator.run_ship_job({"run_id": run_id})
    harness.orchestrator.run_ship_job({"run_id": run_id})
    merges = [r for r in harness.github.requests if r.path.endswith("/merge")]
    assert len(merges) == 1
    assert harness.run(run_id).state is RunState.SHIPPED


def _fresh_run(h: Harness) -> str:
    run = h.orchestrator.store.active_run(REPO)
    assert run is not None
    h.orchestrator.cancel(run.run_id, Actor("42", "ada"))
    h.drain()
    return planned(h)


def test_many_changes_in_one_window_edit_the_message_once(harness: Harness) -> None:
    orchestrator = harness.orchestrator
    orchestrator.notify_window = 3.0
    run_id = planned(harness, issues=2)
    harness.discord.clear_requests()
    run = harness.run(run_id)
    for _ in range(10):
        orchestrator.notify(run)
    assert orchestrator.queue.depth() == 1  # coalesced into one edit
    harness.drain()
    edits = [r for r in harness.discord.requests if r.method == "PATCH"]
    assert len(edits) == 1


def test_plan_while_github_is_down_says_it_is_retrying(harness: Harness) -> None:
    harness.github.add_issue(REPO, "Task", ["ready"])
    harness.github.fail_next(20, status=503)
    harness.orchestrator.request_plan(INTERACTION, Actor("42", "ada"))
    harness.pool.run_one()
    original = harness.discord.original("tok")
    assert original is not None
    assert "GitHub is not answering" in original["content"]


def test_a_delivery_job_that_runs_again_later_changes_nothing(harness: Harness) -> None:
    from valine.testing import payloads

    run_id = planned(harness)
    store = harness.orchestrator.store
    run = store.get_run(run_id)
    pr, old = harness.github.open_pull(REPO, "fix", "")
    task = replace(
        run.tasks[0], state=TaskState.CHECKS_PASSED, pr_number=pr, head_sha=old, checks_sha=old
    )
    store.save_run(replace(run, state=RunState.EXECUTING, tasks=(task,)))
    new = harness.github.push(REPO, pr)
    harness.github.report_checks(REPO, new, "success")
    push = {
        "event": "pull_request",
        "delivery_id": "d-push",
        "payload": payloads.pull_request(REPO, "synchronize", pr, new),
    }
    green = {
        "event": "check_suite",
        "delivery_id": "d-green",
        "payload": payloads.check_suite(REPO, new, "success", pr),
    }
    harness.deliver(push)
    harness.deliver(green)
    assert harness.run(run_id).tasks[0].state is TaskState.CHECKS_PASSED
    harness.deliver(push)  # at-least-once: the push job again
    after = harness.run(run_id).tasks[0]
    assert (after.state, after.checks_sha) == (TaskState.CHECKS_PASSED, new)


def test_a_start_job_that_dies_fails_the_run_and_says_why(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = planned(harness)
    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    sentinel = "SENTINEL-arn:aws:iam::123456789012:role/x"
    harness.orchestrator.on_dead_letter("start_run", {"run_id": run_id}, sentinel)
    run = harness.run(run_id)
    assert run.state is RunState.FAILED
    # What happened, in the user's terms, and the id to find the detail in the log.
    assert "could not start the run" in str(run.reason)
    assert sentinel not in str(run.reason)
    ref = re.search(r"ref ([0-9a-f]{8})", str(run.reason))
    assert ref, run.reason
    assert any(
        ref.group(1) in r.getMessage() and sentinel in r.getMessage() for r in caplog.records
    )


def test_a_malformed_delivery_is_ignored_with_one_log_line_and_no_retry(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    from valine.testing import payloads

    run_id = planned(harness)
    before = harness.run(run_id)
    payload = payloads.pull_request(
        REPO, "opened", 7, "a" * 40, f"Fixes #{before.tasks[0].issue_number}"
    )
    payload["pull_request"]["number"] = "7"  # a string where GitHub sends an integer
    job = {"event": "pull_request", "delivery_id": "d-bad", "payload": payload}

    with caplog.at_level("WARNING"):
        harness.deliver(job)  # returns: the job is acked, not retried

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "ignored malformed pull_request delivery: pull_request.number: expected a positive integer"
    ]
    assert harness.run(run_id).version == before.version


# -- announcements: claimed before posted, exactly once ------------------------------------


def _in_state(h: Harness, run_id: str, state: RunState, **fields: Any) -> Run:
    """Put the stored run in ``state`` the way a transition would (counting the entry)."""
    run = h.orchestrator.store.get_run(run_id)
    entered = {**run.entered, state.value: run.entered.get(state.value, 0) + 1}
    return h.orchestrator.store.save_run(replace(run, state=state, entered=entered, **fields))


def _announcements(h: Harness, text: str) -> list[dict[str, Any]]:
    """The posts saying ``text``: follow-ups, channel messages and thread messages."""
    return [m for m in h.discord.messages() if text in (m.get("content") or "")]


def test_an_announcement_is_posted_once_however_often_the_notify_job_runs(
    harness: Harness,
) -> None:
    run_id = planned(harness)
    _in_state(harness, run_id, RunState.READY_TO_SHIP)
    for _ in range(5):
        harness.orchestrator.run_notify_job({"run_id": run_id})
        # a later webhook saves the run again (its version moves on)
        run = harness.run(run_id)
        harness.orchestrator.store.save_run(replace(run, reason=f"v{run.version}"))

    assert len(_announcements(harness, "Ready to ship")) == 1
    assert harness.run(run_id).announced == {"ready": "posted"}


def test_ship_failed_is_announced_once_per_failed_attempt(harness: Harness) -> None:
    run_id = planned(harness)
    _in_state(harness, run_id, RunState.SHIP_FAILED, reason="#1 has a conflict")
    for _ in range(3):
        harness.orchestrator.run_notify_job({"run_id": run_id})
        run = harness.run(run_id)
        harness.orchestrator.store.save_run(replace(run, reason="#1 has a conflict"))
    assert len(_announcements(harness, "did not ship completely")) == 1

    _in_state(harness, run_id, RunState.SHIPPING)
    _in_state(harness, run_id, RunState.SHIP_FAILED, reason="#1 still has a conflict")
    harness.orchestrator.run_notify_job({"run_id": run_id})
    harness.orchestrator.run_notify_job({"run_id": run_id})

    assert len(_announcements(harness, "did not ship completely")) == 2  # a second attempt
    assert set(harness.run(run_id).announced) == {"ship_failed:1", "ship_failed:2"}


def test_a_failed_run_is_announced(harness: Harness) -> None:
    run_id = planned(harness)
    _in_state(harness, run_id, RunState.FAILED, reason="could not start the run")
    harness.orchestrator.run_notify_job({"run_id": run_id})
    harness.orchestrator.run_notify_job({"run_id": run_id})
    assert len(_announcements(harness, "failed: could not start the run")) == 1


def test_a_channel_announcement_applied_then_502_is_posted_once(harness: Harness) -> None:
    run_id = planned(harness)
    harness.clock.t += 15 * 60  # the interaction token has expired: channel messages now
    _in_state(harness, run_id, RunState.SHIPPED, thread="none")  # a run without a thread
    harness.discord.apply_then_fail_next(502, match=Match(method="POST"))

    harness.orchestrator.run_notify_job({"run_id": run_id})
    harness.orchestrator.run_notify_job({"run_id": run_id})

    posts = [r for r in harness.discord.requests if r.method == "POST"]
    assert [r.status for r in posts] == [502, 200]
    assert posts[0].json["nonce"] == posts[1].json["nonce"]
    assert posts[0].json["enforce_nonce"] is True
    assert len(harness.discord.channel_messages("3")) == 1


def test_a_claimed_channel_announcement_is_resent_with_its_nonce_after_a_crash(
    harness: Harness,
) -> None:
    run_id = planned(harness)
    harness.clock.t += 15 * 60
    run = _in_state(harness, run_id, RunState.SHIPPED, thread="none")  # a run without a thread
    claim = "sending channel valine-crashed-nonce-0001"
    run = harness.orchestrator.store.save_run(replace(run, announced={"shipped": claim}))
    # the crashed attempt had reached Discord before it died
    with DiscordClient(
        harness.discord.url, harness.discord.application_id, harness.discord.bot_token
    ) as client:
        client.create_message(
            "3",
            {"content": "shipped", "nonce": claim.rsplit(maxsplit=1)[-1], "enforce_nonce": True},
        )

    harness.orchestrator.run_notify_job({"run_id": run_id})

    assert len(harness.discord.channel_messages("3")) == 1
    assert harness.run(run_id).announced == {"shipped": "posted"}


def test_a_followup_whose_answer_was_lost_is_not_posted_again(harness: Harness) -> None:
    run_id = planned(harness)
    _in_state(harness, run_id, RunState.READY_TO_SHIP, thread="none")  # no thread: follow-ups
    harness.discord.apply_then_fail_next(502, match=Match(method="POST"))

    with pytest.raises(DiscordUnavailable):
        harness.orchestrator.run_notify_job({"run_id": run_id})
    harness.orchestrator.run_notify_job({"run_id": run_id})

    assert len(_announcements(harness, "Ready to ship")) == 1


def test_an_announcement_refused_before_it_left_is_claimed_again(harness: Harness) -> None:
    run_id = planned(harness)
    _in_state(harness, run_id, RunState.READY_TO_SHIP)
    harness.discord.rate_limit_next(retry_after=3600)  # beyond the client's budget

    with pytest.raises(DiscordUnavailable):
        harness.orchestrator.run_notify_job({"run_id": run_id})
    assert harness.run(run_id).announced == {}
    harness.orchestrator.run_notify_job({"run_id": run_id})

    assert len(_announcements(harness, "Ready to ship")) == 1


# -- GitHub writes: never re-sent blindly, read back, per-task failures ----------------------

START_MUTATION = Match(graphql="addComment")


def _started(h: Harness, issues: int) -> tuple[str, list[int]]:
    run_id = planned(h, issues)
    numbers = [t.issue_number for t in h.run(run_id).tasks]
    return run_id, numbers


def _assert_started_once(h: Harness, run_id: str, numbers: list[int]) -> None:
    for number in numbers:
        comments = h.github.comments(REPO, number)
        assert len(comments) == 1, f"#{number} has {len(comments)} comments"
        assert f"<!-- valine:{run_id} -->" in comments[0]
        labels = h.github.issue(REPO, number).labels
        assert "in-progress" in labels and "ready" not in labels
    assert all(t.state is TaskState.DISPATCHED for t in h.run(run_id).tasks)


def test_a_mutation_applied_then_502_leaves_one_comment(harness: Harness) -> None:
    run_id, numbers = _started(harness, 3)
    harness.github.apply_then_fail_next(502, match=START_MUTATION)

    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()

    _assert_started_once(harness, run_id, numbers)
    sent = [r for r in harness.github.requests if "addComment" in str(r.body)]
    assert len(sent) == 1, "the mutation was sent again after the 502"


def test_a_mutation_whose_answer_never_came_leaves_one_comment(harness: Harness) -> None:
    run_id, numbers = _started(harness, 2)
    harness.github.apply_then_drop_next(match=START_MUTATION)

    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()

    _assert_started_once(harness, run_id, numbers)


def test_only_what_is_missing_is_sent_after_a_lost_answer(harness: Harness) -> None:
    run_id, numbers = _started(harness, 2)
    harness.github.faults.add(server_error(502, match=START_MUTATION))  # it never ran ...
    harness.github.set_labels(REPO, numbers[0], ["in-progress"])  # ... but a person relabelled

    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()

    _assert_started_once(harness, run_id, numbers)
    resent = [r for r in harness.github.requests if "addComment" in str(r.body)][-1]
    assert resent.status == 200
    variables = resent.body["variables"].values()
    label_changes = [v for v in variables if "labelableId" in v]
    assert len(label_changes) == 2  # #2's add and remove; #1 needs no label change


def test_a_second_lost_answer_retries_the_job_which_reads_back_again(harness: Harness) -> None:
    run_id, numbers = _started(harness, 2)
    harness.github.apply_then_fail_next(502, match=START_MUTATION)
    harness.github.apply_then_fail_next(502, match=Match(method="GET", path="/comments$"))

    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()

    _assert_started_once(harness, run_id, numbers)


def test_one_refused_change_fails_only_its_task(harness: Harness) -> None:
    run_id, numbers = _started(harness, 3)
    store = harness.orchestrator.store
    run = store.get_run(run_id)
    gone = replace(run.tasks[1], node_id="I_doesnotexist")  # e.g. the issue was transferred
    store.save_run(replace(run, tasks=(run.tasks[0], gone, run.tasks[2])))

    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()

    tasks = {t.issue_number: t for t in harness.run(run_id).tasks}
    assert tasks[numbers[1]].state is TaskState.FAILED
    assert "relabelling failed" in str(tasks[numbers[1]].reason)
    for number in (numbers[0], numbers[2]):
        assert tasks[number].state is TaskState.DISPATCHED
        assert len(harness.github.comments(REPO, number)) == 1


def test_a_label_a_person_created_after_the_plan_is_looked_up_and_used(
    harness: Harness,
) -> None:
    run_id, numbers = _started(harness, 1)
    made_by_hand = harness.github.add_label(REPO, "in-progress")

    harness.orchestrator.approve(run_id, Actor("42", "ada"))
    harness.drain()

    assert harness.run(run_id).github_ids["label:in-progress"] == made_by_hand
    refused = [r for r in harness.github.requests if "createLabel" in str(r.body)]
    assert len(refused) == 1 and "already been taken" in str(refused[0].response)
    _assert_started_once(harness, run_id, numbers)


# -- a property: whatever Discord does to the attempts, an announcement is never doubled ----

_DISCORD_FAULTS = ("none", "refused_502", "applied_502", "rate_limited")


def _inject(discord: DiscordStandIn, fault: str) -> None:
    if fault == "refused_502":
        discord.fail_next(1, 502)
    elif fault == "applied_502":
        discord.apply_then_fail_next(502, match=Match(method="POST"))
    elif fault == "rate_limited":
        discord.rate_limit_next(retry_after=3600)  # beyond the client's budget: not sent


@settings(max_examples=examples(25), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    faults=st.lists(st.sampled_from(_DISCORD_FAULTS), min_size=1, max_size=6),
    channel=st.booleans(),
)
def test_an_announcement_is_never_posted_twice_whatever_discord_does(
    harness: Harness, faults: list[str], channel: bool
) -> None:
    run_id = planned(harness)
    if channel:
        harness.clock.t += 15 * 60  # the token has expired: announced as a channel message
    _in_state(harness, run_id, RunState.READY_TO_SHIP)
    harness.discord.faults.clear()
    harness.discord.clear_requests()
    before = len(_announcements(harness, f"Run `{run_id}`"))
    for fault in faults:
        _inject(harness.discord, fault)
        with contextlib.suppress(DiscordUnavailable):
            harness.orchestrator.run_notify_job({"run_id": run_id})
        harness.discord.faults.clear()
    harness.orchestrator.run_notify_job({"run_id": run_id})  # a last, clean attempt
    posted = len(_announcements(harness, f"Run `{run_id}`")) - before

    assert posted <= 1
    reached = [f for f in faults if f in ("none", "applied_502")]
    first_sent = _first_sent(faults)
    if channel or first_sent == len(faults) or (reached and faults.index(reached[0]) <= first_sent):
        # a channel message converges on its nonce; a follow-up is posted if its first
        # attempt that reached Discord was the one that created it
        assert posted == 1, (faults, channel)
    _in_state(harness, run_id, RunState.SHIPPED)  # frees the repository for the next example


def _first_sent(faults: list[str]) -> int:
    """The index of the first attempt that may have reached Discord (or past the end)."""
    sent = [i for i, f in enumerate(faults) if f != "rate_limited"]
    return sent[0] if sent else len(faults)


def test_a_ship_press_racing_a_webhook_save_still_ships(harness: Harness) -> None:
    """A check result saved between the press's read and its write is no lost race.

    Found by the proving ground: 'refused: lost a race' left a ready run unshipped.
    """
    run_id = ready_to_ship(harness)
    store = harness.orchestrator.store
    real_save = store.save_run
    raced: list[int] = []

    def save_after_a_webhook(candidate: Run) -> Run:
        if not raced:  # a webhook job saves the same run first (a delivery id recorded)
            current = store.get_run(run_id)
            raced.append(real_save(replace(current, applied=(*current.applied, "d1"))).version)
        return real_save(candidate)

    store.save_run = save_after_a_webhook  # type: ignore[method-assign]
    answer = harness.orchestrator.ship(run_id, Actor("42", "ada"))
    store.save_run = real_save  # type: ignore[method-assign]
    assert raced, "the race was not staged"
    assert not answer.private, answer  # public "shipping", not an ephemeral refusal
    assert harness.run(run_id).state is RunState.SHIPPING
    harness.drain()
    assert harness.run(run_id).state is RunState.SHIPPED
