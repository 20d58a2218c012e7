"""Webhook deliveries -> domain events: what a GitHub delivery says, typed.

Each webhook event tracking reads has one reader, registered under its name with
:func:`reads` together with the shape the webhook endpoint checks the body against
(:data:`EVENT_SHAPES`, answered 400 naming the field when it does not fit). The reader
type-checks the fields it needs (a field of the wrong type is :class:`Malformed`,
naming it, and the delivery changes nothing) and returns them as :class:`Fields`, which
say which :mod:`valine.core.events` event the delivery is (:meth:`Fields.event`) and
what of the payload to keep (:meth:`Fields.slim`). The endpoint handles the events with
a reader (:data:`HANDLED_EVENTS`) and acknowledges the others without queuing them.

Adding a webhook event: its reader and shape here, its domain event in
:mod:`valine.core.events`, and the event's rule (:func:`valine.core.tracking.rule`) or
use-case handler (``@github_events.register``).

:func:`essentials` is what the webhook endpoint stores in the queue (a few hundred
bytes of a 10-25 KB body, in the payload's own shape: reading it again gives the same
event); :func:`delivery` turns the queued job back into a
:class:`~valine.core.events.Delivery` for the use cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from valine.core.events import (
    CheckSuiteCompleted,
    CommitStatusChanged,
    Delivery,
    GitHubEvent,
    IssueChanged,
    IssueClosed,
    IssueUnlabelled,
    MergeGroupChecked,
    PullRequestClosed,
    PullRequestDequeued,
    PullRequestMerged,
    PullRequestOpened,
    PullRequestPushed,
    WorkflowRunChanged,
)
from valine.core.models import WorkflowRun
from valine.core.shape import Arr, Bool, Int, Obj, Projection, Shape, Str

#: The branch GitHub tests a merge group on: ``gh-readonly-queue/<base>/pr-<number>-<sha>``.
_MERGE_GROUP_REF = re.compile(r"^(?:refs/heads/)?gh-readonly-queue/.+/pr-(\d+)-[0-9a-f]{7,40}$")
#: ``pull_request`` actions after which a pull request may claim a task.
_MAY_CLAIM = frozenset({"opened", "reopened", "ready_for_review", "edited"})


class Malformed(ValueError):
    """A payload field has the wrong type; ``field`` is its dotted path."""

    def __init__(self, path: str, expected: str) -> None:
        super().__init__(f"{path}: expected {expected}")
        self.field = path
        self.expected = expected


class Fields(Protocol):
    """The type-checked fields of one delivery that tracking reads."""

    def event(self) -> GitHubEvent | None:
        """The domain event the delivery is, or None when it is no news for tracking."""
        ...

    def slim(self) -> dict[str, Any]:
        """These fields in the payload's own shape (reading them again gives the same)."""
        ...


Reader = Callable[[Mapping[str, Any]], Fields]
#: The reader of each webhook event tracking handles, by ``X-GitHub-Event``.
READERS: dict[str, Reader] = {}
#: The shape the endpoint checks each handled event's body against (GitHub's payloads,
#: cut to the fields tracking reads; an event without one is checked by its reader only).
EVENT_SHAPES: dict[str, Obj] = {}
#: What the endpoint parses of each handled event's body: its shape's fields and the
#: ones its reader also reads (and type-checks itself); the rest is skipped unbuilt.
PROJECTIONS: dict[str, Projection] = {}
#: Every reader reads the repository (:func:`read`).
_READ_BY_ALL = ("repository.full_name",)
#: An event without a reader is only checked to be a JSON object.
_NOTHING_READ = Projection(Obj({}))


def reads(
    name: str, shape: Obj | None = None, *, also: tuple[str, ...] = ()
) -> Callable[[Reader], Reader]:
    """Register the decorated function as the reader of webhook event ``name``, the
    ``shape`` its body must fit before it is queued, and the dotted paths it ``also``
    reads beside the shape's fields (no other field of the body is parsed for it)."""

    def register(reader: Reader) -> Reader:
        if name in READERS:
            raise ValueError(f"webhook event {name!r} already has a reader")
        READERS[name] = reader
        if shape is not None:
            EVENT_SHAPES[name] = shape
        PROJECTIONS[name] = Projection(shape or Obj({}), _READ_BY_ALL + also)
        return reader

    return register


def projection(name: str) -> Projection:
    """The part of event ``name``'s body the endpoint parses (see :data:`PROJECTIONS`)."""
    return PROJECTIONS.get(name, _NOTHING_READ)


_TEXT = Str(nullable=True)
#: The fields every handled event's body may have.
_ENVELOPE: dict[str, Shape] = {
    "action": Str(100, nullable=True),
    "repository": Obj({"full_name": Str(300, nullable=True)}, nullable=True),
    "sender": Obj({"login": Str(300, nullable=True)}, nullable=True),
}
_NAME = Obj({"name": Str(300, nullable=True)})


