"""Every (state, event) pair of both state tables, legal and illegal."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from valine.core.errors import IllegalTransition
from valine.core.states import (
    DEPLOY_DONE,
    RUN_TERMINAL,
    TASK_TERMINAL,
    DeployEvent,
    DeployState,
    RunEvent,
    RunState,
    TaskEvent,
    TaskState,
    mermaid_diagram,
    next_deploy_state,
    next_run_state,
    next_task_state,
    run_is_active,
)

R, RE, T, TE = RunState, RunEvent, TaskState, TaskEvent

# The expected legal transitions, written out independently of the table in states.py.
EXPECTED_RUN = {
    (R.PLANNED, RE.APPROVE): R.APPROVED,
    (R.PLANNED, RE.CANCEL): R.CANCELLED,
    (R.APPROVED, RE.START): R.EXECUTING,
    (R.APPROVED, RE.CANCEL): R.CANCELLING,
    (R.APPROVED, RE.FAIL): R.FAILED,
    (R.EXECUTING, RE.ALL_READY): R.READY_TO_SHIP,
    (R.EXECUTING, RE.CANCEL): R.CANCELLING,
    (R.EXECUTING, RE.FAIL): R.FAILED,
    (R.READY_TO_SHIP, RE.SHIP): R.SHIPPING,
    (R.READY_TO_SHIP, RE.NOT_READY): R.EXECUTING,
    (R.READY_TO_SHIP, RE.CANCEL): R.CANCELLING,
    (R.SHIPPING, RE.SHIPPED): R.SHIPPED,
    (R.SHIPPING, RE.SHIP_FAILED): R.SHIP_FAILED,
    (R.SHIP_FAILED, RE.SHIP): R.SHIPPING,
    (R.SHIP_FAILED, RE.CANCEL): R.CANCELLING,
    (R.CANCELLING, RE.RELEASED): R.CANCELLED,
}

_WITH_PR = (T.PR_OPEN, T.CHECKS_PENDING, T.CHECKS_PASSED, T.CHECKS_FAILED)
EXPECTED_TASK = {
    (T.PENDING, TE.DISPATCH): T.DISPATCHED,
    (T.PENDING, TE.PR_OPENED): T.PR_OPEN,
    (T.PENDING, TE.FAIL): T.FAILED,
    (T.PENDING, TE.SKIP): T.SKIPPED,
    (T.DISPATCHED, TE.PR_OPENED): T.PR_OPEN,
    (T.DISPATCHED, TE.FAIL): T.FAILED,
    (T.DISPATCHED, TE.SKIP): T.SKIPPED,
    (T.DISPATCHED, TE.STALE): T.STALE,
    (T.PR_OPEN, TE.STALE): T.STALE,
    (T.CHECKS_PENDING, TE.STALE): T.STALE,
    # a stale task still takes the news it waited for, or fails, or is retried
    (T.STALE, TE.PR_OPENED): T.PR_OPEN,
    (T.STALE, TE.FAIL): T.FAILED,
    (T.STALE, TE.SKIP): T.SKIPPED,
    (T.STALE, TE.RETRY): T.PENDING,
    (T.STALE, TE.PR_CLOSED): T.DISPATCHED,
    (T.STALE, TE.CHECKS_STARTED): T.CHECKS_PENDING,
    (T.STALE, TE.CHECKS_PASSED): T.CHECKS_PASSED,
    (T.STALE, TE.CHECKS_FAILED): T.CHECKS_FAILED,
    (T.STALE, TE.MERGED): T.MERGED,
    (T.FAILED, TE.RETRY): T.PENDING,
    **{(s, TE.PR_CLOSED): T.DISPATCHED for s in _WITH_PR},
    **{(s, TE.CHECKS_STARTED): T.CHECKS_PENDING for s in _WITH_PR},
    **{(s, TE.CHECKS_PASSED): T.CHECKS_PASSED for s in _WITH_PR},
    **{(s, TE.CHECKS_FAILED): T.CHECKS_FAILED for s in _WITH_PR},
    **{(s, TE.MERGED): T.MERGED for s in _WITH_PR},
    **{(s, TE.SKIP): T.SKIPPED for s in _WITH_PR},
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(RunState, RunEvent)))
def test_every_run_state_event_pair(state: RunState, event: RunEvent) -> None:
    expected = EXPECTED_RUN.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition) as raised:
            next_run_state(state, event)
        assert raised.value.state == state.value
        assert raised.value.event == event.value
    else:
        assert next_run_state(state, event) is expected


@pytest.mark.parametrize(("state", "event"), list(itertools.product(TaskState, TaskEvent)))
def test_every_task_state_event_pair(state: TaskState, event: TaskEvent) -> None:
    expected = EXPECTED_TASK.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition):
            next_task_state(state, event)
    else:
        assert next_task_state(state, event) is expected


def test_terminal_states() -> None:
    assert {R.SHIPPED, R.CANCELLED, R.FAILED} == RUN_TERMINAL
    assert {T.MERGED, T.SKIPPED, T.FAILED} == TASK_TERMINAL
    assert not run_is_active(R.SHIPPED)
    assert run_is_active(R.SHIP_FAILED)


def test_every_non_terminal_run_state_has_a_way_out() -> None:
    """From every active state some sequence of events reaches a terminal state."""
    for start in RunState:
        seen, frontier = {start}, [start]
        while frontier:
            state = frontier.pop()
            for (source, _), target in EXPECTED_RUN.items():
                if source == state and target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert seen & RUN_TERMINAL, f"{start} can never end"


def test_cancel_reaches_cancelled_from_every_state_but_shipping() -> None:
    """A cancel of a shipping run waits for the attempt: ship_failed, then cancel."""
    for state in RunState:
        if state in RUN_TERMINAL or state is R.CANCELLING:
            continue
        if state is R.SHIPPING:
            with pytest.raises(IllegalTransition):
                next_run_state(state, RE.CANCEL)
            after = next_run_state(next_run_state(state, RE.SHIP_FAILED), RE.CANCEL)
        else:
            after = next_run_state(state, RE.CANCEL)
        if after is not R.CANCELLED:
            assert next_run_state(after, RE.RELEASED) is R.CANCELLED


def test_every_state_is_reachable_from_the_initial_state() -> None:
    for initial, expected in ((R.PLANNED, EXPECTED_RUN), (T.PENDING, EXPECTED_TASK)):
        seen, frontier = {initial}, [initial]
        while frontier:
            state = frontier.pop()
            for (source, _), target in expected.items():
                if source == state and target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert seen == set(type(initial))


def test_committed_diagram_is_generated_from_the_table() -> None:
    committed = Path(__file__).parents[2] / "docs" / "state-machine.md"
    assert committed.read_text() == mermaid_diagram() + "\n", (
        "docs/state-machine.md is stale: run `make diagram` and commit it"
    )


D, DE = DeployState, DeployEvent
EXPECTED_DEPLOY = {
    (D.PENDING, DE.DISPATCHED): D.DISPATCHED,
    (D.PENDING, DE.STARTED): D.RUNNING,  # the run's webhook beat the dispatch job's save
    (D.PENDING, DE.SUCCEEDED): D.DEPLOYED,
    (D.PENDING, DE.FAILED): D.FAILED,
    (D.DISPATCHED, DE.STARTED): D.RUNNING,
    (D.DISPATCHED, DE.SUCCEEDED): D.DEPLOYED,
    (D.DISPATCHED, DE.FAILED): D.FAILED,
    (D.RUNNING, DE.SUCCEEDED): D.DEPLOYED,
    (D.RUNNING, DE.FAILED): D.FAILED,
    (D.DEPLOYED, DE.REDEPLOY): D.PENDING,
    (D.FAILED, DE.REDEPLOY): D.PENDING,
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(DeployState, DeployEvent)))
def test_every_deploy_state_event_pair(state: DeployState, event: DeployEvent) -> None:
    expected = EXPECTED_DEPLOY.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition) as raised:
            next_deploy_state(state, event)
        assert raised.value.kind == "deployment"
    else:
        assert next_deploy_state(state, event) is expected


def test_a_deployment_always_reaches_an_outcome_and_never_leaves_the_run_shipped() -> None:
    """From every deployment state an outcome is reachable, and only redeploy leaves one."""
    for start in DeployState:
        reachable = {t for (s, _), t in EXPECTED_DEPLOY.items() if s == start} | {start}
        assert reachable & DEPLOY_DONE or start in DEPLOY_DONE
    for done in DEPLOY_DONE:
        assert {e for (s, e) in EXPECTED_DEPLOY if s == done} == {DE.REDEPLOY}
    assert R.SHIPPED in RUN_TERMINAL  # the deployment is a field of a shipped run
