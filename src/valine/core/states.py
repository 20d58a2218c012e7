"""Every state and every legal transition of runs and tasks, in one table each.

Theory of operation
-------------------
A *run* is one day's plan for one repository; it owns an ordered list of *tasks*, one per
GitHub issue. Both move through small state machines that are written down here as data,
the way h11 writes down HTTP/1.1: a mapping ``state -> {event -> next state}``. Nothing
else in the code assigns a state. Every change goes through :func:`next_run_state` or
:func:`next_task_state`, and an event the table does not list for the current state raises
:class:`~valine.core.errors.IllegalTransition` -- so an impossible sequence (shipping a run
that was never approved, merging a task whose checks are red) is refused in one place.

Run life cycle::

    planned -> approved -> executing -> ready_to_ship -> shipping -> shipped
       |          `-----------`-------------`----------------`-> ship_failed -> shipping
       |                      every non-terminal state but shipping: cancel
       `-> cancelled <-- released -- cancelling <-----------------'

* ``approve`` moves a planned run to ``approved``; ``start`` (every task handed to its
  executor) moves it to ``executing``.
* ``all_ready`` fires when every task is ``checks_passed`` or ``skipped``; ``not_ready``
  takes a ready run back to ``executing`` when a task regresses (a new push re-runs checks).
* ``ship`` starts merging; ``shipped`` or ``ship_failed`` is the outcome. A failed ship can
  be retried (``ship`` again) and then merges only what is left.
* ``cancel`` is the way out of every non-terminal state. A planned run has nothing on
  GitHub yet and goes straight to ``cancelled``; any later run goes to ``cancelling``,
  which still holds the repository's lock while the cancel job puts the issues back to
  ``ready``, and ``released`` then ends it. A run that is ``shipping`` is not cancelled
  mid-merge: the cancel is recorded on the run (``cancel_requested_by``) and the ship
  attempt, when it ends, fires ``ship_failed`` then ``cancel`` (or ``shipped`` if
  everything merged). Merged pull requests and their issues stay shipped.
* ``fail`` when a task failed and the repository's policy says the run fails with it,
  or when nothing is left to ship (every task skipped or failed).

Task life cycle: ``pending -> dispatched -> pr_open -> checks_pending -> checks_passed |
checks_failed -> merged``, plus ``skipped`` (a person closed or unlabelled the issue),
``failed`` (the executor could not be reached after retries) and ``stale`` (``stale``: no
pull request within ``[executor] pr_timeout`` of the dispatch, or checks that did not
conclude within ``[checks] timeout``). A stale task still accepts the news it was
waiting for (a late pull request or check result); ``retry`` (``/retry``, the Retry
button, or ``[policy] on_stale = "redispatch"``) takes a failed or stale task back to
``pending`` to be handed to its executor again. Webhooks can arrive out of
order and GitHub may skip intermediate signals, so the table also accepts the shortcuts
that really happen (checks concluding without a "requested" signal, a PR opened before
the dispatch job recorded its success).

Deployment of a shipped run (``[ship] deploy_workflow``): a run that ships with a deploy
workflow configured gets a deployment, ``pending -> dispatched -> running -> deployed |
failed``. It is a field of the shipped run, not a run state: the run stays ``shipped``
(a failed deployment does not undo the merges) and the repository's lock is released at
ship as before, so a new ``/plan`` may start while a deployment runs. The deployment is
dispatched once (claimed before it is sent); ``workflow_run`` webhooks and the reconcile
move it on (a run seen before the dispatch job recorded its success is accepted:
``started`` and ``succeeded`` from ``pending``); ``redeploy`` (``/deploy``) takes a
failed or finished deployment back to ``pending`` for one more dispatch.

The terminal run states (``RUN_TERMINAL``) have no outgoing events. The terminal task
states (``TASK_TERMINAL``: merged, skipped, failed) are those no news from GitHub moves
on; only a person's ``retry`` brings a failed task back. The
state diagram in ``docs/state-machine.md`` is generated from these tables by
:func:`mermaid_diagram`; a test fails when the committed copy is stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TypeVar

from valine.core.errors import IllegalTransition


class RunState(StrEnum):
    """Where a run is in its life cycle."""

    PLANNED = "planned"
    APPROVED = "approved"
    EXECUTING = "executing"
    READY_TO_SHIP = "ready_to_ship"
    SHIPPING = "shipping"
    SHIPPED = "shipped"
    SHIP_FAILED = "ship_failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"


class RunEvent(StrEnum):
    """What can happen to a run."""

    APPROVE = "approve"
    START = "start"
    ALL_READY = "all_ready"
    NOT_READY = "not_ready"
    SHIP = "ship"
    SHIPPED = "shipped"
    SHIP_FAILED = "ship_failed"
    CANCEL = "cancel"
    RELEASED = "released"
    FAIL = "fail"


class TaskState(StrEnum):
    """Where one task (one issue) is."""

    PENDING = "pending"
    DISPATCHED = "dispatched"
    PR_OPEN = "pr_open"
    CHECKS_PENDING = "checks_pending"
    CHECKS_PASSED = "checks_passed"
    CHECKS_FAILED = "checks_failed"
    MERGED = "merged"
    SKIPPED = "skipped"
    FAILED = "failed"
    STALE = "stale"


class TaskEvent(StrEnum):
    """What can happen to a task."""

    DISPATCH = "dispatch"
    PR_OPENED = "pr_opened"
    PR_CLOSED = "pr_closed"
    CHECKS_STARTED = "checks_started"
    CHECKS_PASSED = "checks_passed"
    CHECKS_FAILED = "checks_failed"
    MERGED = "merged"
    SKIP = "skip"
    FAIL = "fail"
    STALE = "stale"
    RETRY = "retry"


class DeployState(StrEnum):
    """Where the deployment of a shipped run is."""

    PENDING = "pending"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    DEPLOYED = "deployed"
    FAILED = "failed"


class DeployEvent(StrEnum):
    """What can happen to a deployment."""

    DISPATCHED = "dispatched"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REDEPLOY = "redeploy"


_R, _RE = RunState, RunEvent

RUN_TRANSITIONS: Mapping[RunState, Mapping[RunEvent, RunState]] = {
    _R.PLANNED: {_RE.APPROVE: _R.APPROVED, _RE.CANCEL: _R.CANCELLED},
    _R.APPROVED: {_RE.START: _R.EXECUTING, _RE.CANCEL: _R.CANCELLING, _RE.FAIL: _R.FAILED},
    _R.EXECUTING: {
        _RE.ALL_READY: _R.READY_TO_SHIP,
        _RE.CANCEL: _R.CANCELLING,
        _RE.FAIL: _R.FAILED,
    },
    _R.READY_TO_SHIP: {
        _RE.SHIP: _R.SHIPPING,
        _RE.NOT_READY: _R.EXECUTING,
        _RE.CANCEL: _R.CANCELLING,
    },
    _R.SHIPPING: {_RE.SHIPPED: _R.SHIPPED, _RE.SHIP_FAILED: _R.SHIP_FAILED},
    _R.SHIP_FAILED: {_RE.SHIP: _R.SHIPPING, _RE.CANCEL: _R.CANCELLING},
    _R.CANCELLING: {_RE.RELEASED: _R.CANCELLED},
    _R.SHIPPED: {},
    _R.CANCELLED: {},
    _R.FAILED: {},
}

_D, _DE = DeployState, DeployEvent
_DEPLOY_OUTCOMES = {_DE.SUCCEEDED: _D.DEPLOYED, _DE.FAILED: _D.FAILED}

DEPLOY_TRANSITIONS: Mapping[DeployState, Mapping[DeployEvent, DeployState]] = {
    _D.PENDING: {_DE.DISPATCHED: _D.DISPATCHED, _DE.STARTED: _D.RUNNING, **_DEPLOY_OUTCOMES},
    _D.DISPATCHED: {_DE.STARTED: _D.RUNNING, **_DEPLOY_OUTCOMES},
    _D.RUNNING: dict(_DEPLOY_OUTCOMES),
    _D.DEPLOYED: {_DE.REDEPLOY: _D.PENDING},
    _D.FAILED: {_DE.REDEPLOY: _D.PENDING},
}
#: Deployments that wait for nothing more (``/deploy`` starts another).
DEPLOY_DONE: frozenset[DeployState] = frozenset({DeployState.DEPLOYED, DeployState.FAILED})

_T, _TE = TaskState, TaskEvent
_WITH_PR = (_T.PR_OPEN, _T.CHECKS_PENDING, _T.CHECKS_PASSED, _T.CHECKS_FAILED)


def _task_row(state: TaskState) -> dict[TaskEvent, TaskState]:
    """The legal events of one task state that still waits for something."""
    row: dict[TaskEvent, TaskState] = {_TE.SKIP: _T.SKIPPED}
    if state in (_T.PENDING, _T.DISPATCHED, _T.STALE):
        row[_TE.PR_OPENED] = _T.PR_OPEN
        row[_TE.FAIL] = _T.FAILED
    if state is _T.PENDING:
        row[_TE.DISPATCH] = _T.DISPATCHED
    if state in (_T.DISPATCHED, _T.PR_OPEN, _T.CHECKS_PENDING):
        row[_TE.STALE] = _T.STALE  # no PR within pr_timeout, or checks past their timeout
    if state is _T.STALE:
        row[_TE.RETRY] = _T.PENDING  # hand it to the executor again
    if state in (*_WITH_PR, _T.STALE):
        row[_TE.PR_CLOSED] = _T.DISPATCHED  # closed unmerged: wait for another PR
        row[_TE.CHECKS_STARTED] = _T.CHECKS_PENDING  # includes a new push after red or green
        row[_TE.CHECKS_PASSED] = _T.CHECKS_PASSED
        row[_TE.CHECKS_FAILED] = _T.CHECKS_FAILED
        row[_TE.MERGED] = _T.MERGED  # merged by us at ship time, or by a person
    return row


TASK_TRANSITIONS: Mapping[TaskState, Mapping[TaskEvent, TaskState]] = {
    _T.PENDING: _task_row(_T.PENDING),
    _T.DISPATCHED: _task_row(_T.DISPATCHED),
    _T.PR_OPEN: _task_row(_T.PR_OPEN),
    _T.CHECKS_PENDING: _task_row(_T.CHECKS_PENDING),
    _T.CHECKS_PASSED: _task_row(_T.CHECKS_PASSED),
    _T.CHECKS_FAILED: _task_row(_T.CHECKS_FAILED),
    _T.STALE: _task_row(_T.STALE),
    _T.MERGED: {},
    _T.SKIPPED: {},
    _T.FAILED: {_TE.RETRY: _T.PENDING},  # only a person's retry brings it back
}

#: Task states with a linked pull request that is still open (stale ones included: a
#: pull request whose checks never concluded is still the task's).
TASK_WITH_PR: frozenset[TaskState] = frozenset((*_WITH_PR, TaskState.STALE))
RUN_TERMINAL: frozenset[RunState] = frozenset(s for s, row in RUN_TRANSITIONS.items() if not row)
#: Task states no news from GitHub moves on (a failed task only comes back by ``retry``).
TASK_TERMINAL: frozenset[TaskState] = frozenset(
    {TaskState.MERGED, TaskState.SKIPPED, TaskState.FAILED}
)
#: Run states ``/cancel`` accepts: every non-terminal one but ``cancelling`` (a shipping
#: run is cancelled when its ship attempt ends).
CANCELLABLE: frozenset[RunState] = frozenset(
    s for s in RunState if s not in RUN_TERMINAL and s is not RunState.CANCELLING
)
#: Task states a person may retry (``/retry``, the Retry button).
TASK_RETRYABLE: frozenset[TaskState] = frozenset({TaskState.FAILED, TaskState.STALE})
#: Task states a run can ship: green checks, or already merged (a person may merge).
TASK_SHIPPABLE: frozenset[TaskState] = frozenset({TaskState.CHECKS_PASSED, TaskState.MERGED})
#: Task states that wait for nothing more before shipping: shippable, or out of the run
#: (skipped by a person; failed, when the policy lets the run go on without it).
TASK_SETTLED: frozenset[TaskState] = TASK_SHIPPABLE | {TaskState.SKIPPED, TaskState.FAILED}


class Action(StrEnum):
    """What a person may do to a run (a command or a button)."""

    APPROVE = "approve"
    SHIP = "ship"
    CANCEL = "cancel"
    #: Hand one failed or stale task over again.
    RETRY = "retry"
    #: Dispatch a shipped run's deploy workflow again (its deployment not in flight).
    DEPLOY = "deploy"


#: The one guard table: the run states in which each action applies. Commands, buttons,
#: rendering and ``/help`` all ask :func:`allowed_actions` (or this table); a ``cancel``
#: of a shipping run is recorded and takes effect when the ship attempt ends.
ACTION_STATES: Mapping[Action, frozenset[RunState]] = {
    Action.APPROVE: frozenset({RunState.PLANNED}),
    Action.SHIP: frozenset({RunState.READY_TO_SHIP, RunState.SHIP_FAILED}),
    Action.CANCEL: CANCELLABLE,
    Action.RETRY: frozenset({RunState.EXECUTING, RunState.READY_TO_SHIP}),
    Action.DEPLOY: frozenset({RunState.SHIPPED}),
}


def allowed_actions(state: RunState) -> frozenset[Action]:
    """What may happen to a run in ``state`` now, by a person's hand."""
    return frozenset(action for action, states in ACTION_STATES.items() if state in states)


