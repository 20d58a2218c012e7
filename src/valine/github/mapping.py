"""GitHub's answers as domain values: issues, pull requests, check pictures, ids.

Every function takes decoded JSON (REST or GraphQL) and returns a value of
:mod:`valine.core` or :mod:`valine.ports`; ``shaped`` turns an unexpected shape into a
:class:`~valine.ports.GitHubError` instead of a ``KeyError``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from valine.core.checks import Check, CheckKind, CheckPicture
from valine.core.models import Issue, PullRequest, WorkflowRun
from valine.ports import (
    GitHubError,
    RepositoryIds,
)

_T = TypeVar("_T")


def shaped(mapper: Callable[[Any], _T], data: Any) -> _T:
    """``mapper(data)``, an unexpected shape reported as a GitHubError."""
    try:
        return mapper(data)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise GitHubError(200, f"unexpected response shape: {exc!r}") from None


def message(error: Any) -> str:
    """The message of one GraphQL error entry."""
    return str(error.get("message", error)) if isinstance(error, Mapping) else str(error)


def picture(number: int, pull: Any) -> CheckPicture:
    """A :class:`CheckPicture` from one ``pullRequest`` node of the query."""
    commit = pull["commits"]["nodes"][0]["commit"]
    checks: list[Check] = []
    suites = commit.get("checkSuites") or {"nodes": [], "pageInfo": {"hasNextPage": False}}
    complete = not suites["pageInfo"]["hasNextPage"]
    for suite in suites["nodes"] or ():
        runs = suite.get("checkRuns") or {"nodes": [], "pageInfo": {"hasNextPage": False}}
        complete = complete and not runs["pageInfo"]["hasNextPage"]
        for run in runs["nodes"] or ():
            checks.append(
                Check(
                    str(run["name"]),
                    CheckKind.CHECK_RUN,
                    str(run["status"]).lower(),
                    _lower(run.get("conclusion")),
                    str(run.get("detailsUrl") or ""),
                )
            )
        if not runs["nodes"]:
            app = (suite.get("app") or {}).get("name") or "an App"
            checks.append(
                Check(
                    str(app),
                    CheckKind.SUITE,
                    str(suite["status"]).lower(),
                    _lower(suite.get("conclusion")),
                )
            )
    for status in (commit.get("status") or {}).get("contexts") or ():
        checks.append(
            Check(
                str(status["context"]),
                CheckKind.STATUS,
                str(status["state"]).lower(),
                None,
                str(status.get("targetUrl") or ""),
            )
        )
    in_queue = None if "mergeQueueEntry" not in pull else pull["mergeQueueEntry"] is not None
    return CheckPicture(
        number, str(commit["oid"]), tuple(checks), complete, in_queue, bool(pull.get("merged"))
    )


def repository_ids(labels: Sequence[str], logins: Sequence[str], data: Any) -> RepositoryIds:
    """The node ids an :func:`_id_fields` query read (missing labels and users left out)."""
    repository = data["repository"]
    return RepositoryIds(
        repository=str(repository["id"]),
        labels={
            label: str(node["id"])
            for i, label in enumerate(labels)
            if isinstance(node := repository.get(f"l{i}"), Mapping)
        },
        users={
            login: str(node["id"])
            for i, login in enumerate(logins)
            if isinstance(node := data.get(f"u{i}"), Mapping)
        },
    )


def graphql_issue(node: Any) -> Issue | None:
    """An :class:`Issue` from one ``Issue`` node; None if its labels were cut at 100."""
    if node["labels"]["pageInfo"]["hasNextPage"]:
        return None
    milestone = node.get("milestone") or {}
    return Issue(
        number=int(node["number"]),
        title=str(node["title"]),
        labels=tuple(str(label["name"]) for label in node["labels"]["nodes"] or ()),
        created_at=str(node["createdAt"]),
        milestone_due_on=milestone.get("dueOn"),
        url=str(node.get("url") or ""),
        node_id=str(node["id"]),
    )


def _lower(value: Any) -> str | None:
    return None if value is None else str(value).lower()


def issue(data: Any) -> Issue:
    milestone = data.get("milestone") or {}
    return Issue(
        number=int(data["number"]),
        title=str(data["title"]),
        labels=tuple(
            str(label["name"]) if isinstance(label, Mapping) else str(label)
            for label in data.get("labels") or ()
        ),
        created_at=str(data["created_at"]),
        milestone_due_on=milestone.get("due_on"),
        url=str(data.get("html_url") or ""),
        assignees=tuple(str(user["login"]) for user in data.get("assignees") or ()),
        node_id=str(data.get("node_id") or ""),
    )


def pull(data: Any) -> PullRequest:
    head = data["head"]
    return PullRequest(
        number=int(data["number"]),
        head_sha=str(head["sha"]),
        head_ref=str(head["ref"]),
        state=str(data["state"]),
        merged=bool(data.get("merged") or data.get("merged_at")),
        body=str(data.get("body") or ""),
        url=str(data.get("html_url") or ""),
    )


def _timestamp(text: Any) -> float:
    """Epoch seconds of an ISO 8601 time GitHub sends (0 for none)."""
    if not text:
        return 0.0
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def workflow_run(data: Any) -> WorkflowRun:
    """A GitHub Actions workflow run (REST ``workflow-run``)."""
    return WorkflowRun(
        id=int(data["id"]),
        status=str(data["status"] or ""),
        conclusion=data.get("conclusion"),
        url=str(data.get("html_url") or ""),
        event=str(data.get("event") or ""),
        head_branch=str(data.get("head_branch") or ""),
        created_at=_timestamp(data.get("created_at")),
        display_title=str(data.get("display_title") or ""),
        workflow=str(data.get("path") or data.get("workflow_id") or ""),
    )


def dispatched_run(data: Any) -> WorkflowRun:
    """The run a dispatch with ``return_run_details`` started (just requested)."""
    return WorkflowRun(
        id=int(data["workflow_run_id"]),
        status="requested",
        conclusion=None,
        url=str(data.get("html_url") or ""),
        event="workflow_dispatch",
    )
