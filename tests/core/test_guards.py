"""The whole state machine's guards in core/states.py: derived run transitions and the
one "what may happen to this run now" query, used alike by buttons, /help and settle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valine.core.authz import Permissions
from valine.core.models import Run, Task
from valine.core.render import help_message, retryable, run_buttons
from valine.core.states import (
    ACTION_STATES,
    RUN_TRANSITIONS,
    Action,
    RunEvent,
    RunState,
    TaskState,
    allowed_actions,
    derived_run_event,
    next_run_state,
    offered_actions,
)
from valine.core.tracking import settle
from valine.usecases import ROUTER

T, R = TaskState, RunState
_EVENT_OF = {
    Action.APPROVE: RunEvent.APPROVE,
    Action.SHIP: RunEvent.SHIP,
    Action.CANCEL: RunEvent.CANCEL,
}


def _run(state: RunState, *tasks: TaskState) -> Run:
    made = tuple(
        Task(issue_number=i + 1, title=f"t{i}", node_id=f"I_{i}", state=s)
        for i, s in enumerate(tasks)
    )
    return Run("r20261125-abc123", "octo/widgets", 0.0, state=state, tasks=made, version=1)


@pytest.mark.parametrize("state", list(RunState))
def test_every_allowed_action_is_a_legal_transition(state: RunState) -> None:
    for action in allowed_actions(state):
        if action in (Action.RETRY, Action.DEPLOY):
            continue  # a task's event, a deployment's: not the run's
        if action is Action.CANCEL and state is R.SHIPPING:
            continue  # recorded; the ship attempt cancels when it ends
        assert next_run_state(state, _EVENT_OF[action]) in RunState
    for action, event in _EVENT_OF.items():
        if event in RUN_TRANSITIONS[state] and action not in allowed_actions(state):
            assert action is Action.CANCEL and state is R.CANCELLING


@pytest.mark.parametrize("state", list(RunState))
def test_buttons_offer_what_the_guard_allows(state: RunState) -> None:
    run = _run(state, T.FAILED, T.CHECKS_PASSED)
    ids = {button.action for row in run_buttons(run) for button in row}
    allowed = {a.value for a in allowed_actions(state)} - {"deploy"}  # a command only
    if state is R.SHIPPING:
        allowed.discard("cancel")  # no button while merging
    assert ids == allowed == {a.value for a in offered_actions(state)}
    assert bool(retryable(run)) == (Action.RETRY in allowed_actions(state))


def test_help_says_when_each_guarded_command_applies() -> None:
    offered = ROUTER.offered()
    text = help_message("octo/widgets", "workflow", "ready", Permissions(), offered)
    lines = text.cards[0].description.splitlines()
    ship = next(line for line in lines if line.startswith("`/ship`"))
    assert "For a run that is `ready_to_ship` or `ship_failed`." in ship
    for action, states in ACTION_STATES.items():
        line = next(line for line in lines if line.startswith(f"`/{action.value}`"))
        assert all(f"`{s.value}`" in line for s in states)


@pytest.mark.parametrize(
    ("state", "tasks", "fail_on_failure", "expected"),
    [
        (R.EXECUTING, (T.CHECKS_PASSED, T.SKIPPED), False, RunEvent.ALL_READY),
        (R.EXECUTING, (T.CHECKS_PASSED, T.CHECKS_PENDING), False, None),
        (R.EXECUTING, (T.CHECKS_PASSED, T.FAILED), False, RunEvent.ALL_READY),
        (R.EXECUTING, (T.CHECKS_PASSED, T.FAILED), True, RunEvent.FAIL),
        (R.EXECUTING, (T.SKIPPED, T.FAILED), False, RunEvent.FAIL),
        (R.READY_TO_SHIP, (T.CHECKS_PASSED, T.CHECKS_PENDING), False, RunEvent.NOT_READY),
        (R.READY_TO_SHIP, (T.CHECKS_PASSED, T.MERGED), False, None),
        (R.SHIPPING, (T.CHECKS_PENDING,), False, None),
    ],
)
def test_derived_run_events(
    state: RunState,
    tasks: tuple[TaskState, ...],
    fail_on_failure: bool,
    expected: RunEvent | None,
) -> None:
    derived = derived_run_event(state, tasks, fail_on_failure)
    assert (derived[0] if derived else None) is expected


@given(
    state=st.sampled_from(list(RunState)),
    tasks=st.lists(st.sampled_from(list(TaskState)), min_size=1, max_size=6),
    fail_on_failure=st.booleans(),
)
def test_a_derived_event_is_always_legal_and_settle_applies_it(
    state: RunState, tasks: list[TaskState], fail_on_failure: bool
) -> None:
    """Settle applies the derived event (a legal one), then any its result calls for,
    until none is left: a settled run calls for nothing more."""
    derived = derived_run_event(state, tasks, fail_on_failure)
    settled = settle(_run(state, *tasks), 5.0, fail_on_failure)
    assert derived_run_event(settled.state, tasks, fail_on_failure) is None
    if derived is None:
        assert settled.state is state
        return
    first = next_run_state(state, derived[0])
    following = derived_run_event(first, tasks, fail_on_failure)
    if following is None:
        assert settled.state is first
    else:  # a ready run whose last green task went: executing, then failed
        assert settled.state is next_run_state(first, following[0])
    if RunEvent.FAIL in (derived[0], following and following[0]):
        assert settled.reason