#: Actions only a command takes (``/deploy``): a message never offers them as a button.
COMMAND_ONLY: frozenset[Action] = frozenset({Action.DEPLOY})
#: Actions allowed in a state whose effect waits for something else, so no button
#: offers them there: a shipping run's cancel is recorded and takes effect when the
#: merges in flight end, and its message changes under the press.
NOT_OFFERED: Mapping[RunState, frozenset[Action]] = {RunState.SHIPPING: frozenset({Action.CANCEL})}


def offered_actions(state: RunState) -> frozenset[Action]:
    """The actions a run's messages offer as buttons in ``state``: the allowed ones
    (:func:`allowed_actions`), less the command-only ones and those not offered there."""
    return allowed_actions(state) - COMMAND_ONLY - NOT_OFFERED.get(state, frozenset())


def tasks_ready(tasks: Sequence[TaskState]) -> bool:
    """True when no task waits for anything and at least one can ship."""
    return all(t in TASK_SETTLED for t in tasks) and any(t in TASK_SHIPPABLE for t in tasks)


def nothing_to_ship(tasks: Sequence[TaskState]) -> bool:
    """True when every task left the run (skipped or failed)."""
    return bool(tasks) and all(t in (TaskState.SKIPPED, TaskState.FAILED) for t in tasks)


