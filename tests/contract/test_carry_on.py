"""No state without the job that carries it on, on every RunStore adapter (SQLite,
DynamoDB Local and the in-memory one), with the in-memory job queue.

The saved state is the record of the job it waits on: a run saved ``approved``,
``shipping`` or ``cancelling`` (or with a pending task) whose enqueue was lost is carried
on by the reconcile, from what the store returns, once it has not moved for STALL_AFTER.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from valine.core.models import Run, Task
from valine.core.policy import Policy
from valine.core.states import RunState, TaskState
from valine.ports import RunStore
from valine.testing.clock import ManualClock
from valine.testing.memory import MemoryJobQueue
from valine.usecases import Orchestrator
from valine.usecases.tracking import STALL_AFTER

REPO = "octo/widgets"
T0 = 1_800_000_000.0


def taken(queue: MemoryJobQueue) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, payload)`` of every job enqueued since the last call (each is leased and acked)."""
    jobs = []
    while (job := queue.lease(60)) is not None:
        queue.ack(job)
        jobs.append((job.kind, job.payload))
    return jobs


def orchestrator(store: RunStore, queue: MemoryJobQueue, clock: ManualClock) -> Orchestrator:
    return Orchestrator(
        repo=REPO,
        policy=Policy(),
        store=store,
        queue=queue,
        github=lambda: pytest.fail("no PR to read: no GitHub call"),
        discord=lambda: pytest.fail("no Discord call"),
        clock=clock,
        entropy=lambda: "abcdef",
        notify_window=0,
    )


@pytest.mark.parametrize(
    ("state", "kind"),
    [
        (RunState.APPROVED, "start_run"),
        (RunState.SHIPPING, "ship_run"),
        (RunState.CANCELLING, "cancel_run"),
    ],
)
def test_a_run_waiting_on_its_own_job_gets_it_again(
    run_store: RunStore, state: RunState, kind: str
) -> None:
    clock = ManualClock(T0)
    queue = MemoryJobQueue(clock=clock)
    task = Task(1, "Fix the gauge", state=TaskState.CHECKS_PASSED, since=T0)
    run_store.create_run(
        Run(run_id="r1", repo=REPO, created_at=T0, updated_at=T0, state=state, tasks=(task,))
    )
    use = orchestrator(run_store, queue, clock)
    clock.t = T0 + STALL_AFTER - 1
    use.reconcile()
    assert taken(queue) == [], "a run that moved recently is left alone"
    clock.t = T0 + STALL_AFTER
    use.reconcile()
    use.reconcile()  # the same period: one copy
    assert taken(queue) == [(kind, {"run_id": "r1"})]
    clock.t += STALL_AFTER
    use.reconcile()
    assert taken(queue) == [(kind, {"run_id": "r1"})], "one more copy per period while it waits"


def test_a_pending_task_of_an_executing_run_gets_its_dispatch_again(run_store: RunStore) -> None:
    clock = ManualClock(T0)
    queue = MemoryJobQueue(clock=clock)
    tasks = (
        Task(1, "a", state=TaskState.PENDING, since=T0, retries=1),
        Task(2, "b", state=TaskState.CHECKS_PASSED, since=T0),
    )
    run_store.create_run(
        Run(
            run_id="r1",
            repo=REPO,
            created_at=T0,
            updated_at=T0,
            state=RunState.EXECUTING,
            tasks=tasks,
        )
    )
    clock.t = T0 + STALL_AFTER
    orchestrator(run_store, queue, clock).reconcile()
    assert taken(queue) == [("dispatch_task", {"run_id": "r1", "issue": 1})]


def test_the_fields_liveness_reads_survive_the_store(run_store: RunStore) -> None:
    task = Task(1, "a", state=TaskState.STALE, since=T0 + 0.25, dispatches=2, retries=1)
    run = run_store.create_run(
        Run(run_id="r1", repo=REPO, created_at=T0, state=RunState.SHIPPING, tasks=(task,))
    )
    saved = run_store.save_run(replace(run, cancel_requested_by="42"))
    back = run_store.get_run("r1")
    assert back.tasks == (task,)
    assert back.cancel_requested_by == "42" == saved.cancel_requested_by
    assert back.active, "cancelling and shipping runs hold the lock"
    cancelling = run_store.save_run(replace(back, state=RunState.CANCELLING))
    assert run_store.active_run(REPO) == cancelling
