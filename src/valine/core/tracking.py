"""Webhook payloads -> task events: how GitHub activity moves a run forward.

Pure functions over the decoded payload and the current run. GitHub does not promise
order or exactly-once delivery, so the mapping is written to be harmless when repeated
or late: an event that no longer fits the task's state is dropped by
:func:`apply_changes` (the state table refuses it) instead of failing the delivery.

A pull request that leaves the merge queue unmerged (``pull_request`` ``dequeued``, or a
failing check suite of its merge group) is marked ``dequeued`` with the reason, which
ends the ship attempt (:func:`dequeued`).

Pull requests are linked to tasks, in order, by GitHub's closing keywords in the PR body
(``Fixes #12``), by a branch named ``valine/<run_id>/<issue>``, or by a body that
mentions the run id and ``#<issue>`` of one of the run's tasks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from valine.core.errors import IllegalTransition
from valine.core.models import Run, Task, apply_run_event, apply_task_event
from valine.core.policy import Labels
from valine.core.states import TASK_TERMINAL, RunEvent, RunState, TaskEvent, TaskState

_CLOSING = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+(?:([\w.-]+/[\w.-]+))?#(\d+)\b",
    re.IGNORECASE,
)
_MENTION = re.compile(r"#(\d+)\b")
#: The branch GitHub tests a merge group on: ``gh-readonly-queue/<base>/pr-<number>-<sha>``.
_MERGE_GROUP_REF = re.compile(r"^(?:refs/heads/)?gh-readonly-queue/.+/pr-(\d+)-[0-9a-f]{7,40}$")
#: The step of a task whose pull request left the merge queue during this ship attempt.
DEQUEUED = "dequeued"
_PASSING = frozenset({"success", "neutral", "skipped"})
_WITH_PR = frozenset(
    {
        TaskState.PR_OPEN,
        TaskState.CHECKS_PENDING,
        TaskState.CHECKS_PASSED,
        TaskState.CHECKS_FAILED,
        TaskState.STALE,
    }
)


@dataclass(frozen=True, slots=True)
class Change:
    """One thing that happened to one task: an event (or None) and fields to update."""

    issue_number: int
    event: TaskEvent | None
    fields: Mapping[str, Any] = field(default_factory=dict)


def essentials(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a delivery that tracking reads, in the payload's own shape.

    A webhook body is often 10-25 KB; the few fields below are what :func:`changes_for`
    uses. Keeping only them is what the webhook endpoint stores, so a delivery costs a
    few hundred bytes in the queue, and the worker decodes no more than it needs.
    """
    slim: dict[str, Any] = {
        "action": payload.get("action"),
        "repository": {"full_name": _get(payload, "repository", "full_name")},
        "sender": {"login": _get(payload, "sender", "login")},
    }
    if event == "pull_request":
        pull = payload.get("pull_request") or {}
        slim["number"] = payload.get("number")
        if payload.get("reason"):
            slim["reason"] = payload.get("reason")  # "dequeued": why it left the queue
        slim["pull_request"] = {
            "number": pull.get("number"),
            "body": pull.get("body"),
            "merged": pull.get("merged"),
            "head": {"ref": _get(pull, "head", "ref"), "sha": _get(pull, "head", "sha")},
        }
    elif event == "check_suite":
        suite = payload.get("check_suite") or {}
        slim["check_suite"] = {
            "head_sha": suite.get("head_sha"),
            "head_branch": suite.get("head_branch"),
            "conclusion": suite.get("conclusion"),
            "pull_requests": [
                {"number": p.get("number")}
                for p in suite.get("pull_requests") or ()
                if isinstance(p, Mapping)
            ],
        }
    elif event == "issues":
        issue = payload.get("issue") or {}
        slim["issue"] = {
            "number": issue.get("number"),
            "labels": [
                {"name": label.get("name")}
                for label in issue.get("labels") or ()
                if isinstance(label, Mapping)
            ],
        }
        if payload.get("label"):
            slim["label"] = {"name": _get(payload, "label", "name")}
    return slim


