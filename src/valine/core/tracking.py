"""Domain events -> task changes: how GitHub's news moves a run forward.

Pure functions over a :mod:`valine.core.events` event and the current run; the
webhook's and the reconcile's news arrive as the same events. GitHub does not promise
order or exactly-once delivery, so the mapping is written to be harmless when repeated
or late: a change that no longer fits the task's state is dropped by
:func:`apply_changes` (the state table refuses it) instead of failing the delivery.

Each kind of event has one rule, registered in :data:`RULES` beside it
(:func:`rule`); :func:`changes_for` looks the event's rule up.

A pull request claims one of the run's tasks, in order, by a branch named
``valine/<run_id>/<issue>``, by GitHub's closing keywords in its body (``Fixes #12``),
or by a body that mentions the run id and ``#<issue>``; and only when it is trusted
(:func:`distrust`). Matching is linear in the body's length.

Check results are not taken from the event: a check event names the pull requests whose
whole picture must be re-read (:func:`check_targets`), and :func:`check_changes` turns
the pictures into task changes with the one rule of :mod:`valine.core.checks`.

A pull request that leaves the merge queue unmerged (a ``PullRequestDequeued``, or a
failing check suite of its merge group) is marked ``dequeued`` with the reason, which
ends the ship attempt (:func:`dequeued`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from valine.core.checks import CheckPicture, Outcome, verdict
from valine.core.errors import IllegalTransition
from valine.core.events import (
    CheckEvent,
    CheckSuiteCompleted,
    GitHubEvent,
    IssueChanged,
    IssueClosed,
    IssueEvent,
    IssueUnlabelled,
    MergeGroupChecked,
    PullRequestClosed,
    PullRequestDequeued,
    PullRequestMerged,
    PullRequestOpened,
    PullRequestPushed,
)
from valine.core.models import Run, Task, apply_run_event, apply_task_event
from valine.core.policy import Labels
from valine.core.states import (
    TASK_TERMINAL,
    TASK_WITH_PR,
    RunEvent,
    RunState,
    StampedStep,
    Step,
    TaskEvent,
    TaskState,
    derived_run_event,
)

# Possessive quantifiers (Python 3.11): no run of whitespace, word characters or digits
# is ever scanned twice, so matching is linear in the body (the old ``\s*:?\s+``
# backtracked quadratically on whitespace runs).
_CLOSING = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?:\s++|\s*+:\s++)"
    r"(?:([\w.-]++/[\w.-]++))?#(\d++)\b",
    re.IGNORECASE,
)
_MENTION = re.compile(r"#(\d++)\b")
#: Longest issue number read from a body (GitHub's are far below; bounds ``int()``).
_MAX_DIGITS = 12
#: ``author_association`` values whose pull requests are trusted.
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
#: Notes kept per task about ignored pull requests.
MAX_NOTES = 5
_PASSING = frozenset({"success", "neutral", "skipped"})


@dataclass(frozen=True, slots=True)
class Change:
    """One thing that happened to one task: an event (or None) and fields to update.

    ``note`` is set when a pull request was ignored: the audit trail records it.
    """

    issue_number: int
    event: TaskEvent | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None


# -- which task a pull request claims, and whether it may -------------------------------


def claimed_issue(body: str, ref: str, run: Run) -> int | None:
    """The run's issue a pull request claims: branch first, then keyword, then mention.

    Linear in ``len(body)``: one pass of :data:`_CLOSING` and at most one of
    :data:`_MENTION`, neither of which backtracks over a run of characters.
    """
    tasks = {t.issue_number for t in run.tasks}
    prefix = f"valine/{run.run_id}/"
    rest = ref[len(prefix) :] if ref.startswith(prefix) else ""
    if rest.isascii() and rest.isdigit() and len(rest) <= _MAX_DIGITS and int(rest) in tasks:
        return int(rest)
    for match in _CLOSING.finditer(body):
        repo, digits = match.group(1), match.group(2)
        if len(digits) > _MAX_DIGITS or int(digits) not in tasks:
            continue
        if not repo or repo.lower() == run.repo.lower():
            return int(digits)
    if run.run_id in body:
        for match in _MENTION.finditer(body):
            digits = match.group(1)
            if len(digits) <= _MAX_DIGITS and int(digits) in tasks:
                return int(digits)
    return None


def distrust(pull: PullRequestOpened, repo: str, trusted_logins: frozenset[str]) -> str | None:
    """Why ``pull`` may not claim a task, or None when it may.

    Trusted: a head branch in ``repo`` itself (never a fork), and an author who is an
    ``OWNER``, ``MEMBER`` or ``COLLABORATOR``, a bot account, or one of
    ``trusted_logins`` (lower-case: the ``assign`` executor's assignee and
    ``[executor] pr_authors``).
    """
    if pull.head_repo is None:
        return "its head repository is gone"
    if pull.head_repo.lower() != repo.lower():
        return "from a fork"
    if pull.association in TRUSTED_ASSOCIATIONS or pull.author_type == "Bot":
        return None
    if pull.author is not None and pull.author.lower() in trusted_logins:
        return None
    association = (pull.association or "unknown").lower().replace("_", " ")
    return f"author is {association}, not a collaborator"


# -- events -> changes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule reads beside the event: the run, the labels, the trusted logins."""

    run: Run
    labels: Labels
    trusted_logins: frozenset[str] = frozenset()


