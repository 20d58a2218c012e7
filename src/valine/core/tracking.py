"""Webhook payloads -> task events: how GitHub activity moves a run forward.

Pure functions over the decoded payload and the current run. GitHub does not promise
order or exactly-once delivery, so the mapping is written to be harmless when repeated
or late: an event that no longer fits the task's state is dropped by
:func:`apply_changes` (the state table refuses it) instead of failing the delivery.

Every field is type-checked before use (:func:`read`): a payload whose fields have the
wrong type is :class:`Malformed`, naming the first bad field, and changes nothing.

A pull request claims one of the run's tasks, in order, by a branch named
``valine/<run_id>/<issue>``, by GitHub's closing keywords in its body (``Fixes #12``),
or by a body that mentions the run id and ``#<issue>``; and only when it is trusted
(:func:`distrust`). Matching is linear in the body's length.

Check results are not taken from the event: a check event names the pull requests whose
whole picture must be re-read (:func:`check_targets`), and :func:`check_changes` turns
the pictures into task changes with the one rule of :mod:`valine.core.checks`.

A pull request that leaves the merge queue unmerged (``pull_request`` ``dequeued``, or a
failing check suite of its merge group) is marked ``dequeued`` with the reason, which
ends the ship attempt (:func:`dequeued`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from valine.core.checks import CheckPicture, Outcome, verdict
from valine.core.errors import IllegalTransition
from valine.core.models import Run, Task, WorkflowRun, apply_run_event, apply_task_event
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
#: The branch GitHub tests a merge group on: ``gh-readonly-queue/<base>/pr-<number>-<sha>``.
_MERGE_GROUP_REF = re.compile(r"^(?:refs/heads/)?gh-readonly-queue/.+/pr-(\d+)-[0-9a-f]{7,40}$")
_PASSING = frozenset({"success", "neutral", "skipped"})
#: Events whose news is "the checks of a commit changed": re-read the whole picture.
CHECK_EVENTS = frozenset({"check_suite", "status"})


@dataclass(frozen=True, slots=True)
class Change:
    """One thing that happened to one task: an event (or None) and fields to update.

    ``note`` is set when a pull request was ignored: the audit trail records it.
    """

    issue_number: int
    event: TaskEvent | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None


# -- typed reading of a payload ------------------------------------------------------


class Malformed(ValueError):
    """A payload field has the wrong type; ``field`` is its dotted path."""

    def __init__(self, path: str, expected: str) -> None:
        super().__init__(f"{path}: expected {expected}")
        self.field = path
        self.expected = expected


@dataclass(frozen=True, slots=True)
class PullEvent:
    """The fields of a ``pull_request`` delivery tracking uses."""

    action: str
    number: int
    body: str
    merged: bool
    head_ref: str
    head_sha: str
    head_repo: str | None
    author: str | None
    author_type: str | None
    association: str | None
    #: Why a ``dequeued`` pull request left the merge queue.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CheckEvent:
    """A ``check_suite`` or ``status`` delivery: which commit, which pull requests.

    ``head_branch`` and ``conclusion`` are a suite's (a merge group's suite is judged
    from its payload: its commit is no pull request's head).
    """

    action: str
    sha: str
    pull_numbers: tuple[int, ...]
    head_branch: str | None = None
    conclusion: str | None = None


@dataclass(frozen=True, slots=True)
class IssueEvent:
    """The fields of an ``issues`` delivery tracking uses."""

    action: str
    number: int
    labels: tuple[str, ...]
    label: str | None
    sender: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery read and type-checked: its repository and what tracking needs."""

    event: str
    repo: str
    detail: PullEvent | CheckEvent | IssueEvent | WorkflowRun | None


