"""Runs and tasks as immutable values, and the only functions that change their state.

A :class:`Run` is stored as one document (its tasks inside it), so one conditional write
on ``version`` covers a run and all of its tasks. ``version`` is 0 for a run that has not
been stored yet; the store sets it on every successful write.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from valine.core.errors import NotFound
from valine.core.states import (
    DeployEvent,
    DeployState,
    RunEvent,
    RunState,
    StampedStep,
    Step,
    TaskEvent,
    TaskState,
    next_deploy_state,
    next_run_state,
    next_task_state,
    nothing_to_ship,
    run_is_active,
    tasks_ready,
)


@dataclass(frozen=True, slots=True)
class Issue:
    """What the planner needs to know about one GitHub issue."""

    number: int
    title: str
    labels: tuple[str, ...]
    created_at: str
    milestone_due_on: str | None = None
    url: str = ""
    assignees: tuple[str, ...] = ()
    node_id: str = ""


@dataclass(frozen=True, slots=True)
class PullRequest:
    """What tracking and shipping need to know about one pull request."""

    number: int
    head_sha: str
    head_ref: str
    state: str  # "open" or "closed"
    merged: bool
    body: str = ""
    url: str = ""


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """What deployment tracking needs to know about one GitHub Actions workflow run."""

    id: int
    status: str  # "requested", "queued", "in_progress", "completed" ...
    conclusion: str | None  # "success", "failure", "cancelled" ... once completed
    url: str = ""
    event: str = ""  # "workflow_dispatch" for a dispatched run
    head_branch: str = ""
    #: When GitHub created it (epoch seconds; 0 when unknown).
    created_at: float = 0.0
    #: The run's title (``run-name``: a deploy workflow may put the run id in it).
    display_title: str = ""
    #: The workflow file's path (``.github/workflows/deploy.yml``) or its id as text.
    workflow: str = ""


@dataclass(frozen=True, slots=True)
class Task:
    """One issue inside a run, and what is known about its pull request."""

    issue_number: int
    title: str
    state: TaskState = TaskState.PENDING
    labels: tuple[str, ...] = ()
    node_id: str = ""
    pr_number: int | None = None
    head_sha: str | None = None
    checks_sha: str | None = None
    reason: str | None = None
    steps_done: tuple[str, ...] = ()
    #: Pull requests that named this task and were ignored, and why (newest last).
    notes: tuple[str, ...] = ()
    #: When the task entered its current state (None in runs stored before it was kept).
    since: float | None = None
    #: How many times the task was handed to its executor.
    dispatches: int = 0
    #: How many times it was retried (``/retry``, the Retry button, ``on_stale``).
    retries: int = 0
    #: How many times it went stale (each time is announced once).
    stales: int = 0
    #: When its current pull request was linked (the task entered ``pr_open``).
    pr_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of this task."""
        return {
            "issue_number": self.issue_number,
            "title": self.title,
            "state": self.state.value,
            "labels": list(self.labels),
            "node_id": self.node_id,
            "pr_number": self.pr_number,
            "head_sha": self.head_sha,
            "checks_sha": self.checks_sha,
            "reason": self.reason,
            "steps_done": list(self.steps_done),
            "notes": list(self.notes),
            "since": self.since,
            "dispatches": self.dispatches,
            "retries": self.retries,
            "stales": self.stales,
            "pr_at": self.pr_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """The task a :meth:`to_dict` dictionary describes."""
        return cls(
            issue_number=int(data["issue_number"]),
            title=str(data["title"]),
            state=TaskState(data["state"]),
            labels=tuple(data.get("labels", ())),
            node_id=str(data.get("node_id", "")),
            pr_number=data.get("pr_number"),
            head_sha=data.get("head_sha"),
            checks_sha=data.get("checks_sha"),
            reason=data.get("reason"),
            steps_done=tuple(data.get("steps_done", ())),
            notes=tuple(data.get("notes") or ()),
            since=data.get("since"),
            dispatches=int(data.get("dispatches") or 0),
            retries=int(data.get("retries") or 0),
            stales=int(data.get("stales") or 0),
            pr_at=data.get("pr_at"),
        )


@dataclass(frozen=True, slots=True)
class Deployment:
    """The deploy workflow of a shipped run (``[ship] deploy_workflow``), one attempt at a time.

    ``attempt`` counts dispatches asked for (1 for the first, +1 per ``/deploy``).
    ``claimed_at`` is set in the conditional write that claims the attempt's dispatch,
    before it is sent; ``dispatched_at`` when GitHub accepted it. ``workflow_run_id``
    and ``url`` name the GitHub Actions run once known (the dispatch's answer, or the
    first ``workflow_run`` event that matches it).
    """

    state: DeployState = DeployState.PENDING
    attempt: int = 1
    workflow: str = ""
    ref: str = ""
    requested_by: str | None = None
    claimed_at: float | None = None
    dispatched_at: float | None = None
    workflow_run_id: int | None = None
    url: str | None = None
    conclusion: str | None = None
    reason: str | None = None
    since: float | None = None
    finished_at: float | None = None
    #: Workflow runs of the earlier attempts: never this attempt's.
    earlier_runs: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of this deployment."""
        return {
            "state": self.state.value,
            "attempt": self.attempt,
            "workflow": self.workflow,
            "ref": self.ref,
            "requested_by": self.requested_by,
            "claimed_at": self.claimed_at,
            "dispatched_at": self.dispatched_at,
            "workflow_run_id": self.workflow_run_id,
            "url": self.url,
            "conclusion": self.conclusion,
            "reason": self.reason,
            "since": self.since,
            "finished_at": self.finished_at,
            "earlier_runs": list(self.earlier_runs),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        """The deployment a :meth:`to_dict` dictionary describes."""
        run_id = data.get("workflow_run_id")
        return cls(
            state=DeployState(data["state"]),
            attempt=int(data.get("attempt") or 1),
            workflow=str(data.get("workflow") or ""),
            ref=str(data.get("ref") or ""),
            requested_by=data.get("requested_by"),
            claimed_at=data.get("claimed_at"),
            dispatched_at=data.get("dispatched_at"),
            workflow_run_id=int(run_id) if run_id is not None else None,
            url=data.get("url"),
            conclusion=data.get("conclusion"),
            reason=data.get("reason"),
            since=data.get("since"),
            finished_at=data.get("finished_at"),
            earlier_runs=tuple(int(n) for n in data.get("earlier_runs") or ()),
        )


def apply_deploy_event(run: Run, event: DeployEvent, now: float, **changes: Any) -> Run:
    """``run`` after ``event`` happened to its deployment; may raise (IllegalTransition).

    Raises ValueError for a run without a deployment.
    """
    if run.deploy is None:
        raise ValueError(f"run {run.run_id} has no deployment")
    state = next_deploy_state(run.deploy.state, event)
    if state is not run.deploy.state:
        changes.setdefault("since", now)
    return replace(run, deploy=replace(run.deploy, state=state, **changes), updated_at=now)


@dataclass(frozen=True, slots=True)
class Run:
    """One day's plan for one repository: its state, its tasks and who did what when."""

    run_id: str
    repo: str
    created_at: float
    state: RunState = RunState.PLANNED
    version: int = 0
    updated_at: float = 0.0
    tasks: tuple[Task, ...] = ()
    created_by: str | None = None
    approved_by: str | None = None
    approved_at: float | None = None
    finished_at: float | None = None
    #: When the run first became ``ready_to_ship`` (None: not yet).
    ready_at: float | None = None
    reason: str | None = None
    discord: dict[str, str] = field(default_factory=dict)
    #: GitHub node ids the batched GraphQL changes need: "repository", "label:<name>",
    #: "user:<login>". Read once when the run is planned.
    github_ids: dict[str, str] = field(default_factory=dict)
    #: Ids of the latest webhook deliveries that changed this run (idempotency).
    applied: tuple[str, ...] = ()
    #: Head SHAs of recent check events no task's pull request was on yet: a PR linked
    #: later with one of them as its head has its checks read then (events race).
    unclaimed_checks: tuple[str, ...] = ()
    #: Who asked to cancel while the run was shipping; the cancel takes effect when the
    #: ship attempt ends.
    cancel_requested_by: str | None = None
    #: How many times the run entered each state (by state value): a new ship attempt
    #: that fails again is a new ``ship_failed`` episode, with its own announcement.
    entered: dict[str, int] = field(default_factory=dict)
    #: Announcements by key (``ready``, ``shipped``, ``ship_failed:2`` ...): claimed
    #: (``sending <via> <nonce>``) in a conditional save before posting, then ``posted``.
    announced: dict[str, str] = field(default_factory=dict)
    #: The deploy workflow after ship (None: no ``[ship] deploy_workflow``, or not shipped).
    deploy: Deployment | None = None
    #: How the run was started: ``"schedule"`` for the scheduled daily plan.
    origin: str | None = None
    #: Ready issues the plan read and left for another day (issue numbers).
    ready_left: tuple[int, ...] = ()
    #: The Discord thread started from the plan message, where the run's events go.
    thread_id: str | None = None
    #: Where the run's thread stands (:mod:`valine.core.threads`): None (not started),
    #: ``open``, ``archived``, ``refused`` (no thread permission: the channel instead) or
    #: ``none`` (the plan message cannot have a thread: the channel instead).
    thread: str | None = None

    @property
    def active(self) -> bool:
        """True while the run holds its repository's lock."""
        return run_is_active(self.state)

    @property
    def all_tasks_ready(self) -> bool:
        """True when no task waits for anything and at least one can ship."""
        return tasks_ready([t.state for t in self.tasks])

    @property
    def nothing_to_ship(self) -> bool:
        """True when every task left the run (skipped or failed): there is nothing to ship."""
        return nothing_to_ship([t.state for t in self.tasks])

    def task(self, issue_number: int) -> Task:
        """The task of ``issue_number``; raises NotFound."""
        for candidate in self.tasks:
            if candidate.issue_number == issue_number:
                return candidate
        raise NotFound(f"run {self.run_id} has no task for issue #{issue_number}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of this run, tasks included."""
        return {
            "run_id": self.run_id,
            "repo": self.repo,
            "state": self.state.value,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "tasks": [t.to_dict() for t in self.tasks],
            "created_by": self.created_by,
            "approved_by": self.approved_by,
            "approved_at": self.approved_at,
            "finished_at": self.finished_at,
            "ready_at": self.ready_at,
            "reason": self.reason,
            "discord": dict(self.discord),
            "github_ids": dict(self.github_ids),
            "applied": list(self.applied),
            "unclaimed_checks": list(self.unclaimed_checks),
            "cancel_requested_by": self.cancel_requested_by,
            "entered": dict(self.entered),
            "announced": dict(self.announced),
            "deploy": self.deploy.to_dict() if self.deploy is not None else None,
            "origin": self.origin,
            "ready_left": list(self.ready_left),
            "thread_id": self.thread_id,
            "thread": self.thread,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """The run a :meth:`to_dict` dictionary describes."""
        return cls(
            run_id=str(data["run_id"]),
            repo=str(data["repo"]),
            state=RunState(data["state"]),
            version=int(data.get("version", 0)),
            created_at=float(data["created_at"]),
            updated_at=float(data.get("updated_at", 0.0)),
            tasks=tuple(Task.from_dict(t) for t in data.get("tasks", ())),
            created_by=data.get("created_by"),
            approved_by=data.get("approved_by"),
            approved_at=data.get("approved_at"),
            finished_at=data.get("finished_at"),
            ready_at=data.get("ready_at"),
            reason=data.get("reason"),
            discord=dict(data.get("discord") or {}),
            github_ids=dict(data.get("github_ids") or {}),
            applied=tuple(data.get("applied") or ()),
            unclaimed_checks=tuple(data.get("unclaimed_checks") or ()),
            cancel_requested_by=data.get("cancel_requested_by"),
            entered={str(k): int(v) for k, v in (data.get("entered") or {}).items()},
            announced={str(k): str(v) for k, v in (data.get("announced") or {}).items()},
            deploy=Deployment.from_dict(data["deploy"]) if data.get("deploy") else None,
            origin=data.get("origin"),
            ready_left=tuple(int(n) for n in data.get("ready_left") or ()),
            thread_id=data.get("thread_id"),
            thread=data.get("thread"),
        )


def apply_run_event(run: Run, event: RunEvent, now: float, **changes: Any) -> Run:
    """``run`` after ``event`` at ``now``, with optional field ``changes``; may raise."""
    new_state = next_run_state(run.state, event)
    entered = run.entered
    if new_state is not run.state:
        entered = {**entered, new_state.value: entered.get(new_state.value, 0) + 1}
        if new_state is RunState.READY_TO_SHIP and run.ready_at is None:
            changes.setdefault("ready_at", now)
    return replace(run, state=new_state, updated_at=now, entered=entered, **changes)


def apply_task_event(
    run: Run, issue_number: int, event: TaskEvent, now: float, **changes: Any
) -> Run:
    """``run`` after ``event`` happened to the task of ``issue_number``; may raise."""
    current = run.task(issue_number)
    state = next_task_state(current.state, event)
    if state is not current.state:
        changes.setdefault("since", now)
        if state is TaskState.PR_OPEN:
            changes.setdefault("pr_at", now)
    if event is TaskEvent.DISPATCH:
        changes.setdefault("dispatches", current.dispatches + 1)
    updated = replace(current, state=state, **changes)
    tasks = tuple(updated if t.issue_number == issue_number else t for t in run.tasks)
    return replace(run, tasks=tasks, updated_at=now)


def retry_task(run: Run, issue_number: int, now: float, reason: str) -> Run:
    """``run`` with the failed or stale task of ``issue_number`` back to ``pending``.

    Its pull request link and its dispatch steps are forgotten, so the executor is
    handed the task again; the relabel and the comment (done once) are kept. Raises
    IllegalTransition for a task that is neither failed nor stale.
    """
    task = run.task(issue_number)
    # The steps of one hand-over to the executor are forgotten.
    steps = StampedStep.DISPATCH_CLAIM.without(task.steps_done)
    steps = tuple(s for s in steps if s != Step.DISPATCHED)
    return apply_task_event(
        run,
        issue_number,
        TaskEvent.RETRY,
        now,
        steps_done=steps,
        pr_number=None,
        head_sha=None,
        checks_sha=None,
        reason=reason,
        retries=task.retries + 1,
    )


def new_run_id(now: float, entropy: str) -> str:
    """A short run id people can type: ``r`` + UTC date + 6 characters of ``entropy``.

    ``entropy`` must be random lowercase alphanumerics (the caller draws them; the core
    does no I/O). Example: ``r20261125-k3f9qa``.
    """
    import time

    day = time.strftime("%Y%m%d", time.gmtime(now))
    return f"r{day}-{entropy[:6]}"