Rule = Callable[[Any, Context], list["Change"]]
_R = TypeVar("_R", bound=Rule)
#: The rule of each kind of event (registered beside it with :func:`rule`).
RULES: dict[type, Rule] = {}


def rule(*kinds: type) -> Callable[[_R], _R]:
    """Register the decorated function as the rule of the events of ``kinds``."""

    def register(function: _R) -> _R:
        for kind in kinds:
            if kind in RULES:
                raise ValueError(f"{kind.__name__} already has a rule")
            RULES[kind] = function
        return function

    return register


def changes_for(
    event: GitHubEvent,
    run: Run,
    labels: Labels,
    trusted_logins: frozenset[str] = frozenset(),
) -> list[Change]:
    """The task changes one event means for ``run`` (often none).

    Check events mean none here: their news is read whole by the caller
    (:func:`check_targets`, :func:`check_changes`).
    """
    apply = RULES.get(type(event))
    return [] if apply is None else apply(event, Context(run, labels, trusted_logins))


def check_targets(event: CheckEvent, run: Run) -> tuple[int, ...]:
    """The pull requests of ``run`` whose checks a check event may have changed.

    A suite names its pull requests (of the suite's head); a commit status names only
    its commit, matched to the tasks whose head it is. Empty for checks of commits no
    task is on.
    """
    numbers = []
    for task in run.tasks:
        if task.state not in TASK_WITH_PR or task.pr_number is None or task.head_sha != event.sha:
            continue
        if not isinstance(event, CheckSuiteCompleted) or task.pr_number in event.pull_numbers:
            numbers.append(task.pr_number)
    return tuple(numbers)


#: Unclaimed check SHAs a run remembers.
MAX_UNCLAIMED = 16


def remember_unclaimed(run: Run, sha: str) -> Run | None:
    """``run`` remembering that checks concluded on ``sha`` before any task's PR was on it.

    None when there is nothing to remember: no task still waits for a pull request, or
    ``sha`` is already remembered.
    """
    # A task waiting for a PR, or one whose PR may get a new head (a push whose checks
    # beat its ``synchronize``): any task still in play.
    waiting = any(t.state not in TASK_TERMINAL for t in run.tasks)
    if not waiting or sha in run.unclaimed_checks:
        return None
    return replace(run, unclaimed_checks=(*run.unclaimed_checks, sha)[-MAX_UNCLAIMED:])


def claimed_late(run: Run, before: Run) -> tuple[int, ...]:
    """Pull requests linked, or pushed to, since ``before`` whose head already had a check event."""
    earlier = {t.issue_number: (t.pr_number, t.head_sha) for t in before.tasks}
    return tuple(
        t.pr_number
        for t in run.tasks
        if t.state in (TaskState.PR_OPEN, TaskState.CHECKS_PENDING)
        and t.pr_number
        and earlier.get(t.issue_number) != (t.pr_number, t.head_sha)
        and t.head_sha in run.unclaimed_checks
    )