def _obj(document: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> Any:
    value = document.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise Malformed(path, "an object")
    return value


def _str(document: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> Any:
    value = document.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise Malformed(path, "a string")
    return value


def _int(document: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> Any:
    value = document.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**53:
        raise Malformed(path, "a positive integer")
    return value


def _bool(document: Mapping[str, Any], key: str, path: str) -> bool:
    value = document.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Malformed(path, "a boolean")
    return value


def _list(document: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(path, "a list")
    return value


def read(event: str, payload: Any) -> Delivery:
    """The typed fields of one delivery; raises :class:`Malformed` naming the bad field."""
    if not isinstance(payload, Mapping):
        raise Malformed("(body)", "an object")
    repo = _str(_obj(payload, "repository", "repository"), "full_name", "repository.full_name")
    detail: PullEvent | CheckEvent | IssueEvent | WorkflowRun | None = None
    if event == "pull_request":
        detail = _read_pull(payload)
    elif event == "check_suite":
        detail = _read_suite(payload)
    elif event == "status":
        detail = CheckEvent("", _str(payload, "sha", "sha"), ())
    elif event == "issues":
        detail = _read_issue(payload)
    elif event == "workflow_run":
        detail = _read_workflow_run(payload)
    return Delivery(event, repo, detail)


def _read_workflow_run(payload: Mapping[str, Any]) -> WorkflowRun:
    """A ``workflow_run`` delivery (``requested``, ``in_progress``, ``completed``)."""
    action = _str(payload, "action", "action")
    run = _obj(payload, "workflow_run", "workflow_run")
    workflow = _obj(payload, "workflow", "workflow", optional=True) or {}
    created = _str(run, "created_at", "workflow_run.created_at", optional=True)
    try:
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        created_at = 0.0
    status = _str(run, "status", "workflow_run.status", optional=True) or action
    return WorkflowRun(
        id=_int(run, "id", "workflow_run.id"),
        status="completed" if action == "completed" else status,
        conclusion=_str(run, "conclusion", "workflow_run.conclusion", optional=True),
        url=_str(run, "html_url", "workflow_run.html_url", optional=True) or "",
        event=_str(run, "event", "workflow_run.event", optional=True) or "",
        head_branch=_str(run, "head_branch", "workflow_run.head_branch", optional=True) or "",
        created_at=created_at,
        display_title=_str(run, "display_title", "workflow_run.display_title", optional=True) or "",
        workflow=_str(workflow, "path", "workflow.path", optional=True)
        or _str(run, "path", "workflow_run.path", optional=True)
        or "",
    )


def _read_pull(payload: Mapping[str, Any]) -> PullEvent:
    action = _str(payload, "action", "action")
    pull = _obj(payload, "pull_request", "pull_request")
    head = _obj(pull, "head", "pull_request.head")
    head_repo = _obj(head, "repo", "pull_request.head.repo", optional=True)
    user = _obj(pull, "user", "pull_request.user", optional=True) or {}
    return PullEvent(
        action=action,
        number=_int(pull, "number", "pull_request.number"),
        body=_str(pull, "body", "pull_request.body", optional=True) or "",
        merged=_bool(pull, "merged", "pull_request.merged"),
        head_ref=_str(head, "ref", "pull_request.head.ref"),
        head_sha=_str(head, "sha", "pull_request.head.sha"),
        head_repo=None
        if head_repo is None
        else _str(head_repo, "full_name", "pull_request.head.repo.full_name"),
        author=_str(user, "login", "pull_request.user.login", optional=True),
        author_type=_str(user, "type", "pull_request.user.type", optional=True),
        association=_str(
            pull, "author_association", "pull_request.author_association", optional=True
        ),
        reason=_str(payload, "reason", "reason", optional=True),
    )


def _read_suite(payload: Mapping[str, Any]) -> CheckEvent:
    action = _str(payload, "action", "action")
    suite = _obj(payload, "check_suite", "check_suite")
    numbers = []
    for i, pull in enumerate(_list(suite, "pull_requests", "check_suite.pull_requests")):
        path = f"check_suite.pull_requests[{i}]"
        if not isinstance(pull, Mapping):
            raise Malformed(path, "an object")
        numbers.append(_int(pull, "number", f"{path}.number"))
    return CheckEvent(
        action,
        _str(suite, "head_sha", "check_suite.head_sha"),
        tuple(numbers),
        head_branch=_str(suite, "head_branch", "check_suite.head_branch", optional=True),
        conclusion=_str(suite, "conclusion", "check_suite.conclusion", optional=True),
    )


def _read_issue(payload: Mapping[str, Any]) -> IssueEvent:
    action = _str(payload, "action", "action")
    issue = _obj(payload, "issue", "issue")
    labels = []
    for i, label in enumerate(_list(issue, "labels", "issue.labels")):
        if not isinstance(label, Mapping):
            raise Malformed(f"issue.labels[{i}]", "an object")
        labels.append(_str(label, "name", f"issue.labels[{i}].name"))
    label_obj = _obj(payload, "label", "label", optional=True)
    sender = _obj(payload, "sender", "sender", optional=True) or {}
    return IssueEvent(
        action=action,
        number=_int(issue, "number", "issue.number"),
        labels=tuple(labels),
        label=None if label_obj is None else _str(label_obj, "name", "label.name"),
        sender=_str(sender, "login", "sender.login", optional=True),
    )


def essentials(event: str, payload: Any) -> dict[str, Any]:
    """The part of a delivery that tracking reads, in the payload's own shape; never raises.

    A webhook body is often 10-25 KB; the few fields below are what :func:`changes_for`
    uses. Keeping only them is what the webhook endpoint stores, so a delivery costs a
    few hundred bytes in the queue, and the worker decodes no more than it needs. A
    payload with a field of the wrong type gives ``{"malformed": "<field>: expected
    ..."}`` (and its repository when that much is readable), which tracking ignores.
    """
    try:
        delivery = read(event, payload)
    except Malformed as bad:
        return {"malformed": str(bad), "repository": {"full_name": _safe_repo(payload)}}
    slim: dict[str, Any] = {"repository": {"full_name": delivery.repo}}
    detail = delivery.detail
    if isinstance(detail, PullEvent):
        slim["action"] = detail.action
        if detail.reason is not None:
            slim["reason"] = detail.reason  # "dequeued": why it left the queue
        slim["pull_request"] = {
            "number": detail.number,
            "body": detail.body,
            "merged": detail.merged,
            "author_association": detail.association,
            "user": {"login": detail.author, "type": detail.author_type},
            "head": {
                "ref": detail.head_ref,
                "sha": detail.head_sha,
                "repo": None if detail.head_repo is None else {"full_name": detail.head_repo},
            },
        }
    elif isinstance(detail, CheckEvent) and event == "status":
        slim["sha"] = detail.sha
    elif isinstance(detail, CheckEvent):
        slim["action"] = detail.action
        slim["check_suite"] = {
            "head_sha": detail.sha,
            "head_branch": detail.head_branch,
            "conclusion": detail.conclusion,
            "pull_requests": [{"number": n} for n in detail.pull_numbers],
        }
    elif isinstance(detail, WorkflowRun):
        slim["action"] = "completed" if detail.status == "completed" else detail.status
        slim["workflow"] = {"path": detail.workflow}
        slim["workflow_run"] = {
            "id": detail.id,
            "status": detail.status,
            "conclusion": detail.conclusion,
            "html_url": detail.url,
            "event": detail.event,
            "head_branch": detail.head_branch,
            "created_at": _iso(detail.created_at),
            "display_title": detail.display_title,
        }
    elif isinstance(detail, IssueEvent):
        slim["action"] = detail.action
        slim["sender"] = {"login": detail.sender}
        slim["issue"] = {"number": detail.number, "labels": [{"name": n} for n in detail.labels]}
        if detail.label is not None:
            slim["label"] = {"name": detail.label}
    elif isinstance(payload.get("action"), str):
        slim["action"] = payload["action"]
    return slim


def _iso(epoch: float) -> str | None:
    """The ISO 8601 UTC time of ``epoch`` (None for 0: unknown)."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe_repo(payload: Any) -> str | None:
    repo = payload.get("repository") if isinstance(payload, Mapping) else None
    name = repo.get("full_name") if isinstance(repo, Mapping) else None
    return name if isinstance(name, str) else None


def malformed(event: str, payload: Any) -> str | None:
    """Why ``payload`` cannot be used (the bad field), or None when it can."""
    if isinstance(payload, Mapping) and isinstance(payload.get("malformed"), str):
        return str(payload["malformed"])
    try:
        read(event, payload)
    except Malformed as bad:
        return str(bad)
    return None


# -- which task a pull request claims, and whether it may -------------------------------


def linked_issue(pull: Mapping[str, Any], run: Run) -> int | None:
    """The run's issue this pull request (``body`` and ``head.ref``) works on, or None."""
    body = pull.get("body")
    head = pull.get("head")
    ref = head.get("ref") if isinstance(head, Mapping) else None
    return claimed_issue(
        body if isinstance(body, str) else "", ref if isinstance(ref, str) else "", run
    )


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


def distrust(pull: PullEvent, repo: str, trusted_logins: frozenset[str]) -> str | None:
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


# -- deliveries -> changes -----------------------------------------------------------------


def changes_for(
    event: str,
    payload: Any,
    run: Run,
    labels: Labels,
    trusted_logins: frozenset[str] = frozenset(),
) -> list[Change]:
    """The task changes one webhook delivery means for ``run`` (often none); never raises.

    A malformed payload means none. Check events mean none here: their news is read
    whole by the caller (:func:`check_targets`, :func:`check_changes`).
    """
    try:
        delivery = read(event, payload)
    except Malformed:
        return []
    detail = delivery.detail
    if isinstance(detail, PullEvent):
        return _pull_request(detail, run, trusted_logins)
    if isinstance(detail, IssueEvent):
        return _issues(detail, run, labels)
    if isinstance(detail, CheckEvent) and event == "check_suite":
        return _merge_group_failed(detail, run)
    return []  # other check events, issue_comment and others: nothing from the payload


def check_targets(event: str, payload: Any, run: Run) -> tuple[int, ...]:
    """The pull requests of ``run`` whose checks a check event may have changed.

    A ``check_suite`` names its pull requests (of the suite's head); a ``status`` names
    only its commit, matched to the tasks whose head it is. Empty for anything else, a
    malformed payload, or checks of commits no task is on.
    """
    if event not in CHECK_EVENTS:
        return ()
    try:
        detail = read(event, payload).detail
    except Malformed:
        return ()
    if not isinstance(detail, CheckEvent):
        return ()
    if event == "check_suite" and (
        detail.action != "completed" or _MERGE_GROUP_REF.match(detail.head_branch or "")
    ):
        return ()  # a merge group's suite is judged from its payload (changes_for)
    numbers = []
    for task in run.tasks:
        if task.state not in TASK_WITH_PR or task.pr_number is None or task.head_sha != detail.sha:
            continue
        if event == "status" or task.pr_number in detail.pull_numbers:
            numbers.append(task.pr_number)
    return tuple(numbers)


def merge_group_suite(event: str, payload: Any) -> bool:
    """True for a ``check_suite`` of a merge group (judged from its payload alone)."""
    if event != "check_suite":
        return False
    try:
        detail = read(event, payload).detail
    except Malformed:
        return False
    return isinstance(detail, CheckEvent) and bool(_MERGE_GROUP_REF.match(detail.head_branch or ""))


def check_sha(event: str, payload: Any) -> str | None:
    """The commit a completed check event is about, or None (not one, or malformed)."""
    if event not in CHECK_EVENTS:
        return None
    try:
        detail = read(event, payload).detail
    except Malformed:
        return None
    if not isinstance(detail, CheckEvent):
        return None
    if event == "check_suite" and detail.action != "completed":
        return None
    return detail.sha


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


def _pull_request(pull: PullEvent, run: Run, trusted_logins: frozenset[str]) -> list[Change]:
    task = _task_by_pr(run, pull.number)
    if pull.action in ("opened", "reopened", "ready_for_review", "edited"):
        return _pr_opened(pull, run, trusted_logins) if task is None else []
    if pull.action == "dequeued":
        return [] if task is None else dequeued(task, pull.reason or "no reason")
    return [] if task is None else _pr_updated(pull, task)


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


def _merge_group_failed(suite: CheckEvent, run: Run) -> list[Change]:
    """A failing check suite of a merge group: its pull request is leaving the queue."""
    match = _MERGE_GROUP_REF.match(suite.head_branch or "")
    if suite.action != "completed" or match is None:
        return []
    if suite.conclusion is None or suite.conclusion in _PASSING:
        return []
    task = _task_by_pr(run, int(match.group(1)))
    if task is None:
        return []
    return dequeued(task, f"merge group checks concluded {suite.conclusion}")


def _pr_opened(pull: PullEvent, run: Run, trusted_logins: frozenset[str]) -> list[Change]:
    issue = claimed_issue(pull.body, pull.head_ref, run)
    if issue is None:
        return []
    why = distrust(pull, run.repo, trusted_logins)
    if why is not None:
        task = run.task(issue)
        note = f"PR #{pull.number} by {pull.author or 'someone'} ignored: {why}"
        if note in task.notes or task.state in TASK_TERMINAL:
            return []
        return [Change(issue, None, {"notes": (*task.notes, note)[-MAX_NOTES:]}, note=note)]
    fields = {"pr_number": pull.number, "head_sha": pull.head_sha, "checks_sha": None}
    return [Change(issue, TaskEvent.PR_OPENED, fields)]


def _pr_updated(pull: PullEvent, task: Task) -> list[Change]:
    if pull.action == "synchronize":
        if pull.head_sha == task.head_sha:
            return []  # a head already known (a checks read saw it first): no news
        fields = {"head_sha": pull.head_sha, "checks_sha": None, "reason": None}
        return [Change(task.issue_number, TaskEvent.CHECKS_STARTED, fields)]
    if pull.action != "closed":
        return []
    if pull.merged:
        return [Change(task.issue_number, TaskEvent.MERGED, {"reason": None})]
    reason = f"PR #{task.pr_number} was closed without merging"
    fields = {"pr_number": None, "head_sha": None, "checks_sha": None, "reason": reason}
    return [Change(task.issue_number, TaskEvent.PR_CLOSED, fields)]


def _issues(issue: IssueEvent, run: Run, labels: Labels) -> list[Change]:
    task = next((t for t in run.tasks if t.issue_number == issue.number), None)
    if task is None:
        return []
    changes = [Change(issue.number, None, {"labels": issue.labels})]
    if task.state in TASK_TERMINAL or run.state in (RunState.SHIPPING, RunState.SHIPPED):
        return changes  # our own ship closes and relabels issues: not a person's doing
    who = issue.sender or "someone"
    if issue.action == "closed":
        changes.append(Change(issue.number, TaskEvent.SKIP, {"reason": f"issue closed by {who}"}))
    elif issue.action == "unlabeled" and issue.label == labels.in_progress:
        reason = f"{labels.in_progress} label removed by {who}"
        changes.append(Change(issue.number, TaskEvent.SKIP, {"reason": reason}))
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
    """Apply the run-level transition its tasks' states call for (``derived_run_event``)."""
    derived = derived_run_event(run.state, [t.state for t in run.tasks], fail_run_on_task_failure)
    if derived is None:
        return run
    event, reason = derived
    if event is RunEvent.FAIL:
        if reason is None:
            failed = [t.issue_number for t in run.tasks if t.state is TaskState.FAILED]
            reason = f"task(s) {failed} failed"
        return apply_run_event(run, event, now, reason=reason, finished_at=now)
    return apply_run_event(run, event, now)
