"""The digest's figures match the stored runs they are computed from."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from valine.core.digest import day_digest, digest_message
from valine.core.models import Deployment, Run, Task
from valine.core.states import DeployState, RunState, TaskState

DAY = 1_800_000_000.0  # the day's start


def run(n: int, state: RunState, tasks: tuple[Task, ...], **fields: object) -> Run:
    return Run(
        run_id=f"r20270115-{n:06d}",
        repo="o/r",
        created_at=fields.pop("created_at", DAY + 100 * n),  # type: ignore[arg-type]
        state=state,
        tasks=tasks,
        **fields,  # type: ignore[arg-type]
    )


def test_a_day_of_runs() -> None:
    shipped = run(
        1,
        RunState.SHIPPED,
        (
            Task(1, "a", TaskState.MERGED, pr_number=11),
            Task(2, "b", TaskState.MERGED, pr_number=12),
            Task(3, "c", TaskState.FAILED, reason="workflow dispatch failed (ref 1a2b)"),
        ),
        approved_at=DAY + 200,
        finished_at=DAY + 200 + 95 * 60,
        deploy=Deployment(state=DeployState.FAILED, workflow="d.yml", url="https://x/runs/5"),
        ready_left=(8, 9),
    )
    active = run(2, RunState.EXECUTING, (Task(4, "d", TaskState.STALE, reason="no PR"),))
    yesterday = run(
        3,
        RunState.SHIPPED,
        (Task(5, "e", TaskState.MERGED, pr_number=15),),
        created_at=DAY - 86400,
        finished_at=DAY - 80000,
    )
    digest = day_digest([active, shipped, yesterday], DAY)
    assert digest.shipped == (shipped.run_id,)
    assert digest.runs == (active.run_id, shipped.run_id)
    assert digest.merged == ((shipped.run_id, 11, 1), (shipped.run_id, 12, 2))
    assert digest.ship_minutes == (95,)
    assert len(digest.problems) == 2
    assert "#3 failed: workflow dispatch failed" in digest.problems[1]
    assert "#4 stale: no PR" in digest.problems[0]
    assert digest.deployments == (
        f"`{shipped.run_id}` deploy failed — [workflow run](https://x/runs/5)",
    )
    assert digest.ready_left == ()  # the newest plan of the day (the active run's) left none
    assert day_digest([shipped], DAY).ready_left == (8, 9)
    assert day_digest([yesterday], DAY).ready_left is None  # no plan read them today
    text = digest_message(digest, "o/r", "https://github.com").cards[0].description
    assert "Runs shipped: **1** of 2 run(s) today" in text
    assert "Pull requests merged: **2**" in text
    assert "Approval to ship: 1 h 35 min" in text
    assert "Failed or stale tasks: **2**" in text


@given(
    st.lists(
        st.tuples(
            st.sampled_from([RunState.SHIPPED, RunState.CANCELLED, RunState.EXECUTING]),
            st.lists(st.sampled_from(list(TaskState)), min_size=1, max_size=6),
            st.booleans(),  # today or yesterday
        ),
        max_size=8,
    )
)
def test_the_counts_are_the_stored_runs_counts(
    specs: list[tuple[RunState, list[TaskState], bool]],
) -> None:
    runs = []
    for n, (state, states, today) in enumerate(specs):
        created = DAY + 10 * n if today else DAY - 86400 + n
        finished = created + 5 if state is not RunState.EXECUTING else None
        tasks = tuple(Task(i + 1, "t", s, pr_number=i + 100) for i, s in enumerate(states))
        runs.append(
            run(n, state, tasks, created_at=created, finished_at=finished, approved_at=created)
        )
    digest = day_digest(runs, DAY)
    todays = [r for r in runs if r.created_at >= DAY or r.active]
    shipped = [r for r in todays if r.state is RunState.SHIPPED]
    assert len(digest.runs) == len(todays)
    assert len(digest.shipped) == len(shipped)
    assert len(digest.merged) == sum(
        1 for r in shipped for t in r.tasks if t.state is TaskState.MERGED
    )
    assert len(digest.problems) == sum(
        1 for r in todays for t in r.tasks if t.state in (TaskState.FAILED, TaskState.STALE)
    )
    message = digest_message(digest, "o/r", "https://github.com")
    assert len(message.cards[0].description) <= 4096