def check_changes(
    run: Run, pictures: Sequence[CheckPicture], required: Sequence[str] | None = None
) -> list[Change]:
    """What fresh pictures of pull requests' checks mean for their tasks.

    A picture is of the pull request's current head: a head the task did not know yet
    (a push whose webhook was lost) becomes the task's head. Passed records the SHA the
    checks passed on (ship merges exactly that); failed and pending say why.
    """
    changes = []
    for picture in pictures:
        task = _task_by_pr(run, picture.pr_number)
        if task is None or task.state not in TASK_WITH_PR:
            continue
        result = verdict(picture, required)
        if (
            result.outcome is Outcome.PASSED
            and task.state is TaskState.CHECKS_PASSED
            and task.checks_sha == picture.head_sha
        ):
            continue  # still green where it was: it keeps what it says (a ship's reason)
        reason = result.reason
        if reason is not None and task.head_sha and picture.head_sha != task.head_sha:
            reason = f"head moved to {picture.head_sha[:7]}; {reason}"
        fields: dict[str, Any] = {"head_sha": picture.head_sha, "reason": reason}
        if result.outcome is Outcome.PASSED:
            event, fields["checks_sha"] = TaskEvent.CHECKS_PASSED, picture.head_sha
        elif result.outcome is Outcome.FAILED:
            event, fields["checks_sha"] = TaskEvent.CHECKS_FAILED, picture.head_sha
        elif picture.head_sha == task.head_sha and (
            task.state is TaskState.STALE
            or (task.state is TaskState.PR_OPEN and not picture.checks)
        ):
            # Still waiting, as the task already says (no check yet; or stale): keep
            # its state, reason and the time it entered it (liveness counts from it).
            continue
        else:
            event, fields["checks_sha"] = TaskEvent.CHECKS_STARTED, None
        changes.append(Change(task.issue_number, event, fields))
    return changes


def _task_by_pr(run: Run, number: int) -> Task | None:
    return next((t for t in run.tasks if t.pr_number == number), None)


def dequeued(task: Task, why: str) -> list[Change]:
    """The task's pull request left the merge queue unmerged: it waits for a new attempt."""
    if Step.QUEUED not in task.steps_done or task.state is TaskState.MERGED:
        return []  # not queued by this ship attempt (or already merged): nothing to undo
    steps = (*(s for s in task.steps_done if s != Step.QUEUED), Step.DEQUEUED)
    reason = f"PR #{task.pr_number} left the merge queue: {why}"
    return [Change(task.issue_number, None, {"steps_done": steps, "reason": reason})]


def queued_since(task: Task) -> float | None:
    """When the task's pull request joined the merge queue in this ship attempt, if it did."""
    if Step.QUEUED not in task.steps_done:
        return None
    times = StampedStep.QUEUED_AT.times(task.steps_done)
    return max(times, default=None)


def left_queue(run: Run, pictures: Sequence[CheckPicture], before: Run) -> list[Change]:
    """Pull requests a read found neither in their merge queue nor merged: ejected.

    GitHub reports an ejection by the ``dequeued`` webhook; the reconcile, which reads
    ``mergeQueueEntry``, sees one whose webhook was lost, and it means the same
    (:func:`dequeued`). Only a pull request queued before the read counts: ``before``
    is the run as it was read before the pictures, and its queue time must still be
    the task's (a PR queued again since was not in the picture's queue yet).
    """
    changes = []
    for picture in pictures:
        task = _task_by_pr(run, picture.pr_number)
        if task is None or picture.in_merge_queue is not False or picture.merged:
            continue
        earlier = _task_by_pr(before, picture.pr_number)
        since = queued_since(task)
        if since is None or earlier is None or queued_since(earlier) != since:
            continue
        why = "it is no longer in the queue and was not merged (no dequeued webhook came)"
        changes += dequeued(task, why)
    return changes


@rule(MergeGroupChecked)
def _merge_group_checked(suite: MergeGroupChecked, context: Context) -> list[Change]:
    """A failing check suite of a merge group: its pull request is leaving the queue."""
    if suite.conclusion is None or suite.conclusion in _PASSING:
        return []
    task = _task_by_pr(context.run, suite.pr_number)
    if task is None:
        return []
    return dequeued(task, f"merge group checks concluded {suite.conclusion}")


@rule(PullRequestDequeued)
def _pr_dequeued(pull: PullRequestDequeued, context: Context) -> list[Change]:
    task = _task_by_pr(context.run, pull.number)
    return [] if task is None else dequeued(task, pull.reason or "no reason")