def derived_run_event(
    state: RunState, tasks: Sequence[TaskState], fail_on_task_failure: bool
) -> tuple[RunEvent, str | None] | None:
    """The run-level transition its tasks' states call for, with its reason, if any.

    An executing run fails when a task failed and the policy says the run fails with it,
    becomes ready when no task waits for anything and one can ship, and fails when
    nothing is left to ship; a ready run goes back to executing when a task regressed.
    """
    ready = tasks_ready(tasks)
    if state is RunState.EXECUTING:
        if fail_on_task_failure and TaskState.FAILED in tasks:
            return RunEvent.FAIL, None
        if ready:
            return RunEvent.ALL_READY, None
        if nothing_to_ship(tasks):
            return RunEvent.FAIL, "nothing left to ship: every task was skipped or failed"
    if state is RunState.READY_TO_SHIP and not ready:
        return RunEvent.NOT_READY, None
    return None


class Step(StrEnum):
    """A side effect on GitHub that a task records, once done, in ``Task.steps_done``.

    The jobs that cause them are retried and may run twice, so each one checks its step
    first and records it in the same conditional write that follows the effect.
    """

    #: The issue moved from the ready label to the in-progress label.
    LABELLED = "labelled"
    #: The start comment (with its hidden marker) is on the issue.
    COMMENTED = "commented"
    #: The relabel-and-comment mutation was sent; its answer may have been lost, so the
    #: next attempt reads the issue back instead of sending it again.
    RELABEL_SENT = "relabel_sent"
    #: The task was handed to its executor (the workflow dispatch was accepted).
    DISPATCHED = "dispatched"
    #: The pull request joined the merge queue (repositories that require one).
    QUEUED = "queued"
    #: The pull request left the merge queue during this ship attempt.
    DEQUEUED = "dequeued"
    #: The issue was relabelled shipped and closed after its merge.
    SHIPPED = "shipped"
    #: The issue was put back to ready (the run was cancelled or failed).
    RELEASED = "released"
    #: A failed run leaves the issue as it is: a newer run has it, or GitHub refused
    #: the relabel for good.
    NOT_RELEASED = "not-released"