def _get(document: Mapping[str, Any], key: str, field_name: str) -> Any:
    inner = document.get(key)
    return inner.get(field_name) if isinstance(inner, Mapping) else None


def linked_issue(pull: Mapping[str, Any], run: Run) -> int | None:
    """The run's issue this pull request works on, or None."""
    tasks = {t.issue_number for t in run.tasks}
    body = pull.get("body") or ""
    for repo, number in _CLOSING.findall(body):
        if int(number) in tasks and (not repo or repo.lower() == run.repo.lower()):
            return int(number)
    ref = ((pull.get("head") or {}).get("ref")) or ""
    prefix = f"valine/{run.run_id}/"
    if ref.startswith(prefix) and ref[len(prefix) :].isdigit():
        number = int(ref[len(prefix) :])
        if number in tasks:
            return number
    if run.run_id in body:
        for number in _MENTION.findall(body):
            if int(number) in tasks:
                return int(number)
    return None


def changes_for(event: str, payload: Mapping[str, Any], run: Run, labels: Labels) -> list[Change]:
    """The task changes one webhook delivery means for ``run`` (often none)."""
    if event == "pull_request":
        return _pull_request(payload, run)
    if event == "check_suite":
        return _check_suite(payload, run)
    if event == "issues":
        return _issues(payload, run, labels)
    return []  # issue_comment and others: routed, nothing to do yet


def _task_by_pr(run: Run, number: int) -> Task | None:
    return next((t for t in run.tasks if t.pr_number == number), None)


def _pull_request(payload: Mapping[str, Any], run: Run) -> list[Change]:
    pull = payload.get("pull_request") or {}
    number = int(pull.get("number") or payload.get("number") or 0)
    task = _task_by_pr(run, number)
    if payload.get("action") in ("opened", "reopened", "ready_for_review", "edited"):
        return _pr_opened(pull, number, run) if task is None else []
    if payload.get("action") == "dequeued":
        return [] if task is None else dequeued(task, str(payload.get("reason") or "no reason"))
    return [] if task is None else _pr_updated(payload, pull, task)


def dequeued(task: Task, why: str) -> list[Change]:
    """The task's pull request left the merge queue unmerged: it waits for a new attempt."""
    if "queued" not in task.steps_done or task.state is TaskState.MERGED:
        return []  # not queued by this ship attempt (or already merged): nothing to undo
    steps = (*(s for s in task.steps_done if s != "queued"), DEQUEUED)
    reason = f"PR #{task.pr_number} left the merge queue: {why}"
    return [Change(task.issue_number, None, {"steps_done": steps, "reason": reason})]


def _merge_group_failed(suite: Mapping[str, Any], run: Run) -> list[Change]:
    """A failing check suite of a merge group: its pull request is leaving the queue."""
    match = _MERGE_GROUP_REF.match(str(suite.get("head_branch") or ""))
    conclusion = suite.get("conclusion")
    if match is None or conclusion is None or conclusion in _PASSING:
        return []
    task = _task_by_pr(run, int(match.group(1)))
    if task is None:
        return []
    return dequeued(task, f"merge group checks concluded {conclusion}")


def _pr_opened(pull: Mapping[str, Any], number: int, run: Run) -> list[Change]:
    issue = linked_issue(pull, run)
    if issue is None:
        return []
    head_sha = (pull.get("head") or {}).get("sha")
    fields = {"pr_number": number, "head_sha": head_sha, "checks_sha": None}
    return [Change(issue, TaskEvent.PR_OPENED, fields)]


