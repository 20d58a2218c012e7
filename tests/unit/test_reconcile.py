"""``Orchestrator.reconcile``: the periodic re-read that recovers from lost webhooks.

Table-driven over what GitHub says about a task's pull request and its checks, on the
SQLite adapters and a fake GitHub that only answers ``get_pull`` and ``pull_checks``
(the two calls reconcile makes).
"""

from __future__ import annotations

from typing import Any

import pytest

from valine.core.checks import Check, CheckKind, CheckPicture
from valine.core.errors import GitHubUnavailable, NotFound
from valine.core.models import PullRequest, Run, Task
from valine.core.policy import Policy
from valine.core.states import RunState, TaskState
from valine.testing.clock import ManualClock
from valine.testing.memory import MemoryJobQueue, MemoryRunStore
from valine.usecases import Orchestrator

REPO = "octo/widgets"
HEAD, NEW_HEAD = "a" * 40, "b" * 40


class FakeGitHub:
    """Answers ``get_pull`` and ``pull_checks`` from dicts; records the calls.

    ``checks`` maps a head SHA to the conclusion of its one check run ("" while it
    runs); a head without an entry has no check at all.
    """

    def __init__(
        self, pulls: dict[int, PullRequest | Exception], checks: dict[str, str] | None = None
    ) -> None:
        self.pulls = pulls
        self.checks = checks or {}
        self.calls: list[int] = []
        self.check_calls: list[list[int]] = []

    def pull_checks(
        self, repo: str, numbers: list[int], *, merge_queue: bool = False
    ) -> list[CheckPicture]:
        assert repo == REPO
        assert not merge_queue, "only a run shipping through a merge queue reads the queue"
        self.check_calls.append(list(numbers))
        pictures = []
        for number in numbers:
            head = self.pulls[number]
            if not isinstance(head, PullRequest):
                continue  # GitHub could not answer for it either
            conclusion = self.checks.get(head.head_sha)
            checks = () if conclusion is None else (_run(conclusion),)
            pictures.append(CheckPicture(number, head.head_sha, checks))
        return pictures

    def get_pull(self, repo: str, number: int) -> PullRequest:
        assert repo == REPO
        self.calls.append(number)
        answer = self.pulls[number]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"reconcile must not call GitHub.{name}")


def _run(conclusion: str) -> Check:
    status = "completed" if conclusion else "in_progress"
    return Check("ci", CheckKind.CHECK_RUN, status, conclusion or None, "https://ci/1")


@pytest.fixture
def parts() -> tuple[MemoryRunStore, MemoryJobQueue]:
    """The testing kit's store and queue: the reconcile needs no database file."""
    return MemoryRunStore(), MemoryJobQueue()


def orchestrator(parts: tuple[MemoryRunStore, MemoryJobQueue], github: FakeGitHub) -> Orchestrator:
    store, queue = parts
    return Orchestrator(
        repo=REPO,
        policy=Policy(),
        store=store,
        queue=queue,
        github=lambda: github,  # type: ignore[arg-type, return-value]
        discord=lambda: pytest.fail("reconcile must not call Discord"),
        clock=ManualClock(),
        entropy=lambda: "abcdef",
        notify_window=0,
    )


def pull(state: str = "open", head: str = HEAD, merged: bool = False) -> PullRequest:
    return PullRequest(
        number=5, head_sha=head, head_ref="valine/r1/1", state=state, merged=merged, body=""
    )


def stored_run(store: MemoryRunStore, task_state: TaskState, pr: int | None = 5) -> Run:
    task = Task(
        issue_number=1,
        title="Fix the gauge",
        state=task_state,
        pr_number=pr,
        head_sha=HEAD if pr else None,
        checks_sha=HEAD if task_state is TaskState.CHECKS_PASSED else None,
    )
    return store.create_run(
        Run(run_id="r1", repo=REPO, created_at=1.0, state=RunState.EXECUTING, tasks=(task,))
    )


@pytest.mark.parametrize(
    ("before", "github_says", "after", "head"),
    [
        (TaskState.CHECKS_PASSED, pull("closed", merged=True), TaskState.MERGED, HEAD),
        (TaskState.CHECKS_PENDING, pull("closed"), TaskState.DISPATCHED, None),
        (TaskState.CHECKS_PASSED, pull(head=NEW_HEAD), TaskState.CHECKS_PENDING, NEW_HEAD),
        (TaskState.CHECKS_FAILED, pull(head=NEW_HEAD), TaskState.CHECKS_PENDING, NEW_HEAD),
        (TaskState.PR_OPEN, pull(), TaskState.PR_OPEN, HEAD),  # no check yet: no write
    ],
)
def test_reconcile_applies_what_a_lost_webhook_would_have(
    parts: tuple[MemoryRunStore, MemoryJobQueue],
    before: TaskState,
    github_says: PullRequest,
    after: TaskState,
    head: str | None,
) -> None:
    store, _ = parts
    run = stored_run(store, before)
    github = FakeGitHub({5: github_says})
    assert orchestrator(parts, github).reconcile() == 1
    assert github.calls == [5]
    task = store.get_run(run.run_id).tasks[0]
    assert (task.state, task.head_sha) == (after, head)
    if after is before:
        assert store.get_run(run.run_id).version == run.version, "nothing changed: no write"