class StampedStep(StrEnum):
    """A step recorded with a stamp, ``"<prefix><stamp>"``: the time it was taken (for a
    hand-over, the retry it belongs to).

    A claim is written before its side effect is sent (so a second attempt waits for the
    first instead of sending twice) and read back for its time (a claim older than the
    claim timeout belongs to an attempt that died).
    """

    #: A workflow dispatch is being sent.
    DISPATCH_CLAIM = "dispatch-claimed:"
    #: The relabelling of the issue is being sent.
    LABEL_CLAIM = "labelling:"
    #: When the pull request joined the merge queue.
    QUEUED_AT = "queued-at:"
    #: A label or assign executor was handed the task again (stamp: the retry number).
    HANDED_OVER = "handed-over:"

    def at(self, stamp: float) -> str:
        """The step recorded with ``stamp``."""
        return f"{self.value}{stamp}"

    def times(self, steps: tuple[str, ...]) -> list[float]:
        """The stamps of this step in ``steps`` (every record, in order)."""
        return [float(s[len(self.value) :]) for s in steps if s.startswith(self.value)]

    def recorded(self, steps: tuple[str, ...]) -> bool:
        """True if ``steps`` holds a record of this step."""
        return any(s.startswith(self.value) for s in steps)

    def without(self, steps: tuple[str, ...]) -> tuple[str, ...]:
        """``steps`` without any record of this step."""
        return tuple(s for s in steps if not s.startswith(self.value))


