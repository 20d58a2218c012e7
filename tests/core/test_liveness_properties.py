"""Properties of liveness over random histories (Hypothesis): whatever happens to a run's
tasks and however time passes, a run with nothing left to wait for has ended, expiry never
raises, and ``redispatch`` never hands a task over more than ``max_dispatches`` times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from valine.core.errors import IllegalTransition
from valine.core.liveness import expire
from valine.core.models import Run, Task, apply_task_event, retry_task
from valine.core.policy import Liveness, Policy
from valine.core.states import TASK_SETTLED, TASK_TERMINAL, RunState, TaskEvent, TaskState
from valine.core.tracking import settle

T0 = 1_800_000_000.0
#: One step of a history: a task event on task i, or time passing (then an expiry pass).
Step = tuple[str, int, TaskEvent | None, float]

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("event"), st.integers(0, 2), st.sampled_from(list(TaskEvent)), st.just(0.0)
        ),
        st.tuples(st.just("wait"), st.just(0), st.none(), st.floats(0, 10_000)),
    ),
    max_size=40,
)
policies = st.builds(
    lambda on_stale, max_dispatches, fail_run: (
        Policy(
            on_task_failure="fail_run" if fail_run else "continue",
            liveness=Liveness(on_stale=on_stale, max_dispatches=max_dispatches),
        ),
    ),
    st.sampled_from(["notify", "redispatch", "fail"]),
    st.integers(1, 4),
    st.booleans(),
)


def _start() -> Run:
    tasks = tuple(
        Task(n, f"t{n}", state=TaskState.DISPATCHED, since=T0, dispatches=1) for n in (1, 2, 3)
    )
    return Run(run_id="r1", repo="o/r", created_at=T0, state=RunState.EXECUTING, tasks=tasks)


def _event(run: Run, index: int, event: TaskEvent, now: float) -> Run:
    number = run.tasks[index].issue_number
    try:
        if event is TaskEvent.RETRY:
            return retry_task(run, number, now, "retried")
        if event is TaskEvent.DISPATCH:
            return apply_task_event(run, number, event, now)
        fields = {"pr_number": 7 + index} if event is TaskEvent.PR_OPENED else {}
        return apply_task_event(run, number, event, now, **fields)
    except IllegalTransition:
        return run


@given(history=steps, chosen=policies)
def test_a_run_with_nothing_left_to_wait_for_has_ended(
    history: list[Step], chosen: tuple[Policy]
) -> None:
    (policy,) = chosen
    fail_run = policy.on_task_failure == "fail_run"
    run, now, automatic = _start(), T0, {1: 1, 2: 1, 3: 1}
    for kind, index, event, seconds in history:
        if run.state is not RunState.EXECUTING and run.state is not RunState.READY_TO_SHIP:
            break
        if kind == "event" and event is not None:
            if event is TaskEvent.RETRY:
                continue  # a person's retry is not bounded by max_dispatches
            run = _event(run, index, event, now)
        else:
            now += seconds
            before = {t.issue_number: t.dispatches for t in run.tasks}
            run, again = expire(run, now, policy)
            for number in again:
                run = apply_task_event(run, number, TaskEvent.DISPATCH, now)
                assert before[number] + 1 == run.task(number).dispatches
                automatic[number] += 1
        run = settle(run, now, fail_run)
        if run.state is RunState.EXECUTING:
            assert not all(t.state in TASK_SETTLED for t in run.tasks) or not run.tasks
            assert not (fail_run and any(t.state is TaskState.FAILED for t in run.tasks))
        if all(t.state in TASK_TERMINAL and t.state is not TaskState.MERGED for t in run.tasks):
            assert run.state is RunState.FAILED, "nothing to ship and nothing to wait for"
            assert not run.active
    if policy.liveness.on_stale == "redispatch":
        for task in run.tasks:
            assert automatic[task.issue_number] <= max(policy.liveness.max_dispatches, 1)


def test_skipping_the_last_green_task_of_a_ready_run_ends_it_in_the_same_settle() -> None:
    """Found by the property above (a fresh clone's draw): a ready run whose only green
    task is skipped went back to ``executing`` and stayed there, nothing left to ship and
    nothing to wait for, until some later event settled it again."""
    run = _start()
    for number in (1, 2):
        run = apply_task_event(run, number, TaskEvent.SKIP, T0)
    run = apply_task_event(run, 3, TaskEvent.PR_OPENED, T0, pr_number=9)
    run = settle(apply_task_event(run, 3, TaskEvent.CHECKS_PASSED, T0), T0, False)
    assert run.state is RunState.READY_TO_SHIP
    run = settle(apply_task_event(run, 3, TaskEvent.SKIP, T0), T0, False)
    assert run.state is RunState.FAILED
    assert "nothing left to ship" in str(run.reason)
    assert not run.active
