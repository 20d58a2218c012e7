"""Runs and tasks: serialisation round trips and the event helpers."""

from __future__ import annotations

import pytest

from valine.core.errors import IllegalTransition, NotFound
from valine.core.models import Run, Task, apply_run_event, apply_task_event, new_run_id
from valine.core.states import RunEvent, RunState, TaskEvent, TaskState


def _run() -> Run:
    return Run(
        run_id="r20261125-abc123",
        repo="octo/repo",
        created_at=1_700_000_000.0,
        tasks=(Task(1, "First"), Task(2, "Second", state=TaskState.DISPATCHED)),
        created_by="42",
        discord={"application_id": "1", "token": "t"},
    )


def test_round_trip_keeps_every_field() -> None:
    run = apply_task_event(_run(), 2, TaskEvent.PR_OPENED, 5.0, pr_number=7, head_sha="a" * 40)
    assert Run.from_dict(run.to_dict()) == run


def test_apply_run_event_changes_state_and_time_only_through_the_table() -> None:
    run = apply_run_event(_run(), RunEvent.APPROVE, 10.0, approved_by="42")
    assert (run.state, run.updated_at, run.approved_by) == (RunState.APPROVED, 10.0, "42")
    with pytest.raises(IllegalTransition):
        apply_run_event(run, RunEvent.SHIPPED, 11.0)


def test_apply_task_event_touches_one_task() -> None:
    run = apply_task_event(_run(), 1, TaskEvent.DISPATCH, 3.0)
    assert [t.state for t in run.tasks] == [TaskState.DISPATCHED, TaskState.DISPATCHED]
    with pytest.raises(NotFound):
        apply_task_event(run, 99, TaskEvent.DISPATCH, 3.0)


@pytest.mark.parametrize(
    ("states", "ready", "nothing"),
    [
        ((), False, False),
        ((TaskState.CHECKS_PASSED, TaskState.SKIPPED), True, False),
        ((TaskState.MERGED, TaskState.CHECKS_PASSED), True, False),  # a person merged one
        ((TaskState.CHECKS_PASSED, TaskState.FAILED), True, False),  # ship the rest
        ((TaskState.CHECKS_PASSED, TaskState.CHECKS_PENDING), False, False),
        ((TaskState.SKIPPED, TaskState.FAILED), False, True),
        ((TaskState.SKIPPED,), False, True),
    ],
)
def test_readiness(states: tuple[TaskState, ...], ready: bool, nothing: bool) -> None:
    run = Run("r", "o/r", 0.0, tasks=tuple(Task(n, "t", s) for n, s in enumerate(states)))
    assert (run.all_tasks_ready, run.nothing_to_ship) == (ready, nothing)


def test_run_id_is_short_and_dated() -> None:
    assert new_run_id(1_764_028_800.0, "k3f9qazz") == "r20251125-k3f9qa"
