"""What a saved change of a run means for the metrics: pure, from the run before and after.

:func:`run_measurements` compares the stored run before a save with the run saved and
returns the measurements that change implies: a run planned or ended (by state), the
time from plan to approval, approval to ready and ready to shipped; a task ended (by
state), the time from hand-over to pull request and from pull request to green; a
deployment after ship concluded (by outcome).
The runtime records them (``valine.metrics``); nothing here does I/O.
"""

from __future__ import annotations

from valine.core.models import Run, Task
from valine.core.records import Record
from valine.core.states import DEPLOY_DONE, DeployState, RunState, TaskState

#: Run states counted when a run enters them (``ship_failed`` is an episode, not an end).
COUNTED_RUN_STATES = frozenset(
    {RunState.SHIPPED, RunState.CANCELLED, RunState.FAILED, RunState.SHIP_FAILED}
)
#: Task states counted when a task enters them.
COUNTED_TASK_STATES = frozenset(
    {TaskState.MERGED, TaskState.SKIPPED, TaskState.FAILED, TaskState.STALE}
)


class Measurement(Record):
    """One measurement of a metric of ``valine.metrics.METRICS``."""

    name: str
    value: float
    dimensions: tuple[tuple[str, str], ...] = ()


def run_measurements(before: Run | None, after: Run) -> list[Measurement]:
    """The measurements implied by saving ``after`` over ``before`` (None: a new run)."""
    if before is None:
        return [Measurement("runs", 1, (("state", after.state.value),))]
    found: list[Measurement] = []
    if before.state is not after.state:
        found += _run_entered(after)
    previous = {t.issue_number: t for t in before.tasks}
    for task in after.tasks:
        old = previous.get(task.issue_number)
        if old is not None and old.state is not task.state:
            found += _task_entered(old, task)
    return found + _deployment_concluded(before, after)


def _deployment_concluded(before: Run, after: Run) -> list[Measurement]:
    """A deployment after ship that concluded in this save, by outcome."""
    done = after.deploy is not None and after.deploy.state in DEPLOY_DONE
    was_done = (
        before.deploy is not None
        and before.deploy.state in DEPLOY_DONE
        and after.deploy is not None
        and before.deploy.attempt == after.deploy.attempt
    )
    if not done or was_done:
        return []
    assert after.deploy is not None
    outcome = "deployed" if after.deploy.state is DeployState.DEPLOYED else "failed"
    return [Measurement("deployments", 1, (("outcome", outcome),))]


def _run_entered(run: Run) -> list[Measurement]:
    found: list[Measurement] = []
    now = run.updated_at
    if run.state is RunState.APPROVED and run.approved_at is not None:
        found.append(Measurement("run_plan_to_approve", run.approved_at - run.created_at))
    if (
        run.state is RunState.READY_TO_SHIP
        and run.entered.get(RunState.READY_TO_SHIP.value, 0) <= 1
        and run.approved_at is not None
    ):
        found.append(Measurement("run_approve_to_ready", now - run.approved_at))
    if run.state is RunState.SHIPPED and run.ready_at is not None:
        found.append(Measurement("run_ready_to_shipped", now - run.ready_at))
    if run.state in COUNTED_RUN_STATES:
        found.append(Measurement("runs", 1, (("state", run.state.value),)))
    return found


def _task_entered(old: Task, task: Task) -> list[Measurement]:
    found: list[Measurement] = []
    dispatched = old.state is TaskState.DISPATCHED and old.since is not None
    if task.state is TaskState.PR_OPEN and dispatched and task.pr_at is not None:
        assert old.since is not None
        found.append(Measurement("task_dispatch_to_pr", task.pr_at - old.since))
    if task.state is TaskState.CHECKS_PASSED and task.pr_at is not None and task.since:
        found.append(Measurement("task_pr_to_green", task.since - task.pr_at))
    if task.state in COUNTED_TASK_STATES:
        found.append(Measurement("tasks", 1, (("state", task.state.value),)))
    return found


def active_run_age(run: Run | None, now: float) -> float:
    """Seconds the active run has existed (0 without one): the stranded-run alarm's input."""
    if run is None or not run.active:
        return 0.0
    return max(0.0, now - run.created_at)