def next_run_state(state: RunState, event: RunEvent) -> RunState:
    """The state a run in ``state`` moves to on ``event``; raises IllegalTransition."""
    try:
        return RUN_TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition("run", state.value, event.value) from None


def next_task_state(state: TaskState, event: TaskEvent) -> TaskState:
    """The state a task in ``state`` moves to on ``event``; raises IllegalTransition."""
    try:
        return TASK_TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition("task", state.value, event.value) from None


def next_deploy_state(state: DeployState, event: DeployEvent) -> DeployState:
    """The state a deployment in ``state`` moves to on ``event``; raises IllegalTransition."""
    try:
        return DEPLOY_TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition("deployment", state.value, event.value) from None


def run_is_active(state: RunState) -> bool:
    """True while a run holds its repository's lock (every non-terminal state)."""
    return state not in RUN_TERMINAL


_DERIVED = (
    "`executing` --fail--> `failed`: a task failed and `[policy]` fails the run with it",
    "`executing` --all_ready--> `ready_to_ship`: no task waits for anything, one can ship",
    "`executing` --fail--> `failed`: nothing left to ship (every task skipped or failed)",
    "`ready_to_ship` --not_ready--> `executing`: a task regressed (a new push, red checks)",
)

_STEP_NOTES: Mapping[str, str] = {
    Step.LABELLED: "the issue moved from the ready to the in-progress label",
    Step.COMMENTED: "the start comment is on the issue",
    Step.RELABEL_SENT: "the relabel-and-comment mutation was sent (read back, never re-sent)",
    Step.DISPATCHED: "the task was handed to its executor",
    Step.QUEUED: "the pull request joined the merge queue",
    Step.DEQUEUED: "the pull request left the merge queue during this ship attempt",
    Step.SHIPPED: "the issue was relabelled shipped and closed",
    Step.RELEASED: "the issue was put back to ready (the run was cancelled or failed)",
    Step.NOT_RELEASED: "a failed run leaves the issue be (a newer run has it, or GitHub "
    "refused the relabel for good)",
    StampedStep.DISPATCH_CLAIM: "a workflow dispatch is being sent",
    StampedStep.LABEL_CLAIM: "the relabelling is being sent",
    StampedStep.QUEUED_AT: "when the pull request joined the merge queue",
    StampedStep.HANDED_OVER: "a label or assign executor was handed the task again (a retry)",
}