def test_only_tasks_with_an_open_pull_request_are_read(
    parts: tuple[MemoryRunStore, MemoryJobQueue],
) -> None:
    store, _ = parts
    stored_run(store, TaskState.DISPATCHED, pr=None)
    github = FakeGitHub({})
    assert orchestrator(parts, github).reconcile() == 0
    assert github.calls == []


def test_no_active_run_means_no_request(parts: tuple[MemoryRunStore, MemoryJobQueue]) -> None:
    github = FakeGitHub({})
    assert orchestrator(parts, github).reconcile() == 0
    assert github.calls == []


@pytest.mark.parametrize("error", [NotFound("gone"), GitHubUnavailable("502 after retries")])
def test_a_pull_request_that_cannot_be_read_is_skipped(
    parts: tuple[MemoryRunStore, MemoryJobQueue], error: Exception
) -> None:
    store, _ = parts
    run = stored_run(store, TaskState.CHECKS_PASSED)
    github = FakeGitHub({5: error})
    assert orchestrator(parts, github).reconcile() == 0
    assert store.get_run(run.run_id).version == run.version


@pytest.mark.parametrize(
    ("before", "conclusion", "after"),
    [
        (TaskState.CHECKS_PENDING, "success", TaskState.CHECKS_PASSED),
        (TaskState.PR_OPEN, "success", TaskState.CHECKS_PASSED),
        (TaskState.CHECKS_PENDING, "failure", TaskState.CHECKS_FAILED),
        (TaskState.CHECKS_PENDING, "", TaskState.CHECKS_PENDING),  # still running
        (TaskState.CHECKS_PASSED, "failure", TaskState.CHECKS_FAILED),  # a lost regression
        (TaskState.CHECKS_FAILED, "success", TaskState.CHECKS_PASSED),  # a lost re-run
    ],
)
def test_reconcile_recovers_lost_check_results(
    parts: tuple[MemoryRunStore, MemoryJobQueue],
    before: TaskState,
    conclusion: str,
    after: TaskState,
) -> None:
    store, _ = parts
    run = stored_run(store, before)
    github = FakeGitHub({5: pull()}, {HEAD: conclusion})
    orchestrator(parts, github).reconcile()
    assert github.check_calls == [[5]]
    stored = store.get_run(run.run_id)
    assert stored.tasks[0].state is after
    if after is TaskState.CHECKS_PASSED:
        assert stored.state is RunState.READY_TO_SHIP


def test_the_checks_of_every_open_pull_request_are_one_read(
    parts: tuple[MemoryRunStore, MemoryJobQueue],
) -> None:
    store, _ = parts
    tasks = tuple(
        Task(n, f"t{n}", TaskState.CHECKS_PENDING, pr_number=n + 4, head_sha=HEAD)
        for n in (1, 2, 3)
    )
    store.create_run(
        Run(run_id="r1", repo=REPO, created_at=1.0, state=RunState.EXECUTING, tasks=tasks)
    )
    pulls: dict[int, PullRequest | Exception] = {
        n + 4: PullRequest(n + 4, HEAD, f"b{n}", "open", False) for n in (1, 2, 3)
    }
    github = FakeGitHub(pulls, {HEAD: "success"})
    orchestrator(parts, github).reconcile()
    assert github.check_calls == [[5, 6, 7]]
    assert store.get_run("r1").state is RunState.READY_TO_SHIP


@pytest.mark.parametrize(
    ("conclusion", "after"),
    [("success", "deployed"), ("failure", "failed"), (None, "running")],
)
def test_reconcile_applies_a_lost_workflow_run_webhook_to_the_deployment(
    parts: tuple[MemoryRunStore, MemoryJobQueue], conclusion: str | None, after: str
) -> None:
    """The deployment's workflow run is read by id and applied as the event its
    ``workflow_run`` webhook would have been (``WorkflowRunChanged``)."""
    from dataclasses import replace

    from valine.core.models import Deployment, WorkflowRun
    from valine.core.policy import ShipRules
    from valine.core.states import DeployState

    store, _ = parts
    now = ManualClock().now()  # dispatched just now: not overdue
    deploy = Deployment(
        state=DeployState.DISPATCHED,
        workflow="deploy.yml",
        ref="main",
        claimed_at=now,
        dispatched_at=now,
        since=now,
        workflow_run_id=77,
    )
    store.create_run(
        Run(run_id="r1", repo=REPO, created_at=1.0, state=RunState.SHIPPED, deploy=deploy)
    )
    status = "completed" if conclusion else "in_progress"
    seen = WorkflowRun(77, status, conclusion, workflow=".github/workflows/deploy.yml")
    read: list[int] = []

    class DeployGitHub(FakeGitHub):
        def workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
            read.append(run_id)
            return seen

    uc = orchestrator(parts, DeployGitHub({}))
    uc.policy = replace(uc.policy, ship=ShipRules(deploy_workflow="deploy.yml"))
    uc.reconcile()
    assert read == [77]  # one request for the deployment in flight
    deployed = store.get_run("r1").deploy
    assert deployed is not None and deployed.state.value == after
