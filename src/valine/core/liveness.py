"""Work that stops moving: which tasks are stale, and what the policy does about them.

Pure functions over a run and the current time (the reconcile passes it in). A task is
*stale* when it has been handed to its executor for ``[executor] pr_timeout`` seconds
without a pull request, or its pull request's checks have not concluded within
``[checks] timeout`` seconds. ``[policy] on_stale`` decides what follows:

* ``notify`` -- the task is marked stale with the reason (the run's message shows it)
  and the run keeps waiting: a late pull request or check result still counts, and a
  person can ``/retry`` or ``/cancel``;
* ``redispatch`` -- a stale task without a pull request goes back to ``pending`` to be
  handed to its executor again, until it has been handed over ``max_dispatches``
  times; then it fails. A task whose checks are stale keeps its pull request and is
  only reported (re-dispatching would abandon the pull request);
* ``fail`` -- the stale task fails; the run goes on without it (or fails, per
  ``on_task_failure``), and a run left with nothing to wait for ends at once.
"""

from __future__ import annotations

from valine.core.models import Run, Task, apply_task_event, retry_task
from valine.core.policy import Policy
from valine.core.states import TaskEvent, TaskState
from valine.core.tracking import Change, apply_changes

_WAITING_FOR_PR = frozenset({TaskState.DISPATCHED})
_WAITING_FOR_CHECKS = frozenset({TaskState.PR_OPEN, TaskState.CHECKS_PENDING})


def _waited(task: Task, now: float) -> float:
    """Seconds in the current state; 0 when unknown (runs stored before it was kept)."""
    return 0.0 if task.since is None else now - task.since


def _minutes(seconds: float) -> str:
    return f"{round(seconds / 60)} min"


def stale_changes(run: Run, now: float, policy: Policy) -> list[Change]:
    """The tasks of ``run`` whose wait has outlasted its timeout, as ``stale`` changes."""
    changes = []
    pr_timeout = policy.executor.pr_timeout
    checks_timeout = policy.liveness.checks_timeout
    for task in run.tasks:
        waited = _waited(task, now)
        if task.state in _WAITING_FOR_PR and waited >= pr_timeout:
            reason = f"stale: no pull request {_minutes(waited)} after the hand-over"
        elif task.state in _WAITING_FOR_CHECKS and waited >= checks_timeout:
            reason = f"stale: the checks of PR #{task.pr_number} did not conclude in time"
            reason += f" ({_minutes(waited)})"
        else:
            continue
        fields = {"reason": reason, "stales": task.stales + 1}
        changes.append(Change(task.issue_number, TaskEvent.STALE, fields))
    return changes


def expire(run: Run, now: float, policy: Policy) -> tuple[Run, list[int]]:
    """``run`` with its overdue tasks marked stale and the policy applied.

    Returns the run and the issue numbers to hand to the executor again.
    """
    changes = stale_changes(run, now, policy)
    run = apply_changes(run, changes, now)
    redispatch: list[int] = []
    for change in changes:
        task = run.task(change.issue_number)
        if task.state is not TaskState.STALE:
            continue
        run, again = _on_stale(run, task, now, policy)
        if again:
            redispatch.append(task.issue_number)
    return run, redispatch


def _on_stale(run: Run, task: Task, now: float, policy: Policy) -> tuple[Run, bool]:
    mode = policy.liveness.on_stale
    if mode == "fail":
        return apply_task_event(run, task.issue_number, TaskEvent.FAIL, now), False
    if mode != "redispatch" or task.pr_number is not None:
        return run, False
    if task.dispatches >= policy.liveness.max_dispatches:
        reason = f"{task.reason}; gave up after {task.dispatches} hand-over(s)"
        return apply_task_event(run, task.issue_number, TaskEvent.FAIL, now, reason=reason), False
    reason = f"{task.reason}; handed to the executor again"
    return retry_task(run, task.issue_number, now, reason), True