# -- typed access ------------------------------------------------------------------------


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


# -- one reader per webhook event ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullFields:
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

    def event(self) -> GitHubEvent | None:
        """Opened (or may now claim a task), pushed, merged, closed, dequeued; or None."""
        if self.action in _MAY_CLAIM:
            return PullRequestOpened(
                self.number,
                self.body,
                self.head_ref,
                self.head_sha,
                self.head_repo,
                self.author,
                self.author_type,
                self.association,
            )
        if self.action == "synchronize":
            return PullRequestPushed(self.number, self.head_sha)
        if self.action == "closed":
            return PullRequestMerged(self.number) if self.merged else PullRequestClosed(self.number)
        if self.action == "dequeued":
            return PullRequestDequeued(self.number, self.reason or "no reason")
        return None  # labelled, assigned, review requested ...: no news for tracking

    def slim(self) -> dict[str, Any]:
        """The ``pull_request`` payload cut to these fields."""
        slim: dict[str, Any] = {"action": self.action}
        if self.reason is not None:
            slim["reason"] = self.reason
        slim["pull_request"] = {
            "number": self.number,
            "body": self.body,
            "merged": self.merged,
            "author_association": self.association,
            "user": {"login": self.author, "type": self.author_type},
            "head": {
                "ref": self.head_ref,
                "sha": self.head_sha,
                "repo": None if self.head_repo is None else {"full_name": self.head_repo},
            },
        }
        return slim


