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


def test_all_tasks_ready_needs_green_or_skipped_and_at_least_one_task() -> None:
    assert not Run("r", "o/r", 0.0).all_tasks_ready
    run = Run(
        "r",
        "o/r",
        0.0,
        tasks=(Task(1, "a", TaskState.CHECKS_PASSED), Task(2, "b", TaskState.SKIPPED)),
    )
    assert run.all_tasks_ready
    run = apply_task_event(run, 1, TaskEvent.CHECKS_STARTED, 1.0)
    assert not run.all_tasks_ready


def test_run_id_is_short_and_dated() -> None:
    assert new_run_id(1_764_028_800.0, "k3f9qazz") == "r20251125-k3f9qa"