_S = TypeVar("_S", bound=StrEnum)
_E = TypeVar("_E", bound=StrEnum)


def _mermaid(
    title: str, table: Mapping[_S, Mapping[_E, _S]], initial: _S, terminal: frozenset[_S]
) -> list[str]:
    """Mermaid lines of one state table."""
    lines = [f"### {title}", "", "```mermaid", "stateDiagram-v2", f"    [*] --> {initial}"]
    for state, row in table.items():
        for event, target in row.items():
            lines.append(f"    {state} --> {target}: {event}")
        if state in terminal:
            lines.append(f"    {state} --> [*]")
    lines += ["```", ""]
    return lines


def mermaid_diagram() -> str:
    """The Markdown page of both state diagrams, generated from the tables above."""
    lines = [
        "# State machines",
        "",
        "Generated from `src/valine/core/states.py` by `make diagram`; do not edit by hand.",
        "",
    ]
    lines += _mermaid("Run", RUN_TRANSITIONS, RunState.PLANNED, RUN_TERMINAL)
    lines += ["### Run transitions its tasks call for (`derived_run_event`)", ""]
    lines += [f"- {line}" for line in _DERIVED]
    lines += ["", "### What a person may do to a run (`allowed_actions`)", ""]
    lines += ["| action | in the run states |", "|---|---|"]
    for action, states in ACTION_STATES.items():
        names = ", ".join(f"`{s}`" for s in RunState if s in states)
        lines.append(f"| `{action}` | {names} |")
    lines.append("")
    lines += _mermaid("Task", TASK_TRANSITIONS, TaskState.PENDING, TASK_TERMINAL)
    lines += ["### Task steps", "", "The side effects a task records once done (`steps_done`):", ""]
    lines += [f"- `{step}`: {_STEP_NOTES[step]}" for step in Step]
    lines += [
        "",
        "and the steps recorded with a stamp (`<step><time>`; a hand-over: its retry):",
        "",
    ]
    lines += [f"- `{step}`: {_STEP_NOTES[step]}" for step in StampedStep]
    lines.append("")
    lines += _mermaid(
        "Deployment (of a shipped run)", DEPLOY_TRANSITIONS, DeployState.PENDING, frozenset()
    )
    return "\n".join(lines)