def _pr_updated(payload: Mapping[str, Any], pull: Mapping[str, Any], task: Task) -> list[Change]:
    action = payload.get("action")
    if action == "synchronize":
        head_sha = (pull.get("head") or {}).get("sha")
        fields = {"head_sha": head_sha, "checks_sha": None}
        return [Change(task.issue_number, TaskEvent.CHECKS_STARTED, fields)]
    if action != "closed":
        return []
    if pull.get("merged"):
        return [Change(task.issue_number, TaskEvent.MERGED, {"reason": None})]
    reason = f"PR #{task.pr_number} was closed without merging"
    fields = {"pr_number": None, "head_sha": None, "checks_sha": None, "reason": reason}
    return [Change(task.issue_number, TaskEvent.PR_CLOSED, fields)]


def _check_suite(payload: Mapping[str, Any], run: Run) -> list[Change]:
    suite = payload.get("check_suite") or {}
    if payload.get("action") == "completed" and _MERGE_GROUP_REF.match(
        str(suite.get("head_branch") or "")
    ):
        return _merge_group_failed(suite, run)
    sha = str(suite.get("head_sha") or "")
    action = payload.get("action")
    changes = []
    for pull in suite.get("pull_requests") or ():
        task = _task_by_pr(run, int(pull.get("number") or 0))
        if task is None or task.state not in _WITH_PR or sha != task.head_sha:
            continue  # not ours, or checks of a head that has moved on
        if action in ("requested", "rerequested"):
            changes.append(
                Change(task.issue_number, TaskEvent.CHECKS_STARTED, {"checks_sha": None})
            )
        elif action == "completed":
            changes.extend(_conclusion(task, sha, suite.get("conclusion")))
    return changes


def _conclusion(task: Task, sha: str, conclusion: str | None) -> list[Change]:
    if conclusion in _PASSING:
        if task.state is TaskState.CHECKS_FAILED and task.checks_sha == sha:
            return []  # another suite already failed on this very commit
        return [
            Change(task.issue_number, TaskEvent.CHECKS_PASSED, {"checks_sha": sha, "reason": None})
        ]
    if conclusion is None:
        return []
    return [
        Change(
            task.issue_number,
            TaskEvent.CHECKS_FAILED,
            {"checks_sha": sha, "reason": f"checks concluded {conclusion}"},
        )
    ]


def _issues(payload: Mapping[str, Any], run: Run, labels: Labels) -> list[Change]:
    issue = payload.get("issue") or {}
    number = int(issue.get("number") or 0)
    task = next((t for t in run.tasks if t.issue_number == number), None)
    if task is None:
        return []
    current_labels = tuple(str(label.get("name")) for label in issue.get("labels") or ())
    changes = [Change(number, None, {"labels": current_labels})]
    if task.state in TASK_TERMINAL or run.state in (RunState.SHIPPING, RunState.SHIPPED):
        return changes  # our own ship closes and relabels issues: not a person's doing
    who = (payload.get("sender") or {}).get("login", "someone")
    action = payload.get("action")
    if action == "closed":
        changes.append(Change(number, TaskEvent.SKIP, {"reason": f"issue closed by {who}"}))
    elif action == "unlabeled" and (payload.get("label") or {}).get("name") == labels.in_progress:
        reason = f"{labels.in_progress} label removed by {who}"
        changes.append(Change(number, TaskEvent.SKIP, {"reason": reason}))
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
    """Apply the run-level consequences of its tasks' states (ready, regressed, failed)."""
    if run.state is RunState.EXECUTING:
        if fail_run_on_task_failure and any(t.state is TaskState.FAILED for t in run.tasks):
            failed = [t.issue_number for t in run.tasks if t.state is TaskState.FAILED]
            return apply_run_event(
                run, RunEvent.FAIL, now, reason=f"task(s) {failed} failed", finished_at=now
            )
        if run.all_tasks_ready:
            return apply_run_event(run, RunEvent.ALL_READY, now)
        if run.nothing_to_ship:
            return apply_run_event(
                run,
                RunEvent.FAIL,
                now,
                finished_at=now,
                reason="nothing left to ship: every task was skipped or failed",
            )
    if run.state is RunState.READY_TO_SHIP and not run.all_tasks_ready:
        return apply_run_event(run, RunEvent.NOT_READY, now)
    return run