@rule(PullRequestOpened)
def _pr_opened(pull: PullRequestOpened, context: Context) -> list[Change]:
    run = context.run
    if _task_by_pr(run, pull.number) is not None:
        return []  # linked already: an edit or a reopen is no news
    issue = claimed_issue(pull.body, pull.head_ref, run)
    if issue is None:
        return []
    why = distrust(pull, run.repo, context.trusted_logins)
    if why is not None:
        task = run.task(issue)
        note = f"PR #{pull.number} by {pull.author or 'someone'} ignored: {why}"
        if note in task.notes or task.state in TASK_TERMINAL:
            return []
        return [Change(issue, None, {"notes": (*task.notes, note)[-MAX_NOTES:]}, note=note)]
    fields = {"pr_number": pull.number, "head_sha": pull.head_sha, "checks_sha": None}
    return [Change(issue, TaskEvent.PR_OPENED, fields)]


@rule(PullRequestPushed)
def _pr_pushed(pull: PullRequestPushed, context: Context) -> list[Change]:
    task = _task_by_pr(context.run, pull.number)
    if task is None or pull.head_sha == task.head_sha:
        return []  # not ours, or a head already known (a checks read saw it first)
    fields = {"head_sha": pull.head_sha, "checks_sha": None, "reason": None}
    return [Change(task.issue_number, TaskEvent.CHECKS_STARTED, fields)]


@rule(PullRequestMerged)
def _pr_merged(pull: PullRequestMerged, context: Context) -> list[Change]:
    task = _task_by_pr(context.run, pull.number)
    return [] if task is None else [Change(task.issue_number, TaskEvent.MERGED, {"reason": None})]


@rule(PullRequestClosed)
def _pr_closed(pull: PullRequestClosed, context: Context) -> list[Change]:
    task = _task_by_pr(context.run, pull.number)
    if task is None:
        return []
    reason = f"PR #{task.pr_number} was closed without merging"
    fields = {"pr_number": None, "head_sha": None, "checks_sha": None, "reason": reason}
    return [Change(task.issue_number, TaskEvent.PR_CLOSED, fields)]


@rule(IssueChanged, IssueClosed, IssueUnlabelled)
def _issue(issue: IssueEvent, context: Context) -> list[Change]:
    run, labels = context.run, context.labels
    task = next((t for t in run.tasks if t.issue_number == issue.number), None)
    if task is None:
        return []
    changes = [Change(issue.number, None, {"labels": issue.labels})]
    if task.state in TASK_TERMINAL or run.state in (RunState.SHIPPING, RunState.SHIPPED):
        return changes  # our own ship closes and relabels issues: not a person's doing
    if isinstance(issue, IssueClosed):
        why = f"issue closed by {issue.by or 'someone'}"
        changes.append(Change(issue.number, TaskEvent.SKIP, {"reason": why}))
    elif isinstance(issue, IssueUnlabelled) and issue.label == labels.in_progress:
        why = f"{labels.in_progress} label removed by {issue.by or 'someone'}"
        changes.append(Change(issue.number, TaskEvent.SKIP, {"reason": why}))
    return changes


def apply_changes(run: Run, changes: Sequence[Change], now: float) -> Run:
    """``run`` after ``changes``; changes the state table refuses are dropped."""
    for change in changes:
        if change.event is None:
            tasks = tuple(
                replace(t, **change.fields) if t.issue_number == change.issue_number else t
                for t in run.tasks
            )
            run = replace(run, tasks=tasks)
            continue
        try:
            run = apply_task_event(run, change.issue_number, change.event, now, **change.fields)
        except IllegalTransition:
            continue  # late, repeated or out-of-order delivery: nothing to do
    return run


def settle(run: Run, now: float, fail_run_on_task_failure: bool) -> Run:
    """Apply the run-level transitions its tasks' states call for (``derived_run_event``)
    until none does: a ready run whose last green task was skipped goes back to executing
    and, nothing being left to ship, fails -- in one save, not at some later event."""
    for _ in range(len(RunState)):  # each step leaves a state; no cycle is derivable
        derived = derived_run_event(
            run.state, [t.state for t in run.tasks], fail_run_on_task_failure
        )
        if derived is None:
            return run
        run = _apply_derived(run, derived, now)
    raise RuntimeError(f"run {run.run_id}: the derived transitions do not settle")


def _apply_derived(run: Run, derived: tuple[RunEvent, str | None], now: float) -> Run:
    """One derived run event, a failure with its reason and end time."""
    event, reason = derived
    if event is RunEvent.FAIL:
        if reason is None:
            failed = [t.issue_number for t in run.tasks if t.state is TaskState.FAILED]
            reason = f"task(s) {failed} failed"
        return apply_run_event(run, event, now, reason=reason, finished_at=now)
    return apply_run_event(run, event, now)