@reads(
    "pull_request",
    Obj(
        {
            **_ENVELOPE,
            "number": Int(nullable=True),
            "pull_request": Obj(
                {
                    "number": Int(nullable=True),
                    "body": Str(nullable=True),
                    "merged": Bool(nullable=True),
                    "head": Obj({"ref": _TEXT, "sha": _TEXT}, nullable=True),
                },
                nullable=True,
            ),
        }
    ),
    also=(
        "pull_request.head.repo.full_name",
        "pull_request.user.login",
        "pull_request.user.type",
        "pull_request.author_association",
        "reason",
    ),
)
def _read_pull(payload: Mapping[str, Any]) -> PullFields:
    action = _str(payload, "action", "action")
    pull = _obj(payload, "pull_request", "pull_request")
    head = _obj(pull, "head", "pull_request.head")
    head_repo = _obj(head, "repo", "pull_request.head.repo", optional=True)
    user = _obj(pull, "user", "pull_request.user", optional=True) or {}
    return PullFields(
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


@dataclass(frozen=True, slots=True)
class SuiteFields:
    """A ``check_suite`` delivery: which commit, which pull requests, which branch.

    A merge group's suite is judged from its payload (its commit is no pull request's
    head): its branch names the pull request and its conclusion is the news.
    """

    action: str
    sha: str
    pull_numbers: tuple[int, ...]
    head_branch: str | None
    conclusion: str | None

    def event(self) -> GitHubEvent | None:
        """A completed suite (of a merge group, or of pull requests); None before."""
        if self.action != "completed":
            return None  # requested, rerequested: nothing concluded yet
        group = _MERGE_GROUP_REF.match(self.head_branch or "")
        if group is not None:
            return MergeGroupChecked(int(group.group(1)), self.conclusion)
        return CheckSuiteCompleted(self.sha, self.pull_numbers)

    def slim(self) -> dict[str, Any]:
        """The ``check_suite`` payload cut to these fields."""
        return {
            "action": self.action,
            "check_suite": {
                "head_sha": self.sha,
                "head_branch": self.head_branch,
                "conclusion": self.conclusion,
                "pull_requests": [{"number": n} for n in self.pull_numbers],
            },
        }


@reads(
    "check_suite",
    Obj(
        {
            **_ENVELOPE,
            "check_suite": Obj(
                {
                    "head_sha": _TEXT,
                    "conclusion": _TEXT,
                    "pull_requests": Arr(Obj({"number": Int(nullable=True)}), nullable=True),
                },
                nullable=True,
            ),
        }
    ),
    also=("check_suite.head_branch",),
)
def _read_suite(payload: Mapping[str, Any]) -> SuiteFields:
    action = _str(payload, "action", "action")
    suite = _obj(payload, "check_suite", "check_suite")
    numbers = []
    for i, pull in enumerate(_list(suite, "pull_requests", "check_suite.pull_requests")):
        path = f"check_suite.pull_requests[{i}]"
        if not isinstance(pull, Mapping):
            raise Malformed(path, "an object")
        numbers.append(_int(pull, "number", f"{path}.number"))
    return SuiteFields(
        action,
        _str(suite, "head_sha", "check_suite.head_sha"),
        tuple(numbers),
        head_branch=_str(suite, "head_branch", "check_suite.head_branch", optional=True),
        conclusion=_str(suite, "conclusion", "check_suite.conclusion", optional=True),
    )


@dataclass(frozen=True, slots=True)
class StatusFields:
    """A ``status`` delivery: the commit whose statuses changed."""

    sha: str

    def event(self) -> GitHubEvent:
        """Always news: a commit status was set."""
        return CommitStatusChanged(self.sha)

    def slim(self) -> dict[str, Any]:
        """The ``status`` payload cut to its commit."""
        return {"sha": self.sha}


@reads("status", also=("sha",))
def _read_status(payload: Mapping[str, Any]) -> StatusFields:
    return StatusFields(_str(payload, "sha", "sha"))


@dataclass(frozen=True, slots=True)
class IssueFields:
    """The fields of an ``issues`` delivery tracking uses."""

    action: str
    number: int
    labels: tuple[str, ...]
    label: str | None
    sender: str | None

    def event(self) -> GitHubEvent:
        """Closed, a label taken off, or anything else (its labels as they are now)."""
        if self.action == "closed":
            return IssueClosed(self.number, self.labels, self.sender)
        if self.action == "unlabeled" and self.label is not None:
            return IssueUnlabelled(self.number, self.labels, self.label, self.sender)
        return IssueChanged(self.number, self.labels)

    def slim(self) -> dict[str, Any]:
        """The ``issues`` payload cut to these fields."""
        slim: dict[str, Any] = {
            "action": self.action,
            "sender": {"login": self.sender},
            "issue": {"number": self.number, "labels": [{"name": n} for n in self.labels]},
        }
        if self.label is not None:
            slim["label"] = {"name": self.label}
        return slim


@reads(
    "issues",
    Obj(
        {
            **_ENVELOPE,
            "issue": Obj(
                {"number": Int(nullable=True), "labels": Arr(_NAME, nullable=True)},
                nullable=True,
            ),
            "label": Obj({"name": Str(300, nullable=True)}, nullable=True),
        }
    ),
)
def _read_issue(payload: Mapping[str, Any]) -> IssueFields:
    action = _str(payload, "action", "action")
    issue = _obj(payload, "issue", "issue")
    labels = []
    for i, label in enumerate(_list(issue, "labels", "issue.labels")):
        if not isinstance(label, Mapping):
            raise Malformed(f"issue.labels[{i}]", "an object")
        labels.append(_str(label, "name", f"issue.labels[{i}].name"))
    label_obj = _obj(payload, "label", "label", optional=True)
    sender = _obj(payload, "sender", "sender", optional=True) or {}
    return IssueFields(
        action=action,
        number=_int(issue, "number", "issue.number"),
        labels=tuple(labels),
        label=None if label_obj is None else _str(label_obj, "name", "label.name"),
        sender=_str(sender, "login", "sender.login", optional=True),
    )


@dataclass(frozen=True, slots=True)
class WorkflowRunFields:
    """A ``workflow_run`` delivery (``requested``, ``in_progress``, ``completed``)."""

    run: WorkflowRun

    def event(self) -> GitHubEvent:
        """Always news (for a deployment, if it is one)."""
        return WorkflowRunChanged(self.run)

    def slim(self) -> dict[str, Any]:
        """The ``workflow_run`` payload cut to these fields."""
        run = self.run
        return {
            "action": "completed" if run.status == "completed" else run.status,
            "workflow": {"path": run.workflow},
            "workflow_run": {
                "id": run.id,
                "status": run.status,
                "conclusion": run.conclusion,
                "html_url": run.url,
                "event": run.event,
                "head_branch": run.head_branch,
                "created_at": _iso(run.created_at),
                "display_title": run.display_title,
            },
        }


@reads(
    "workflow_run",
    Obj(
        {
            **_ENVELOPE,
            "workflow": Obj({"path": Str(1000, nullable=True)}, nullable=True),
            "workflow_run": Obj(
                {
                    "id": Int(nullable=True),
                    "status": Str(100, nullable=True),
                    "conclusion": Str(100, nullable=True),
                    "html_url": Str(2000, nullable=True),
                    "event": Str(100, nullable=True),
                    "head_branch": Str(1000, nullable=True),
                    "created_at": Str(100, nullable=True),
                    "display_title": _TEXT,
                },
                nullable=True,
            ),
        }
    ),
    also=("workflow_run.path",),
)
def _read_workflow_run(payload: Mapping[str, Any]) -> WorkflowRunFields:
    action = _str(payload, "action", "action")
    run = _obj(payload, "workflow_run", "workflow_run")
    workflow = _obj(payload, "workflow", "workflow", optional=True) or {}
    created = _str(run, "created_at", "workflow_run.created_at", optional=True)
    try:
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        created_at = 0.0
    status = _str(run, "status", "workflow_run.status", optional=True) or action
    return WorkflowRunFields(
        WorkflowRun(
            id=_int(run, "id", "workflow_run.id"),
            status="completed" if action == "completed" else status,
            conclusion=_str(run, "conclusion", "workflow_run.conclusion", optional=True),
            url=_str(run, "html_url", "workflow_run.html_url", optional=True) or "",
            event=_str(run, "event", "workflow_run.event", optional=True) or "",
            head_branch=_str(run, "head_branch", "workflow_run.head_branch", optional=True) or "",
            created_at=created_at,
            display_title=_str(run, "display_title", "workflow_run.display_title", optional=True)
            or "",
            workflow=_str(workflow, "path", "workflow.path", optional=True)
            or _str(run, "path", "workflow_run.path", optional=True)
            or "",
        )
    )


@dataclass(frozen=True, slots=True)
class NoNews:
    """A delivery tracking has no use for (an ``issue_comment``): only its action."""

    action: str | None

    def event(self) -> None:
        """None: no news."""
        return None

    def slim(self) -> dict[str, Any]:
        """Only the action."""
        return {} if self.action is None else {"action": self.action}


@reads("issue_comment", Obj(_ENVELOPE))
def _no_news(payload: Mapping[str, Any]) -> NoNews:
    action = payload.get("action")
    return NoNews(action if isinstance(action, str) else None)


#: The webhook events the endpoint queues (one reader each); it acknowledges the others.
HANDLED_EVENTS = frozenset(READERS)


# -- deliveries --------------------------------------------------------------------------


def read(name: str, payload: Any) -> tuple[str, Fields]:
    """The repository and the typed fields of one delivery; raises :class:`Malformed`."""
    if not isinstance(payload, Mapping):
        raise Malformed("(body)", "an object")
    repo = _str(_obj(payload, "repository", "repository"), "full_name", "repository.full_name")
    reader = READERS.get(name, _no_news)
    return repo, reader(payload)


def event_of(name: str, payload: Any) -> GitHubEvent | None:
    """The domain event of one delivery (None: no news); raises :class:`Malformed`."""
    return read(name, payload)[1].event()


def essentials(name: str, payload: Any) -> dict[str, Any]:
    """The part of a delivery that tracking reads, in the payload's own shape; never raises.

    A webhook body is often 10-25 KB; the few fields tracking uses are what the webhook
    endpoint stores, so a delivery costs a few hundred bytes in the queue, and the
    worker decodes no more than it needs. A payload with a field of the wrong type gives
    ``{"malformed": "<field>: expected ..."}`` (and its repository when that much is
    readable), which tracking ignores.
    """
    try:
        repo, fields = read(name, payload)
    except Malformed as bad:
        return {"malformed": str(bad), "repository": {"full_name": _safe_repo(payload)}}
    return {"repository": {"full_name": repo}, **fields.slim()}


def malformed(name: str, payload: Any) -> str | None:
    """Why ``payload`` cannot be used (the bad field), or None when it can."""
    if isinstance(payload, Mapping) and isinstance(payload.get("malformed"), str):
        return str(payload["malformed"])
    try:
        read(name, payload)
    except Malformed as bad:
        return str(bad)
    return None


def delivery(job: Mapping[str, Any]) -> Delivery:
    """The domain's view of a queued delivery: ``{event, delivery_id, payload}``.

    The job is what :class:`~valine.github.webhooks.GitHubWebhookEndpoint` enqueued (its
    payload the :func:`essentials`); a malformed one has no event and says why.
    """
    name, delivery_id, payload = str(job["event"]), str(job["delivery_id"]), job["payload"]
    problem = malformed(name, payload)
    if problem is not None:
        return Delivery(delivery_id, _safe_repo(payload), None, name, problem)
    repo, fields = read(name, payload)
    action = payload.get("action")
    label = f"{name}.{action}" if isinstance(action, str) and action else name
    return Delivery(delivery_id, repo, fields.event(), label)


def job_handler(apply: Callable[[Delivery], None]) -> Callable[[dict[str, Any]], None]:
    """The handler of the queued-delivery job kind: read it here, ``apply`` its news."""

    def handle(job: dict[str, Any]) -> None:
        apply(delivery(job))

    return handle


def _iso(epoch: float) -> str | None:
    """The ISO 8601 UTC time of ``epoch`` (None for 0: unknown)."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe_repo(payload: Any) -> str | None:
    repo = payload.get("repository") if isinstance(payload, Mapping) else None
    name = repo.get("full_name") if isinstance(repo, Mapping) else None
    return name if isinstance(name, str) else None
