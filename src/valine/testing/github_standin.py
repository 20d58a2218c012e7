"""A stateful stand-in of GitHub's REST and GraphQL APIs, for tests, ``valine demo`` and local runs.

It serves the few endpoints the orchestrator uses, for any number of repositories, over
real HTTP on 127.0.0.1 (a free port), with answers shaped like GitHub's: every field the
OpenAPI description requires is present, errors use GitHub's status codes and messages,
and every answer carries the ``x-ratelimit-*`` and ``x-github-request-id`` headers.

Behaviour copied from GitHub:

* Pull requests are issues: they share the numbering and appear in the issue list with
  a ``pull_request`` key. ``labels=a,b`` means both labels. ``per_page`` (max 100),
  ``page`` and a ``Link`` header paginate. Every ``GET`` answer has an ``ETag``; a
  matching ``If-None-Match`` gets ``304`` and does not count against the rate limit.
* Merging checks, in order: closed → ``405``, merge queue required → ``405``, ``sha``
  not the head → ``409``. A merge closes the issues its body closes
  (``Fixes #12``, ``closes: #3``, ``resolved #4`` ...).
* Requests need ``Authorization``: the stand-in's personal token (:attr:`token`) or an
  installation token. ``/app/...`` and ``/repos/{o}/{r}/installation`` need an RS256
  App JWT (signature checked when ``app_public_key_pem`` is given; that check uses
  PyJWT, a dependency of the package, imported only then).

* Check suites (:meth:`report_checks`, one suite a call, like one CI App each) are
  listed by ``GET /repos/{o}/{r}/commits/{ref}/check-suites`` (``app_id``,
  ``per_page``, ``page``), oldest first, with the ``total_count`` of the whole list.
  ``ref`` is a commit the stand-in knows (a pull request's head or base, a merge
  commit, a SHA given to :meth:`report_checks`) or a pull request's branch name
  (``heads/`` optional); anything else is ``422 No commit found for SHA: <ref>``.

Stricter than GitHub on purpose: a workflow dispatch without ``inputs`` is refused
(``422``); the workflow executor always sends them.

GraphQL (``POST /graphql``, same authentication, rate limit counted as resource
``graphql``) serves the small part of GitHub's schema the client uses, over the same
state: ``repository(owner, name) { id label(name) { id } }``, ``user(login) { id }``
and the mutations ``addLabelsToLabelable``, ``removeLabelsFromLabelable``,
``addComment``, ``addAssigneesToAssignable``, ``closeIssue``, ``createLabel`` and
``enqueuePullRequest``. Documents are parsed with :mod:`re` and a small
recursive-descent parser; anything else (fragments, directives, literal objects,
fields or types outside that subset) is answered with a GraphQL error, never a 500.
As on GitHub: the whole document is validated and the variables coerced before
anything runs (errors then come without ``data``); mutation fields run serially in
document order; a field that fails is ``null`` with an ``errors`` entry (``type``
``NOT_FOUND`` for an unknown node id, repository or login) and the other fields
still run. Node ids are the ``node_id`` of the REST answers (an issue's or its pull
request's id both address the issue). Every label has a node id and lives in a
per-repository registry once an issue carries it (REST or helpers), ``createLabel``
makes it or :meth:`add_label` adds it; names match case-insensitively, as on GitHub.
``user(login)`` knows every login seen (owners, authors, assignees, commenters;
``[bot]`` logins are not users) and those added with :meth:`add_user`.

A merge queue (:meth:`require_merge_queue`) accepts ``enqueuePullRequest``;
:meth:`merge_queue` lists it and :meth:`land_merge_queue` merges it, as GitHub does
once the queue's checks pass. Pushing to a queued pull request drops it from the
queue. The GraphQL error messages for enqueueing are the stand-in's own wording where
GitHub's is not documented.

Tests change the world as a person or CI would (:meth:`add_issue`, :meth:`open_pull`,
:meth:`push`, :meth:`close_issue`, :meth:`require_merge_queue`, :meth:`add_label`,
:meth:`add_user`, :meth:`land_merge_queue`, :meth:`report_checks`), inject faults
through :attr:`GitHubStandIn.faults` (a :class:`valine.testing.faults.FaultPlan`) or its
short-hands (:meth:`fail_next`, :meth:`rate_limit_next`, :meth:`primary_rate_limit_next`,
:meth:`graphql_rate_limit_next`, :meth:`apply_then_fail_next`, :meth:`apply_then_drop_next`),
and read the state and the :attr:`requests` log (each with its arrival time by the
stand-in's clock and the fault that answered it). A spent primary limit (REST 403 or
GraphQL ``RATE_LIMITED``) stays spent until its reset, as on GitHub: every request of that
resource before then gets the same answer. Everything is guarded by one lock.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import datetime
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from valine.testing import faults as fault_kit
from valine.testing.faults import FaultPlan, FaultRequest, Match, Phase

DOCS_URL = "https://docs.github.com/rest"
#: GitHub's closing keywords: ``close[sd]?``, ``fix(e[sd])?``, ``resolve[sd]?`` + ``#N``.
CLOSING_KEYWORDS = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b", re.IGNORECASE
)
MERGE_QUEUE_MESSAGE = "Changes must be made through the merge queue"
NOT_MERGEABLE_MESSAGE = "Pull Request is not mergeable"
HEAD_MOVED_MESSAGE = "Head branch was modified. Review and try the merge again."
SECONDARY_LIMIT_MESSAGE = fault_kit.SECONDARY_LIMIT_MESSAGE
GRAPHQL_DOCS_URL = "https://docs.github.com/graphql"
NOT_ENQUEUEABLE_MESSAGE = "Pull request is not in a state to be added to the merge queue"
NO_MERGE_QUEUE_MESSAGE = "Merge queue is not enabled for this pull request's base branch"
_REPO_PREFIX = r"/repos/(?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+)"
_MERGE_METHODS = frozenset({"merge", "squash", "rebase"})
#: A check suite's ``status`` and ``conclusion`` values, as GitHub's description lists them.
CHECK_SUITE_STATUSES = frozenset(
    {"queued", "in_progress", "completed", "waiting", "requested", "pending"}
)
CHECK_SUITE_CONCLUSIONS = frozenset(
    {
        "success",
        "failure",
        "neutral",
        "cancelled",
        "skipped",
        "timed_out",
        "action_required",
        "startup_failure",
        "stale",
    }
)
_APP_NAMES = {"github-actions": "GitHub Actions"}
#: A commit status's ``state`` values.
COMMIT_STATUS_STATES = frozenset({"error", "failure", "pending", "success"})


def _combined(contexts: Sequence[Mapping[str, Any]]) -> str:
    """GitHub's combined state of commit statuses: any error/failure, else pending, else success."""
    states = {c["state"] for c in contexts}
    if states & {"ERROR", "FAILURE"}:
        return "FAILURE" if "FAILURE" in states else "ERROR"
    return "PENDING" if "PENDING" in states else "SUCCESS"


def _filter_runs(runs: Sequence[Any], filter_by: Mapping[str, Any] | None) -> list[Any]:
    """Check runs kept by a ``CheckRunFilter`` (every run is its name's latest here)."""
    kept = list(runs)
    if not filter_by:
        return kept
    if filter_by.get("checkName") is not None:
        kept = [r for r in kept if r["name"] == filter_by["checkName"]]
    statuses = filter_by.get("statuses") or (
        [filter_by["status"]] if filter_by.get("status") else []
    )
    if statuses:
        kept = [r for r in kept if r["status"] in statuses]
    if filter_by.get("conclusions"):
        kept = [r for r in kept if r["conclusion"] in filter_by["conclusions"]]
    return kept


def _connection(items: Sequence[Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A GraphQL connection of ``items`` cut by ``first`` / ``last`` (no cursors served)."""
    first, last = arguments.get("first"), arguments.get("last")
    if first is None and last is None:
        raise _FieldError(
            "MISSING_PAGINATION_BOUNDARIES",
            "You must provide a `first` or `last` value to properly paginate.",
        )
    chosen = list(items)
    if first is not None:
        chosen = chosen[: int(first)]
    if last is not None:
        chosen = chosen[-int(last) :] if int(last) else []
    return {
        "nodes": chosen,
        "totalCount": len(items),
        "pageInfo": {
            "hasNextPage": len(chosen) < len(items) and first is not None,
            "endCursor": None,
        },
    }


Json = Any
Answer = tuple[int, Json, dict[str, str]]


@dataclass
class StandInComment:
    """A comment on an issue or pull request."""

    id: int
    body: str
    author: str
    created_at: str


@dataclass
class StandInIssue:
    """An issue (every pull request has one too, with the same number)."""

    id: int
    number: int
    title: str
    body: str
    labels: list[str]
    created_at: str
    updated_at: str
    author: str = "octocat"
    state: str = "open"
    state_reason: str | None = None
    closed_at: str | None = None
    assignees: list[str] = field(default_factory=list)
    milestone_title: str | None = None
    milestone_due_on: str | None = None
    comments: list[StandInComment] = field(default_factory=list)
    #: The issue timeline's ``labeled``/``unlabeled`` events, oldest first, as
    #: ``(event, label name)``; GitHub adds one only when the label set really changes.
    label_events: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StandInLabel:
    """A repository label (REST ``id``; GraphQL id ``node_id``)."""

    id: int
    name: str
    color: str
    description: str | None = None

    @property
    def node_id(self) -> str:
        """The GraphQL node id (the REST answers' ``node_id``)."""
        return _node_id("LA_", self.id)


@dataclass(frozen=True)
class StandInQueueEntry:
    """A pull request waiting in a merge queue, at the head it was enqueued with."""

    id: int
    number: int
    head_sha: str
    enqueued_at: str


@dataclass
class StandInPull:
    """The pull-request side of an issue: branches, head commit and merge state."""

    id: int
    number: int
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    merged: bool = False
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    #: ``owner/name`` of the fork the head branch lives in; None: this repository.
    head_repo: str | None = None
    #: The author's ``author_association``; None: ``OWNER`` for the owner, else ``MEMBER``.
    author_association: str | None = None


@dataclass
class StandInCheckSuite:
    """One App's check suite on a commit (what :meth:`GitHubStandIn.report_checks` adds)."""

    id: int
    head_sha: str
    head_branch: str | None
    app: str
    status: str
    conclusion: str | None
    check_runs: int
    created_at: str
    updated_at: str
    runs: list[StandInCheckRun] = field(default_factory=list)


@dataclass
class StandInCheckRun:
    """One check run of a suite (a job of a workflow, one check of a CI App)."""

    id: int
    name: str
    status: str
    conclusion: str | None
    details_url: str


@dataclass
class StandInStatus:
    """One commit status (``POST /repos/{o}/{r}/statuses/{sha}``): the latest per context wins."""

    context: str
    state: str
    target_url: str | None
    created_at: str


@dataclass(frozen=True)
class Dispatch:
    """One accepted ``workflow_dispatch``."""

    workflow: str
    ref: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it, and what it answered.

    ``headers`` are lower-cased and never include ``Authorization``; ``auth_scheme`` is
    that header's scheme only (``token``, ``bearer`` or empty).
    """

    method: str
    path: str
    query: dict[str, str]
    body: Json
    headers: dict[str, str]
    auth_scheme: str
    status: int
    response: Json
    #: When it arrived, by the stand-in's clock (epoch seconds).
    at: float = 0.0
    #: The name of the injected fault that answered it, if any.
    fault: str | None = None


@dataclass
class _Repo:
    owner: str
    name: str
    id: int
    created_at: str
    merge_queue: bool = False
    default_branch: str = "main"
    next_number: int = 1
    issues: dict[int, StandInIssue] = field(default_factory=dict)
    pulls: dict[int, StandInPull] = field(default_factory=dict)
    dispatches: list[Dispatch] = field(default_factory=list)
    #: Labels by lower-cased name (GitHub matches label names case-insensitively).
    labels: dict[str, StandInLabel] = field(default_factory=dict)
    queue: list[StandInQueueEntry] = field(default_factory=list)
    #: Every commit SHA the repository has (heads, bases, merges, checked commits).
    commits: set[str] = field(default_factory=set)
    #: Check suites by head SHA, oldest first.
    check_suites: dict[str, list[StandInCheckSuite]] = field(default_factory=dict)
    #: Commit statuses by SHA, oldest first.
    statuses: dict[str, list[StandInStatus]] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes live keep-alive connections itself

    def __init__(self, standin: GitHubStandIn) -> None:
        self.standin = standin
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            live = list(self.connections)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)
    server_version = "GitHub.com"
    sys_version = ""
    server: _Server

    def _serve(self) -> None:
        self.server.standin._serve(self)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in's log is :attr:`GitHubStandIn.requests`."""


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"{kind}{number}".encode()).decode().rstrip("=")


def _decode_node_id(node_id: Any) -> tuple[str, int] | None:
    """``(kind, number)`` of a node id made by :func:`_node_id`, or None."""
    if not isinstance(node_id, str) or not node_id:
        return None
    try:
        text = base64.b64decode(node_id + "=" * (-len(node_id) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    match = re.fullmatch(r"([A-Z]+_)(\d+)", text)
    return (match.group(1), int(match.group(2))) if match else None


def _user_id(login: str) -> int:
    return int(hashlib.sha256(login.encode()).hexdigest()[:6], 16)


def _error(status: int, message: str, **extra: Any) -> Answer:
    body = {"message": message, "documentation_url": DOCS_URL, "status": str(status), **extra}
    return status, body, {}


def _validation_failed(
    message: str, field_name: str, code: str = "invalid", *, resource: str = "Issue"
) -> Answer:
    error = {"resource": resource, "field": field_name, "code": code}
    return _error(422, message, errors=[error])


class GitHubStandIn:
    """A stateful GitHub REST stand-in on 127.0.0.1 (see the module docstring).

    ``clock`` drives timestamps, installation-token expiry and the rate-limit window;
    App JWTs are checked against the real time, as gidgethub signs them with it.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        app_id: str = "1",
        app_public_key_pem: str | bytes | None = None,
        installation_id: int = 1,
        token_ttl: float = 3600.0,
        rate_limit: int = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token or "ghp_standin_" + secrets.token_hex(16)
        self.app_id = str(app_id)
        self.installation_id = int(installation_id)
        self._app_public_key = app_public_key_pem
        self._token_ttl = token_ttl
        self._limit = rate_limit
        self._clock = clock
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._installation_tokens: dict[str, float] = {}
        self._requests: list[RecordedRequest] = []
        #: Injected faults (see :mod:`valine.testing.faults`); the short-hands below add to it.
        self.faults = FaultPlan()
        #: Per resource (``core``, ``graphql``): the reset of a spent primary limit.
        self._limited_until: dict[str, float] = {}
        self._used: dict[str, int] = {}
        self._users: dict[str, str] = {}
        self._window_reset = clock() + 3600
        self._next_id = 1000
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> GitHubStandIn:
        """Listen on a free port of 127.0.0.1 and serve in a background thread."""
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="github-standin",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> GitHubStandIn:
        """Start; stopped when the ``with`` block ends."""
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        """Stop serving."""
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the API (use it as ``GITHUB_API_URL``)."""
        if self._server is None:
            raise RuntimeError("the GitHub stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- changing the world, as a person or CI would ------------------------------------

    def add_repo(self, repo: str, *, merge_queue: bool = False) -> None:
        """Create repository ``owner/name`` (helpers create it on first use too)."""
        with self._lock:
            self._repo(repo).merge_queue = merge_queue

    def require_merge_queue(self, repo: str, required: bool = True) -> None:
        """Make the default branch accept merges only through a merge queue (or not)."""
        with self._lock:
            self._repo(repo).merge_queue = required

    def add_issue(
        self,
        repo: str,
        title: str,
        labels: Iterable[str] = (),
        *,
        body: str = "",
        assignees: Iterable[str] = (),
        milestone: str | None = None,
        milestone_due_on: str | None = None,
        created_at: str | None = None,
        author: str = "octocat",
    ) -> int:
        """Open an issue; returns its number."""
        with self._lock:
            r = self._repo(repo)
            issue = self._new_issue(
                r, title=title, body=body, labels=labels, author=author, created_at=created_at
            )
            issue.assignees = list(assignees)
            if milestone is not None or milestone_due_on is not None:
                issue.milestone_title = milestone or "Milestone"
                issue.milestone_due_on = milestone_due_on
            return issue.number

    def open_pull(
        self,
        repo: str,
        head_ref: str,
        body: str = "",
        *,
        title: str | None = None,
        labels: Iterable[str] = (),
        base_ref: str | None = None,
        author: str = "octocat",
        head_repo: str | None = None,
        author_association: str | None = None,
    ) -> tuple[int, str]:
        """Open a pull request from ``head_ref``; returns ``(number, head_sha)``.

        ``head_repo`` is the fork (``owner/name``) the branch lives in (default: this
        repository); ``author_association`` what GitHub says of the author (default
        ``OWNER`` for the repository's owner, else ``MEMBER``); a login ending in
        ``[bot]`` is a bot account (``user.type == "Bot"``).
        """
        with self._lock:
            r = self._repo(repo)
            title = title or f"Changes from {head_ref}"
            issue = self._new_issue(r, title=title, body=body, labels=labels, author=author)
            pull = StandInPull(
                id=self._new_id(),
                number=issue.number,
                head_ref=head_ref,
                head_sha=self._sha(),
                base_ref=base_ref or r.default_branch,
                base_sha=self._sha(),
                head_repo=head_repo,
                author_association=author_association,
            )
            r.pulls[issue.number] = pull
            r.commits.update((pull.head_sha, pull.base_sha))
            return pull.number, pull.head_sha

    def push(self, repo: str, pr_number: int) -> str:
        """Push a new commit to the pull request's branch; returns the new head SHA."""
        with self._lock:
            pull = self._pull(repo, pr_number)
            pull.head_sha = self._sha()
            self._repo(repo).commits.add(pull.head_sha)
            self._issue(repo, pr_number).updated_at = self._now()
            return pull.head_sha

    def close_issue(self, repo: str, number: int, reason: str = "completed") -> None:
        """Close an issue (or a pull request, unmerged) as a person would."""
        with self._lock:
            self._set_state(self._issue(repo, number), "closed", reason)

    def reopen_issue(self, repo: str, number: int) -> None:
        """Reopen an issue or pull request."""
        with self._lock:
            self._set_state(self._issue(repo, number), "open", "reopened")

    def close_pull(self, repo: str, number: int) -> None:
        """Close a pull request without merging it."""
        with self._lock:
            self._pull(repo, number)
            self._set_state(self._issue(repo, number), "closed", None)

    def set_labels(self, repo: str, number: int, labels: Iterable[str]) -> None:
        """Replace an issue's labels as a person would."""
        with self._lock:
            issue = self._issue(repo, number)
            self._relabel(issue, self._use_labels(self._repo(repo), labels))
            issue.updated_at = self._now()

    def add_label(
        self, repo: str, name: str, *, color: str | None = None, description: str | None = None
    ) -> str:
        """Create label ``name`` in ``repo`` (if it does not exist); its GraphQL node id."""
        with self._lock:
            label = self._label(self._repo(repo), name)
            if color is not None:
                label.color = color
            if description is not None:
                label.description = description
            return label.node_id

    def add_user(self, login: str) -> str:
        """Make ``login`` a known user (``user(login:)`` finds it); its GraphQL node id."""
        with self._lock:
            self._users[login.lower()] = login
            return _node_id("U_", _user_id(login))

    def merge_queue(self, repo: str) -> list[int]:
        """Numbers of the pull requests in ``repo``'s merge queue, in queue order."""
        with self._lock:
            return [entry.number for entry in self._live_queue(self._repo(repo))]

    def eject_from_merge_queue(self, repo: str, number: int) -> bool:
        """Remove pull request ``number`` from the merge queue unmerged, as GitHub does
        when the merge group's checks fail, it conflicts, or a person removes it (GitHub
        then sends ``pull_request`` ``dequeued`` with a ``reason``; the tests deliver it).
        True if it was queued."""
        with self._lock:
            r = self._repo(repo)
            before = len(r.queue)
            r.queue[:] = [entry for entry in r.queue if entry.number != number]
            return len(r.queue) < before

    def land_merge_queue(self, repo: str) -> list[tuple[int, str]]:
        """Merge every queued pull request, as GitHub does once the queue's checks pass.

        Each is merged at the head it was enqueued with (``merged``,
        ``merge_commit_sha``, the issues its body closes closed, as a REST merge does);
        returns ``(number, merge commit SHA)`` pairs in queue order and empties the queue.
        """
        with self._lock:
            r = self._repo(repo)
            entries = self._live_queue(r)
            r.queue.clear()
            return [(entry.number, self._complete_merge(r, entry.number)) for entry in entries]

    def report_checks(
        self,
        repo: str,
        sha: str,
        conclusion: str | None,
        *,
        status: str = "completed",
        check_runs: int = 1,
        app: str = "ci",
        names: Sequence[str] | None = None,
    ) -> int:
        """Add a check suite of App ``app`` on commit ``sha``, as a CI App would.

        Every call adds one suite, as several CI Apps (or several GitHub Actions
        workflows) each have their own. A completed suite needs a ``conclusion``; any
        other ``status`` (``queued``, ``in_progress`` ...) must have None.
        ``check_runs=0`` is the suite GitHub creates for an installed App that never
        runs anything. The suite's ``head_branch`` and ``pull_requests`` are those of
        the open pull request whose head is ``sha``, if any. Its check runs share the
        suite's status and conclusion and are named ``names`` (default ``app`` for one
        run, ``app/1``, ``app/2`` ... for more). Sends no webhook; returns the suite id
        (for :meth:`complete_checks`).
        """
        if names is not None:
            check_runs = len(names)
        if status not in CHECK_SUITE_STATUSES:
            raise ValueError(f"status must be one of {sorted(CHECK_SUITE_STATUSES)}")
        if conclusion is not None and conclusion not in CHECK_SUITE_CONCLUSIONS:
            raise ValueError(f"conclusion must be one of {sorted(CHECK_SUITE_CONCLUSIONS)}")
        if (status == "completed") != (conclusion is not None):
            raise ValueError("a completed suite has a conclusion, an unfinished one none")
        if check_runs < 0:
            raise ValueError("check_runs cannot be negative")
        with self._lock:
            r = self._repo(repo)
            now = self._now()
            head = self._open_pulls_at(r, sha)
            suite = StandInCheckSuite(
                id=self._new_id(),
                head_sha=sha,
                head_branch=head[0].head_ref if head else None,
                app=app,
                status=status,
                conclusion=conclusion,
                check_runs=check_runs,
                created_at=now,
                updated_at=now,
            )
            if names is None:
                names = [app] if check_runs == 1 else [f"{app}/{i + 1}" for i in range(check_runs)]
            for name in names:
                run_id = self._new_id()
                url = f"{self.url}/{r.full_name}/runs/{run_id}"
                suite.runs.append(StandInCheckRun(run_id, name, status, conclusion, url))
            r.commits.add(sha)
            r.check_suites.setdefault(sha, []).append(suite)
            return suite.id

    # -- checks and commit statuses (several suites per commit, runs per suite) ----------

    def complete_checks(
        self, repo: str, suite_id: int, conclusion: str, *, runs: Mapping[str, str] | None = None
    ) -> None:
        """Complete suite ``suite_id`` and its check runs with ``conclusion``.

        ``runs`` gives some runs (by name) their own conclusion; the suite's conclusion
        is then the worst one, as GitHub rolls it up. Sends no webhook.
        """
        if conclusion not in CHECK_SUITE_CONCLUSIONS:
            raise ValueError(f"conclusion must be one of {sorted(CHECK_SUITE_CONCLUSIONS)}")
        with self._lock:
            suite = next(
                s
                for suites in self._repo(repo).check_suites.values()
                for s in suites
                if s.id == suite_id
            )
            for run in suite.runs:
                run.status = "completed"
                run.conclusion = (runs or {}).get(run.name, conclusion)
            failing = [
                r.conclusion
                for r in suite.runs
                if r.conclusion not in ("success", "neutral", "skipped")
            ]
            suite.status, suite.conclusion = "completed", failing[0] if failing else conclusion
            suite.updated_at = self._now()

    def set_status(
        self, repo: str, sha: str, context: str, state: str, target_url: str | None = None
    ) -> None:
        """Create a commit status on ``sha`` (``error``, ``failure``, ``pending``, ``success``).

        As on GitHub, the latest status of each context is the one that counts.
        """
        if state not in COMMIT_STATUS_STATES:
            raise ValueError(f"state must be one of {sorted(COMMIT_STATUS_STATES)}")
        with self._lock:
            r = self._repo(repo)
            r.commits.add(sha)
            url = target_url or f"{self.url}/ci/{context}/{sha[:7]}"
            r.statuses.setdefault(sha, []).append(StandInStatus(context, state, url, self._now()))

    def _gql_checks_field(self, field_name: str, source: Any, arguments: Mapping[str, Any]) -> Any:
        """``Repository.pullRequest`` and the connections below it (commits, checks)."""
        if field_name == "pullRequest":
            return self._gql_pull_request(source["_repo"], int(arguments["number"]))
        items = source[f"_{field_name}"]
        if field_name == "checkRuns":
            items = _filter_runs(items, arguments.get("filterBy"))
        return _connection(items, arguments)

    def _latest_statuses(self, r: _Repo, sha: str) -> list[StandInStatus]:
        """The latest status of each context on ``sha``, in order of first appearance."""
        latest: dict[str, StandInStatus] = {}
        for status in r.statuses.get(sha, []):
            latest[status.context] = status
        return list(latest.values())

    def _gql_pull_request(self, r: _Repo, number: int) -> dict[str, Any] | None:
        """The GraphQL ``PullRequest`` of ``number``, its head commit's checks included."""
        pull = r.pulls.get(number)
        if pull is None:
            raise _FieldError(
                "NOT_FOUND", f"Could not resolve to a PullRequest with the number of {number}."
            )
        issue = r.issues[number]
        suites = [
            {
                "status": suite.status.upper(),
                "conclusion": suite.conclusion.upper() if suite.conclusion else None,
                "app": {"name": _APP_NAMES.get(suite.app, suite.app), "slug": suite.app},
                "url": f"{self.url}/{r.full_name}/commit/{suite.head_sha}/checks",
                "_checkRuns": [
                    {
                        "name": run.name,
                        "status": run.status.upper(),
                        "conclusion": run.conclusion.upper() if run.conclusion else None,
                        "detailsUrl": run.details_url,
                        "url": run.details_url,
                    }
                    for run in suite.runs
                ],
            }
            for suite in r.check_suites.get(pull.head_sha, [])
        ]
        contexts = [
            {"context": s.context, "state": s.state.upper(), "targetUrl": s.target_url}
            for s in self._latest_statuses(r, pull.head_sha)
        ]
        commit = {
            "oid": pull.head_sha,
            "_checkSuites": suites,
            "status": None
            if not contexts
            else {"state": _combined(contexts), "contexts": contexts},
        }
        return {
            "number": number,
            "headRefOid": pull.head_sha,
            "headRefName": pull.head_ref,
            "isCrossRepository": pull.head_repo is not None,
            "authorAssociation": self._association(r, issue, pull),
            "_commits": [{"commit": commit}],
        }

    @staticmethod
    def _association(r: _Repo, issue: StandInIssue, pull: StandInPull) -> str:
        if pull.author_association is not None:
            return pull.author_association
        return "OWNER" if issue.author == r.owner else "MEMBER"

    # -- fault injection ----------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        """Answer the next ``n`` requests (any endpoint) with ``status``, changing nothing."""
        self.faults.add(fault_kit.server_error(status), n)

    def rate_limit_next(self, retry_after: int = 1, count: int = 1) -> None:
        """Answer the next ``count`` requests 403 "secondary rate limit" + ``Retry-After``."""
        self.faults.add(fault_kit.github_secondary_limit(retry_after), count)

    def primary_rate_limit_next(self, reset_in: float = 30.0) -> None:
        """Spend the REST (``core``) budget: 403 with ``x-ratelimit-remaining: 0``.

        ``x-ratelimit-reset`` says the limit lifts ``reset_in`` seconds from now (by the
        stand-in's clock); as on GitHub, every ``core`` request before then gets the same
        403 (recorded, so a test can count requests sent too early).
        """
        self.faults.add(fault_kit.github_primary_limit(self._clock() + reset_in))

    def graphql_rate_limit_next(
        self, reset_in: float = 30.0, *, match: Match | None = None
    ) -> None:
        """Spend the GraphQL budget: the next ``POST /graphql`` (matching ``match``) gets
        **HTTP 200** with ``errors[].type == "RATE_LIMITED"``, and so does every GraphQL
        request until the reset ``reset_in`` seconds from now."""
        self.faults.add(fault_kit.graphql_rate_limited(self._clock() + reset_in, match=match))

    def apply_then_fail_next(
        self, status: int = 502, *, match: Match | None = None, count: int = 1
    ) -> None:
        """Serve (and apply) the next matching request, then answer ``status`` instead."""
        fault = fault_kit.server_error(status, phase=Phase.AFTER, match=match or fault_kit.ANY)
        self.faults.add(fault, count)

    def apply_then_drop_next(self, *, match: Match | None = None, delay: float = 0.0) -> None:
        """Serve (and apply) the next matching request, then close the connection unanswered."""
        self.faults.add(fault_kit.dropped(delay=delay, match=match or fault_kit.ANY))

    # -- reading the state --------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    def issue(self, repo: str, number: int) -> StandInIssue:
        """A copy of an issue (pull requests have one too)."""
        with self._lock:
            return copy.deepcopy(self._issue(repo, number))

    def issues(self, repo: str) -> list[StandInIssue]:
        """Copies of every issue of ``repo`` (pull requests' included), by number."""
        with self._lock:
            r = self._repo(repo)
            return [copy.deepcopy(r.issues[n]) for n in sorted(r.issues)]

    def labels(self, repo: str) -> dict[str, str]:
        """Every label of ``repo`` (used on an issue or created): node ids by name."""
        with self._lock:
            return {label.name: label.node_id for label in self._repo(repo).labels.values()}

    def pull(self, repo: str, number: int) -> StandInPull:
        """A copy of a pull request's branch and merge state."""
        with self._lock:
            return copy.deepcopy(self._pull(repo, number))

    def check_suites(self, repo: str, sha: str) -> list[StandInCheckSuite]:
        """Copies of the check suites on commit ``sha``, oldest first."""
        with self._lock:
            return copy.deepcopy(self._repo(repo).check_suites.get(sha, []))

    def dispatches(self, repo: str) -> list[Dispatch]:
        """Workflow dispatches accepted for ``repo``, oldest first."""
        with self._lock:
            return list(self._repo(repo).dispatches)

    def comments(self, repo: str, number: int) -> list[str]:
        """Bodies of the comments on an issue or pull request, oldest first."""
        with self._lock:
            return [c.body for c in self._issue(repo, number).comments]

    # -- state internals (callers hold the lock) ----------------------------------------

    def _now(self) -> str:
        return _iso(self._clock())

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _sha() -> str:
        return secrets.token_hex(20)

    def _repo(self, repo: str) -> _Repo:
        if repo not in self._repos:
            owner, _, name = repo.partition("/")
            if not owner or not name or "/" in name:
                raise ValueError(f"repository must look like owner/name, got {repo!r}")
            self._repos[repo] = _Repo(owner, name, self._new_id(), self._now())
        return self._repos[repo]

    def _issue(self, repo: str, number: int) -> StandInIssue:
        try:
            return self._repo(repo).issues[number]
        except KeyError:
            raise KeyError(f"{repo} has no issue #{number}") from None

    def _pull(self, repo: str, number: int) -> StandInPull:
        try:
            return self._repo(repo).pulls[number]
        except KeyError:
            raise KeyError(f"{repo} has no pull request #{number}") from None

    def _new_issue(
        self,
        r: _Repo,
        *,
        title: str,
        body: str,
        labels: Iterable[str],
        author: str,
        created_at: str | None = None,
    ) -> StandInIssue:
        number = r.next_number
        r.next_number += 1
        now = self._now()
        issue = StandInIssue(
            id=self._new_id(),
            number=number,
            title=title,
            body=body,
            labels=self._use_labels(r, labels),
            created_at=created_at or now,
            updated_at=now,
            author=author,
        )
        r.issues[number] = issue
        return issue

    def _label(self, r: _Repo, name: str) -> StandInLabel:
        """The label ``name`` of ``r`` (case-insensitive), created on first use."""
        label = r.labels.get(name.lower())
        if label is None:
            label_id = int(
                hashlib.sha256(f"{r.full_name}:{name.lower()}".encode()).hexdigest()[:8], 16
            )
            color = hashlib.sha256(name.encode()).hexdigest()[:6]
            label = r.labels[name.lower()] = StandInLabel(label_id, name, color)
        return label

    @staticmethod
    def _relabel(issue: StandInIssue, labels: list[str]) -> None:
        """Replace the issue's labels, adding the timeline events of what changed."""
        before = {name.lower() for name in issue.labels}
        after = {name.lower() for name in labels}
        issue.label_events += [("unlabeled", n) for n in issue.labels if n.lower() not in after]
        issue.label_events += [("labeled", n) for n in labels if n.lower() not in before]
        issue.labels = labels

    def _use_labels(self, r: _Repo, names: Iterable[str]) -> list[str]:
        """``names`` without duplicates, every one registered as a label of ``r``."""
        unique = list(dict.fromkeys(names))
        for name in unique:
            self._label(r, name)
        return unique

    def _known_users(self) -> dict[str, str]:
        """Every login a ``user(login:)`` query finds, by lower-cased login.

        Owners, authors, assignees and commenters seen anywhere, and :meth:`add_user`'s;
        ``[bot]`` logins are Apps, not users, as on GitHub.
        """
        seen: list[str] = []
        for r in self._repos.values():
            seen.append(r.owner)
            for issue in r.issues.values():
                seen += [issue.author, *issue.assignees, *(c.author for c in issue.comments)]
        known = {login.lower(): login for login in seen if not login.endswith("[bot]")}
        return {**known, **self._users}

    @staticmethod
    def _open_pulls_at(r: _Repo, sha: str) -> list[StandInPull]:
        """The open pull requests whose head is ``sha``, by number."""
        return [
            pull
            for number, pull in sorted(r.pulls.items())
            if pull.head_sha == sha and not pull.merged and r.issues[number].state == "open"
        ]

    def _live_queue(self, r: _Repo) -> list[StandInQueueEntry]:
        """Queue entries still valid: open, unmerged, head unchanged since enqueued.

        GitHub drops a pull request from the queue when it is closed or pushed to.
        """
        r.queue[:] = [
            entry
            for entry in r.queue
            if r.issues[entry.number].state == "open"
            and not r.pulls[entry.number].merged
            and r.pulls[entry.number].head_sha == entry.head_sha
        ]
        return list(r.queue)

    def _complete_merge(self, r: _Repo, number: int) -> str:
        """Merge pull request ``number`` (checks already passed); the merge commit SHA."""
        pull, issue = r.pulls[number], r.issues[number]
        pull.merged = True
        pull.merged_at = self._now()
        pull.merge_commit_sha = self._sha()
        pull.base_sha = pull.merge_commit_sha
        r.commits.add(pull.merge_commit_sha)
        self._set_state(issue, "closed", None)
        for match in CLOSING_KEYWORDS.finditer(issue.body or ""):
            closed = r.issues.get(int(match.group(1)))
            if closed is not None and closed.number not in r.pulls and closed.state == "open":
                self._set_state(closed, "closed", "completed")
        return pull.merge_commit_sha

    def _set_state(self, issue: StandInIssue, state: str, reason: str | None) -> None:
        now = self._now()
        if state != issue.state:
            issue.closed_at = now if state == "closed" else None
            issue.state_reason = reason
        issue.state = state
        issue.updated_at = now

    # -- HTTP ---------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        """Answer one request (called on the server's handler thread)."""
        split = urlsplit(handler.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        authorization = headers.pop("authorization", "")
        body: Json = None
        parse_error: Answer | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                parse_error = _error(400, "Problems parsing JSON")
        # GraphQL has its own budget on GitHub (counted here as one point a request).
        resource = "graphql" if split.path == "/graphql" else "core"
        with self._lock:
            fault = self.faults.take(FaultRequest(handler.command, split.path, body))
            if fault is not None and fault.phase is Phase.INSTEAD:
                answer = fault.answer(_error(500, "unused"))
            else:
                answer = (
                    parse_error
                    or self._spent_limit_answer(resource)
                    or self._answer(handler.command, split.path, query, body, authorization)
                )
                if fault is not None and fault.phase is Phase.AFTER:
                    answer = fault.answer(answer)
            status, payload, extra = answer
            extra = {**extra}
            if handler.command == "GET" and status == 200:
                etag = 'W/"' + hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:40] + '"'
                extra["etag"] = etag
                if etag in {t.strip() for t in headers.get("if-none-match", "").split(",")}:
                    status, payload = 304, None
            if self._clock() >= self._window_reset:
                self._used, self._window_reset = {}, self._clock() + 3600
            if status != 304:  # GitHub does not count a 304 against the rate limit
                self._used[resource] = self._used.get(resource, 0) + 1
            used = self._used.get(resource, 0)
            reset = self._window_reset
            rate = {
                "x-ratelimit-limit": str(self._limit),
                "x-ratelimit-remaining": str(max(0, self._limit - used)),
                "x-ratelimit-reset": str(int(reset)),
                "x-ratelimit-used": str(used),
                "x-ratelimit-resource": resource,
            }
            extra = {**rate, **extra}
            self._note_spent_limit(resource, extra)
            self._requests.append(
                RecordedRequest(
                    method=handler.command,
                    path=split.path,
                    query=query,
                    body=body,
                    headers=headers,
                    auth_scheme=authorization.strip().partition(" ")[0].lower(),
                    status=status,
                    response=copy.deepcopy(payload),
                    at=self._clock(),
                    fault=fault.name if fault is not None else extra.pop("x-standin-fault", None),
                )
            )
            extra.pop("x-standin-fault", None)
        if fault is not None and fault.delay > 0:
            time.sleep(fault.delay)
        if fault is not None and fault.phase is Phase.DROP:
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(handler, status, payload, extra)

    def _spent_limit_answer(self, resource: str) -> Answer | None:
        """GitHub's answer while ``resource``'s primary limit is spent, else None."""
        until = self._limited_until.get(resource)
        if until is None or self._clock() >= until:
            return None
        spent = (
            fault_kit.graphql_rate_limited(until)
            if resource == "graphql"
            else fault_kit.github_primary_limit(until)
        )
        status, body, headers = spent.answer(_error(500, "unused"))
        return status, body, {**headers, "x-standin-fault": spent.name}

    def _note_spent_limit(self, resource: str, headers: Mapping[str, str]) -> None:
        """Remember an injected ``remaining: 0`` so later requests before the reset get it too."""
        if headers.get("x-ratelimit-remaining") != "0":
            return
        with contextlib.suppress(KeyError, ValueError):
            until = float(headers["x-ratelimit-reset"])
            if until > self._clock() and until < self._window_reset:
                self._limited_until[resource] = until

    @staticmethod
    def _write(handler: _Handler, status: int, payload: Json, headers: Mapping[str, str]) -> None:
        handler.send_response(status)
        handler.send_header("x-github-request-id", secrets.token_hex(8).upper())
        handler.send_header("x-github-media-type", "github.v3; format=json")
        for name, value in headers.items():
            handler.send_header(name, value)
        data = b""
        if status not in (204, 304):
            if payload is not None:
                data = json.dumps(payload).encode()
                handler.send_header("content-type", "application/json; charset=utf-8")
            handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        if data:
            handler.wfile.write(data)
        handler.wfile.flush()

    def _answer(
        self, method: str, path: str, query: Mapping[str, str], body: Json, authorization: str
    ) -> Answer:
        scheme, _, credential = authorization.strip().partition(" ")
        route = _route(method, path)
        needs_jwt = route is not None and route[0]
        denied = self._authenticate(scheme, credential.strip(), jwt=needs_jwt)
        if denied is not None:
            if path == "/graphql":
                body = denied[1]
                if body["message"] == "Requires authentication":
                    body["message"] = "This endpoint requires you to be authenticated."
                body["documentation_url"] = GRAPHQL_DOCS_URL
            return denied
        if route is None:
            return _error(404, "Not Found")
        _, action, params = route
        repo: _Repo | None = None
        if "owner" in params:
            repo = self._repos.get(f"{params.pop('owner')}/{params.pop('name')}")
            if repo is None:
                return _error(404, "Not Found")
        return action(self, repo, params, query, body)

    def _authenticate(self, scheme: str, credential: str, *, jwt: bool) -> Answer | None:
        """None if the credential may call the endpoint, else the 401 answer."""
        scheme = scheme.lower()
        if not credential or scheme not in ("token", "bearer"):
            return _error(401, "Requires authentication")
        if jwt:
            if scheme != "bearer" or not self._valid_jwt(credential):
                return _error(401, "A JSON web token could not be decoded")
            return None
        if credential == self.token:
            return None
        expiry = self._installation_tokens.get(credential)
        if expiry is not None and expiry > self._clock():
            return None
        return _error(401, "Bad credentials")

    def _jwt_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of an RS256 JWT (signature checked if a key is configured)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return None
        if self._app_public_key is not None:
            import jwt as pyjwt

            try:
                claims = pyjwt.decode(
                    token,
                    self._app_public_key,
                    algorithms=["RS256"],
                    options={"require": ["exp", "iat", "iss"]},
                    leeway=60,
                )
            except pyjwt.PyJWTError:
                return None
        return claims if isinstance(claims, dict) else None

    def _valid_jwt(self, token: str) -> bool:
        """An RS256 App JWT for :attr:`app_id`, unexpired, at most 10 minutes long."""
        claims = self._jwt_claims(token)
        if claims is None:
            return False
        now = time.time()
        try:
            exp, iat = float(claims["exp"]), float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            return False
        return (
            str(claims.get("iss")) == self.app_id
            and exp > now
            and iat <= now + 60
            and exp - iat <= 600 + 60
        )

    # -- endpoints (called with the lock held) ------------------------------------------

    def _list_issues(
        self, r: _Repo, _params: dict[str, str], query: Mapping[str, str], _body: Json
    ) -> Answer:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            return _validation_failed("Validation Failed", "state")
        wanted = [x.strip().lower() for x in query.get("labels", "").split(",") if x.strip()]
        try:
            per_page = min(100, max(1, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            return _validation_failed("Validation Failed", "per_page")
        sort = query.get("sort", "created")
        reverse = query.get("direction", "desc") != "asc"

        def sort_key(i: StandInIssue) -> tuple[Any, int]:
            key: Any = {"updated": i.updated_at, "comments": len(i.comments)}.get(
                sort, i.created_at
            )
            return key, i.number

        matching = [
            i
            for i in r.issues.values()
            if state in ("all", i.state)
            and all(w in {label.lower() for label in i.labels} for w in wanted)
        ]
        matching.sort(key=sort_key, reverse=reverse)
        items = matching[(page - 1) * per_page : page * per_page]
        headers = self._page_links(
            f"/repos/{r.full_name}/issues", query, page, per_page, len(matching)
        )
        return 200, [self._issue_json(r, i) for i in items], headers

    def _page_links(
        self, path: str, query: Mapping[str, str], page: int, per_page: int, total: int
    ) -> dict[str, str]:
        """The ``Link`` header of page ``page`` of ``total`` items (none if one page)."""
        last = max(1, -(-total // per_page))
        links = []

        def link(n: int, rel: str) -> str:
            q = {**query, "per_page": str(per_page), "page": str(n)}
            return f'<{self.url}{path}?{urlencode(q)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return {"link": ", ".join(links)} if links else {}

    def _get_issue(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        issue = r.issues.get(int(params["number"]))
        if issue is None:
            return _error(404, "Not Found")
        return 200, self._issue_json(r, issue), {}

    def _patch_issue(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        issue = r.issues.get(int(params["number"]))
        if issue is None:
            return _error(404, "Not Found")
        body = {} if body is None else body
        if not isinstance(body, dict):
            return _error(422, "Invalid request.\n\nThe request body must be an object.")
        problem = _check_issue_patch(body)
        if problem is not None:
            return problem
        if "title" in body and body["title"] is not None:
            issue.title = str(body["title"])
        if "body" in body:
            issue.body = body["body"] or ""
        if body.get("labels") is not None:
            names = [x if isinstance(x, str) else x["name"] for x in body["labels"]]
            self._relabel(issue, self._use_labels(r, names))
        if body.get("assignees") is not None:
            issue.assignees = list(dict.fromkeys(body["assignees"]))
        if "milestone" in body and body["milestone"] is None:
            issue.milestone_title = issue.milestone_due_on = None
        if "state" in body:
            default = "completed" if body["state"] == "closed" else "reopened"
            self._set_state(issue, body["state"], body.get("state_reason") or default)
        issue.updated_at = self._now()
        return 200, self._issue_json(r, issue), {}

    def _post_comment(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        issue = r.issues.get(int(params["number"]))
        if issue is None:
            return _error(404, "Not Found")
        if not isinstance(body, dict) or not isinstance(body.get("body"), str):
            return _validation_failed("Validation Failed", "body", "missing_field")
        comment = StandInComment(self._new_id(), body["body"], "valine[bot]", self._now())
        issue.comments.append(comment)
        issue.updated_at = comment.created_at
        document = self._comment_json(r, issue, comment)
        return 201, document, {"location": document["url"]}

    def _list_comments(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        issue = r.issues.get(int(params["number"]))
        if issue is None:
            return _error(404, "Not Found")
        return 200, [self._comment_json(r, issue, c) for c in issue.comments], {}

    def _dispatch(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
            return _error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        inputs = body.get("inputs")
        if not isinstance(inputs, dict):
            return _error(422, 'Invalid request.\n\n"inputs" wasn\'t supplied.')
        if len(inputs) > 25 or not all(
            isinstance(v, str | int | float | bool) for v in inputs.values()
        ):
            return _error(422, "Invalid request.\n\nFor 'properties/inputs', invalid inputs.")
        r.dispatches.append(Dispatch(unquote(params["workflow"]), body["ref"], dict(inputs)))
        return 204, None, {}

    def _get_pull(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        number = int(params["number"])
        if number not in r.pulls:
            return _error(404, "Not Found")
        return 200, self._pull_json(r, r.issues[number], r.pulls[number]), {}

    def _list_check_suites(
        self, r: _Repo, params: dict[str, str], query: Mapping[str, str], _body: Json
    ) -> Answer:
        ref = unquote(params["ref"])
        sha = self._resolve_ref(r, ref)
        if sha is None:
            return _error(422, f"No commit found for SHA: {ref}")
        try:
            per_page = min(100, max(1, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
            app_id = int(query["app_id"]) if "app_id" in query else None
        except ValueError:
            return _validation_failed("Validation Failed", "per_page", resource="CheckSuite")
        suites = [
            suite
            for suite in r.check_suites.get(sha, [])
            if app_id is None or self._app_json(suite.app)["id"] == app_id
        ]
        items = suites[(page - 1) * per_page : page * per_page]
        path = f"/repos/{r.full_name}/commits/{params['ref']}/check-suites"
        answer = {
            "total_count": len(suites),
            "check_suites": [self._check_suite_json(r, suite) for suite in items],
        }
        return 200, answer, self._page_links(path, query, page, per_page, len(suites))

    @staticmethod
    def _resolve_ref(r: _Repo, ref: str) -> str | None:
        """The commit ``ref`` names: a known SHA, or a pull request's branch."""
        if ref in r.commits:
            return ref
        branch = ref.removeprefix("heads/")
        for _, pull in sorted(r.pulls.items(), reverse=True):  # the newest branch wins
            if pull.head_ref == branch:
                return pull.head_sha
        return None

    def _merge(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        number = int(params["number"])
        refusal = self._merge_refusal(r, number, {} if body is None else body)
        if refusal is not None:
            return refusal
        answer = {
            "sha": self._complete_merge(r, number),
            "merged": True,
            "message": "Pull Request successfully merged",
        }
        return 200, answer, {}

    @staticmethod
    def _merge_refusal(r: _Repo, number: int, body: Json) -> Answer | None:
        """Why GitHub would refuse to merge, in GitHub's order; None if it would merge."""
        pull = r.pulls.get(number)
        if pull is None:
            return _error(404, "Not Found")
        if not isinstance(body, dict):
            return _error(422, "Invalid request.\n\nThe request body must be an object.")
        sha = body.get("sha")
        if body.get("merge_method", "merge") not in _MERGE_METHODS:
            problem: Answer | None = _validation_failed("Validation Failed", "merge_method")
        elif sha is not None and not isinstance(sha, str):
            problem = _validation_failed("Validation Failed", "sha")
        elif pull.merged or r.issues[number].state != "open":
            problem = _error(405, NOT_MERGEABLE_MESSAGE)
        elif r.merge_queue:
            problem = _error(405, MERGE_QUEUE_MESSAGE)
        elif sha is not None and sha != pull.head_sha:
            problem = _error(409, HEAD_MOVED_MESSAGE)
        else:
            problem = None
        return problem

    def _installation(
        self, r: _Repo, _params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        return 200, self._installation_json(r.owner), {}

    def _access_token(
        self, _r: None, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        if int(params["installation_id"]) != self.installation_id:
            return _error(404, "Not Found")
        token = "ghs_" + secrets.token_hex(18)
        expires = self._clock() + self._token_ttl
        self._installation_tokens[token] = expires
        answer = {
            "token": token,
            "expires_at": _iso(expires),
            "permissions": {
                "issues": "write",
                "pull_requests": "write",
                "actions": "write",
                "contents": "write",
            },
            "repository_selection": "all",
        }
        return 201, answer, {}

    # -- GraphQL (called with the lock held) --------------------------------------------

    def _graphql(
        self, _r: None, _params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        """``POST /graphql``: validate the whole document, then run it field by field."""
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _error(400, "A query attribute must be specified and must be a string.")
        values = body.get("variables")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            return _error(400, "Variables must be an object.")
        try:
            operation = _parse_graphql(body["query"])
            variables = _coerce_variables(operation, values)
        except _GraphQLError as refusal:
            return 200, {"errors": [refusal.as_json()]}, {}
        root = "Mutation" if operation.kind == "mutation" else "Query"
        errors: list[dict[str, Any]] = []
        data = self._gql_object(
            root, None, operation.selections, path=[], variables=variables, errors=errors
        )
        answer: dict[str, Any] = {"data": data}
        if errors:
            answer["errors"] = errors
        return 200, answer, {}

    def _gql_object(
        self,
        type_name: str,
        source: Any,
        selections: Sequence[_Selection],
        *,
        path: list[str | int],
        variables: Mapping[str, Any],
        errors: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The selected fields of one object, in order (mutation fields run serially).

        A field selected twice under one key (validation made sure they agree) runs once.
        """
        result: dict[str, Any] = {}
        for selection in selections:
            key = selection.key
            if key in result:
                continue
            if selection.name == "__typename":
                result[key] = type_name
                continue
            field_type, _ = _GQL_OBJECTS[type_name][selection.name]
            arguments = {
                name: variables.get(value.name) if isinstance(value, _Variable) else value
                for name, value in selection.arguments.items()
            }
            try:
                value = self._gql_resolve(type_name, selection.name, source, arguments)
            except _FieldError as failure:
                errors.append(
                    {
                        "type": failure.type,
                        "path": [*path, key],
                        "locations": [{"line": selection.line, "column": selection.column}],
                        "message": failure.message,
                    }
                )
                result[key] = None
                continue
            target = _named_type(field_type)
            if value is None or target not in _GQL_OBJECTS:
                result[key] = value
            elif isinstance(value, list):
                assert selection.selections is not None  # validated
                result[key] = [
                    None
                    if item is None
                    else self._gql_object(
                        target,
                        item,
                        selection.selections,
                        path=[*path, key, i],
                        variables=variables,
                        errors=errors,
                    )
                    for i, item in enumerate(value)
                ]
            else:
                assert selection.selections is not None  # validated
                result[key] = self._gql_object(
                    target,
                    value,
                    selection.selections,
                    path=[*path, key],
                    variables=variables,
                    errors=errors,
                )
        return result

    def _gql_resolve(
        self, type_name: str, field_name: str, source: Any, arguments: Mapping[str, Any]
    ) -> Any:
        """One field's value: a leaf, the source of an object, or None."""
        if type_name == "Query":
            if field_name == "repository":
                return self._gql_repository(str(arguments["owner"]), str(arguments["name"]))
            return self._gql_user(str(arguments["login"]))
        if type_name == "Mutation":
            mutation = _GQL_MUTATIONS[field_name]
            payload: dict[str, Any] = mutation(self, arguments["input"])
            return {"clientMutationId": arguments["input"].get("clientMutationId"), **payload}
        if (type_name, field_name) in _GQL_CONNECTIONS or field_name == "pullRequest":
            return self._gql_checks_field(field_name, source, arguments)
        if type_name == "Repository" and field_name == "label":
            label = source["_repo"].labels.get(str(arguments["name"]).lower())
            return None if label is None else self._gql_label(label)
        return source[field_name]

    def _gql_repository(self, owner: str, name: str) -> dict[str, Any]:
        wanted = f"{owner}/{name}".lower()
        for r in self._repos.values():
            if r.full_name.lower() == wanted:
                return {
                    "_repo": r,
                    "id": _node_id("R_", r.id),
                    "name": r.name,
                    "nameWithOwner": r.full_name,
                }
        raise _FieldError(
            "NOT_FOUND", f"Could not resolve to a Repository with the name '{owner}/{name}'."
        )

    def _gql_user(self, login: str) -> dict[str, Any]:
        known = self._known_users().get(login.lower())
        if known is None:
            raise _FieldError(
                "NOT_FOUND", f"Could not resolve to a User with the login of '{login}'."
            )
        return {"id": _node_id("U_", _user_id(known)), "login": known}

    @staticmethod
    def _gql_label(label: StandInLabel) -> dict[str, Any]:
        return {
            "id": label.node_id,
            "name": label.name,
            "color": label.color,
            "description": label.description,
        }

    # node ids -> state

    @staticmethod
    def _not_found(node_id: Any) -> _FieldError:
        return _FieldError(
            "NOT_FOUND", f"Could not resolve to a node with the global id of '{node_id}'."
        )

    def _node_issue(self, node_id: Any) -> tuple[_Repo, StandInIssue]:
        """The issue of an issue's or a pull request's node id."""
        decoded = _decode_node_id(node_id)
        if decoded is not None and decoded[0] in ("I_", "PR_"):
            kind, number = decoded
            for r in self._repos.values():
                for issue in r.issues.values():
                    pull = r.pulls.get(issue.number)
                    if (kind == "I_" and issue.id == number) or (
                        kind == "PR_" and pull is not None and pull.id == number
                    ):
                        return r, issue
        raise self._not_found(node_id)

    def _node_label(self, r: _Repo, node_id: Any) -> StandInLabel:
        """A label of ``r`` by node id."""
        decoded = _decode_node_id(node_id)
        for label in r.labels.values():
            if decoded == ("LA_", label.id):
                return label
        raise self._not_found(node_id)

    def _node_user(self, node_id: Any) -> str:
        """A known user's login by node id."""
        decoded = _decode_node_id(node_id)
        for login in self._known_users().values():
            if decoded == ("U_", _user_id(login)):
                return login
        raise self._not_found(node_id)

    # mutations: each validates its whole input before changing anything

    def _gql_add_labels(self, data: Mapping[str, Any]) -> dict[str, Any]:
        r, issue = self._node_issue(data["labelableId"])
        labels = [self._node_label(r, node_id) for node_id in data["labelIds"]]
        present = {name.lower() for name in issue.labels}
        for label in labels:
            if label.name.lower() not in present:
                issue.labels.append(label.name)
                issue.label_events.append(("labeled", label.name))
                present.add(label.name.lower())
        issue.updated_at = self._now()
        return {}

    def _gql_remove_labels(self, data: Mapping[str, Any]) -> dict[str, Any]:
        r, issue = self._node_issue(data["labelableId"])
        removed = {self._node_label(r, node_id).name.lower() for node_id in data["labelIds"]}
        kept = [name for name in issue.labels if name.lower() not in removed]
        self._relabel(issue, kept)
        issue.updated_at = self._now()
        return {}

    def _gql_add_comment(self, data: Mapping[str, Any]) -> dict[str, Any]:
        _, issue = self._node_issue(data["subjectId"])
        comment = StandInComment(self._new_id(), str(data["body"]), "valine[bot]", self._now())
        issue.comments.append(comment)
        issue.updated_at = comment.created_at
        return {}

    def _gql_add_assignees(self, data: Mapping[str, Any]) -> dict[str, Any]:
        _, issue = self._node_issue(data["assignableId"])
        logins = [self._node_user(node_id) for node_id in data["assigneeIds"]]
        issue.assignees = list(dict.fromkeys([*issue.assignees, *logins]))
        issue.updated_at = self._now()
        return {}

    def _gql_close_issue(self, data: Mapping[str, Any]) -> dict[str, Any]:
        r, issue = self._node_issue(data["issueId"])
        if issue.number in r.pulls:
            raise _FieldError(
                "NOT_FOUND",
                f"Could not resolve to an Issue with the global id of '{data['issueId']}'.",
            )
        reason = str(data.get("stateReason") or "COMPLETED").lower()
        self._set_state(issue, "closed", reason)
        return {}

    def _gql_create_label(self, data: Mapping[str, Any]) -> dict[str, Any]:
        decoded = _decode_node_id(data["repositoryId"])
        r = next((r for r in self._repos.values() if decoded == ("R_", r.id)), None)
        if r is None:
            raise self._not_found(data["repositoryId"])
        name, color = str(data["name"]), str(data["color"])
        if not name.strip():
            raise _FieldError("UNPROCESSABLE", "Name can't be blank")
        if name.lower() in r.labels:
            raise _FieldError("UNPROCESSABLE", "Name has already been taken")
        if not re.fullmatch(r"[0-9A-Fa-f]{6}", color):
            raise _FieldError("UNPROCESSABLE", "Color is invalid")
        label = self._label(r, name)
        label.color, label.description = color.lower(), data.get("description")
        return {"label": self._gql_label(label)}

    def _gql_enqueue(self, data: Mapping[str, Any]) -> dict[str, Any]:
        r, issue = self._node_issue(data["pullRequestId"])
        pull = r.pulls.get(issue.number)
        if pull is None:
            raise self._not_found(data["pullRequestId"])
        if pull.merged or issue.state != "open":
            raise _FieldError("UNPROCESSABLE", NOT_ENQUEUEABLE_MESSAGE)
        if not r.merge_queue:
            raise _FieldError("UNPROCESSABLE", NO_MERGE_QUEUE_MESSAGE)
        expected = data.get("expectedHeadOid")
        if expected is not None and expected != pull.head_sha:
            raise _FieldError("UNPROCESSABLE", HEAD_MOVED_MESSAGE)
        queue = self._live_queue(r)
        entry = next((e for e in queue if e.number == pull.number), None)
        if entry is None:
            entry = StandInQueueEntry(self._new_id(), pull.number, pull.head_sha, self._now())
            if data.get("jump"):
                r.queue.insert(0, entry)
            else:
                r.queue.append(entry)
        position = 1 + r.queue.index(entry)
        node = {
            "id": _node_id("MQE_", entry.id),
            "position": position,
            "state": "QUEUED",
            "enqueuedAt": entry.enqueued_at,
        }
        return {"mergeQueueEntry": node}

    # -- documents shaped like GitHub's -------------------------------------------------

    def _user(self, login: str) -> dict[str, Any]:
        user_id = _user_id(login)
        api = f"{self.url}/users/{login}"
        return {
            "login": login,
            "id": user_id,
            "node_id": _node_id("U_", user_id),
            "avatar_url": f"{self.url}/avatars/{login}",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.url}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "site_admin": False,
        }

    def _repo_json(self, r: _Repo) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}"
        html = f"{self.url}/{r.full_name}"
        templated = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "statuses_url": "/statuses/{sha}",
            "trees_url": "/git/trees{/sha}",
        }
        plain = [
            "contributors",
            "deployments",
            "downloads",
            "events",
            "forks",
            "hooks",
            "languages",
            "merges",
            "stargazers",
            "subscribers",
            "subscription",
            "tags",
            "teams",
        ]
        open_issues = sum(1 for i in r.issues.values() if i.state == "open")
        document: dict[str, Any] = {
            "id": r.id,
            "node_id": _node_id("R_", r.id),
            "name": r.name,
            "full_name": r.full_name,
            "owner": self._user(r.owner),
            "private": False,
            "html_url": html,
            "description": None,
            "fork": False,
            "url": api,
            **{key: api + suffix for key, suffix in templated.items()},
            **{f"{name}_url": f"{api}/{name}" for name in plain},
            "git_url": f"git://standin/{r.full_name}.git",
            "ssh_url": f"git@standin:{r.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": "Python",
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": r.default_branch,
            "open_issues": open_issues,
            "open_issues_count": open_issues,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": False,
            "archived": False,
            "disabled": False,
            "license": None,
            "pushed_at": r.created_at,
            "created_at": r.created_at,
            "updated_at": r.created_at,
        }
        return document

    def _label_json(self, r: _Repo, name: str) -> dict[str, Any]:
        label = self._label(r, name)
        return {
            "id": label.id,
            "node_id": label.node_id,
            "url": f"{self.url}/repos/{r.full_name}/labels/{label.name}",
            "name": label.name,
            "description": label.description,
            "color": label.color,
            "default": False,
        }

    def _milestone_json(self, r: _Repo, issue: StandInIssue) -> dict[str, Any] | None:
        if issue.milestone_title is None:
            return None
        title = issue.milestone_title
        number = int(hashlib.sha256(title.encode()).hexdigest()[:4], 16)
        api = f"{self.url}/repos/{r.full_name}/milestones/{number}"
        return {
            "url": api,
            "html_url": f"{self.url}/{r.full_name}/milestone/{number}",
            "labels_url": f"{api}/labels",
            "id": number,
            "node_id": _node_id("MI_", number),
            "number": number,
            "state": "open",
            "title": title,
            "description": None,
            "creator": self._user(r.owner),
            "open_issues": 1,
            "closed_issues": 0,
            "created_at": r.created_at,
            "updated_at": r.created_at,
            "closed_at": None,
            "due_on": issue.milestone_due_on,
        }

    def _issue_json(self, r: _Repo, issue: StandInIssue) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}/issues/{issue.number}"
        assignees = [self._user(login) for login in issue.assignees]
        pull = r.pulls.get(issue.number)
        kind = "pull" if pull else "issues"
        document: dict[str, Any] = {
            "id": issue.id,
            "node_id": _node_id("I_", issue.id),
            "url": api,
            "repository_url": f"{self.url}/repos/{r.full_name}",
            "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments",
            "events_url": f"{api}/events",
            "html_url": f"{self.url}/{r.full_name}/{kind}/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "title": issue.title,
            "body": issue.body or None,
            "user": self._user(issue.author),
            "labels": [self._label_json(r, name) for name in issue.labels],
            "assignee": assignees[0] if assignees else None,
            "assignees": assignees,
            "milestone": self._milestone_json(r, issue),
            "locked": False,
            "active_lock_reason": None,
            "comments": len(issue.comments),
            "closed_at": issue.closed_at,
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "author_association": "OWNER" if issue.author == r.owner else "MEMBER",
        }
        if issue.state_reason is not None:
            # GitHub sends ``null`` here, but its description's enum does not allow it.
            document["state_reason"] = issue.state_reason
        if pull is not None:
            pulls_api = f"{self.url}/repos/{r.full_name}/pulls/{issue.number}"
            html = f"{self.url}/{r.full_name}/pull/{issue.number}"
            document["pull_request"] = {
                "url": pulls_api,
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": pull.merged_at,
            }
            document["draft"] = False
        return document

    def _comment_json(
        self, r: _Repo, issue: StandInIssue, comment: StandInComment
    ) -> dict[str, Any]:
        return {
            "id": comment.id,
            "node_id": _node_id("IC_", comment.id),
            "url": f"{self.url}/repos/{r.full_name}/issues/comments/{comment.id}",
            "html_url": (
                f"{self.url}/{r.full_name}/issues/{issue.number}#issuecomment-{comment.id}"
            ),
            "issue_url": f"{self.url}/repos/{r.full_name}/issues/{issue.number}",
            "body": comment.body,
            "user": self._user(comment.author),
            "created_at": comment.created_at,
            "updated_at": comment.created_at,
            "author_association": "NONE",
        }

    def _pull_json(self, r: _Repo, issue: StandInIssue, pull: StandInPull) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}/pulls/{pull.number}"
        html = f"{self.url}/{r.full_name}/pull/{pull.number}"
        issue_api = f"{self.url}/repos/{r.full_name}/issues/{pull.number}"
        statuses = f"{self.url}/repos/{r.full_name}/statuses/{pull.head_sha}"
        repo = self._repo_json(r)
        owner = self._user(r.owner)
        assignees = [self._user(login) for login in issue.assignees]
        links = {
            "self": api,
            "html": html,
            "issue": issue_api,
            "comments": f"{issue_api}/comments",
            "review_comments": f"{api}/comments",
            "review_comment": f"{self.url}/repos/{r.full_name}/pulls/comments{{/number}}",
            "commits": f"{api}/commits",
            "statuses": statuses,
        }
        is_open = issue.state == "open" and not pull.merged
        return {
            "url": api,
            "id": pull.id,
            "node_id": _node_id("PR_", pull.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue_api,
            "commits_url": f"{api}/commits",
            "review_comments_url": f"{api}/comments",
            "review_comment_url": links["review_comment"],
            "comments_url": f"{issue_api}/comments",
            "statuses_url": statuses,
            "number": pull.number,
            "state": "open" if is_open else "closed",
            "locked": False,
            "title": issue.title,
            "user": self._user(issue.author),
            "body": issue.body or None,
            "labels": [self._label_json(r, name) for name in issue.labels],
            "milestone": self._milestone_json(r, issue),
            "active_lock_reason": None,
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": issue.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": assignees[0] if assignees else None,
            "assignees": assignees,
            "requested_reviewers": [],
            "requested_teams": [],
            "head": self._pull_head_json(r, pull),
            "base": {
                "label": f"{r.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": pull.base_sha,
                "user": owner,
                "repo": repo,
            },
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": self._association(r, issue, pull),
            "auto_merge": None,
            "draft": False,
            "merged": pull.merged,
            "mergeable": True if is_open else None,
            "mergeable_state": "clean" if is_open else "unknown",
            "merged_by": self._user(r.owner) if pull.merged else None,
            "comments": len(issue.comments),
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 1,
            "deletions": 0,
            "changed_files": 1,
        }

    def _pull_head_json(self, r: _Repo, pull: StandInPull) -> dict[str, Any]:
        """A pull request's ``head``: a branch of this repository or of a fork."""
        head = r if pull.head_repo is None else self._repo(pull.head_repo)
        return {
            "label": f"{head.owner}:{pull.head_ref}",
            "ref": pull.head_ref,
            "sha": pull.head_sha,
            "user": self._user(head.owner),
            "repo": self._repo_json(head),
        }

    def _app_json(self, slug: str) -> dict[str, Any]:
        """A GitHub App (the ``integration`` of GitHub's description) named by its slug."""
        app_id = _user_id(f"app/{slug}")
        created = _iso(self._window_reset - 3600)
        return {
            "id": app_id,
            "slug": slug,
            "node_id": _node_id("A_", app_id),
            "client_id": f"Iv1.{hashlib.sha256(slug.encode()).hexdigest()[:16]}",
            "owner": self._user("github"),
            "name": _APP_NAMES.get(slug, slug),
            "description": None,
            "external_url": f"{self.url}/apps/{slug}",
            "html_url": f"{self.url}/apps/{slug}",
            "created_at": created,
            "updated_at": created,
            "permissions": {"checks": "write", "contents": "read", "metadata": "read"},
            "events": ["check_run", "check_suite", "pull_request", "push"],
        }

    def _pull_minimal_json(self, r: _Repo, pull: StandInPull) -> dict[str, Any]:
        repo = {"id": r.id, "url": f"{self.url}/repos/{r.full_name}", "name": r.name}
        return {
            "id": pull.id,
            "number": pull.number,
            "url": f"{self.url}/repos/{r.full_name}/pulls/{pull.number}",
            "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": repo},
            "base": {"ref": pull.base_ref, "sha": pull.base_sha, "repo": repo},
        }

    def _check_suite_json(self, r: _Repo, suite: StandInCheckSuite) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}/check-suites/{suite.id}"
        author = {"name": "Octo Cat", "email": "octocat@users.noreply.github.com"}
        tree = hashlib.sha1(suite.head_sha.encode(), usedforsecurity=False).hexdigest()
        return {
            "id": suite.id,
            "node_id": _node_id("CS_", suite.id),
            "head_branch": suite.head_branch,
            "head_sha": suite.head_sha,
            "status": suite.status,
            "conclusion": suite.conclusion,
            "url": api,
            "before": "0" * 40,
            "after": suite.head_sha,
            "pull_requests": [
                self._pull_minimal_json(r, pull) for pull in self._open_pulls_at(r, suite.head_sha)
            ],
            "app": self._app_json(suite.app),
            "repository": self._repo_json(r),
            "created_at": suite.created_at,
            "updated_at": suite.updated_at,
            "head_commit": {
                "id": suite.head_sha,
                "tree_id": tree,
                "message": f"Commit {suite.head_sha[:7]}",
                "timestamp": suite.created_at,
                "author": author,
                "committer": author,
            },
            "latest_check_runs_count": suite.check_runs,
            "check_runs_url": f"{api}/check-runs",
            "rerequestable": True,
            "runs_rerequestable": True,
        }

    def _installation_json(self, owner: str) -> dict[str, Any]:
        created = _iso(self._window_reset - 3600)
        return {
            "id": self.installation_id,
            "account": self._user(owner),
            "repository_selection": "all",
            "access_tokens_url": (
                f"{self.url}/app/installations/{self.installation_id}/access_tokens"
            ),
            "repositories_url": f"{self.url}/installation/repositories",
            "html_url": f"{self.url}/settings/installations/{self.installation_id}",
            "app_id": int(self.app_id) if self.app_id.isdigit() else 1,
            "app_slug": "valine-orchestrator",
            "target_id": self._user(owner)["id"],
            "target_type": "Organization",
            "permissions": {"issues": "write", "pull_requests": "write", "actions": "write"},
            "events": ["issues", "issue_comment", "pull_request", "check_suite"],
            "created_at": created,
            "updated_at": created,
            "single_file_name": None,
            "suspended_by": None,
            "suspended_at": None,
        }


def _check_issue_patch(body: Mapping[str, Any]) -> Answer | None:
    """GitHub's 422 for a malformed ``PATCH /issues/{n}`` body, or None."""
    if "state" in body and body["state"] not in ("open", "closed"):
        return _validation_failed("Validation Failed", "state")
    for name in ("labels", "assignees"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            return _error(
                422, f"Invalid request.\n\nFor 'properties/{name}', {value!r} is not an array."
            )
        for item in value:
            ok = isinstance(item, str) or (
                name == "labels" and isinstance(item, dict) and isinstance(item.get("name"), str)
            )
            if not ok:
                return _validation_failed("Validation Failed", name)
    if "title" in body and not isinstance(body["title"], str | int | type(None)):
        return _validation_failed("Validation Failed", "title")
    if "body" in body and not isinstance(body["body"], str | type(None)):
        return _validation_failed("Validation Failed", "body")
    return None


# -- GraphQL: parsing and validating the subset of GitHub's schema the stand-in serves ---


class _GraphQLError(Exception):
    """A document GitHub would refuse as a whole (syntax, validation, variables)."""

    def __init__(
        self,
        message: str,
        *,
        at: _Token | _Selection | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = None if at is None else at.line
        self.column = None if at is None else at.column
        self.extensions = extensions

    def as_json(self) -> dict[str, Any]:
        """The ``errors`` entry GitHub would send."""
        entry: dict[str, Any] = {"message": self.message}
        if self.line is not None:
            entry["locations"] = [{"line": self.line, "column": self.column}]
        if self.extensions:
            entry["extensions"] = self.extensions
        return entry


class _FieldError(Exception):
    """One field failed while running: it becomes ``null`` and an ``errors`` entry."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.type = error_type
        self.message = message


@dataclass(frozen=True)
class _Token:
    kind: str  # "punct", "name", "number", "string" or "eof"
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class _Variable:
    """A ``$name`` reference in an argument."""

    name: str


@dataclass(frozen=True)
class _Selection:
    """One field of a selection set: ``alias: name(arguments) { selections }``."""

    alias: str | None
    name: str
    arguments: dict[str, Any]
    selections: tuple[_Selection, ...] | None
    line: int
    column: int

    @property
    def key(self) -> str:
        """The key of the field in the answer."""
        return self.alias or self.name


@dataclass(frozen=True)
class _Operation:
    """The one operation of a document."""

    kind: str  # "query" or "mutation"
    variables: dict[str, str]  # name -> declared type, e.g. "[ID!]!"
    selections: tuple[_Selection, ...]


_GQL_TOKEN = re.compile(
    r"(?P<skip>[\s,\ufeff]+|#[^\n\r]*)"
    r"|(?P<spread>\.\.\.)"
    r"|(?P<punct>[!$&()\[\]{}:=@|])"
    r"|(?P<name>[_A-Za-z][_0-9A-Za-z]*)"
    r"|(?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    r'|(?P<block>""")'
    r'|(?P<string>"(?:[^"\\\n\r]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*")'
)


def _unsupported(what: str, token: _Token) -> _GraphQLError:
    return _GraphQLError(
        f"The GitHub stand-in does not support {what}",
        at=token,
    )


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, line, line_start = 0, 1, 0
    while position < len(source):
        match = _GQL_TOKEN.match(source, position)
        column = position - line_start + 1
        if match is None:
            where = _Token("unknown", source[position], line, column)
            raise _GraphQLError(f'Parse error on "{where.text}" at [{line}, {column}]', at=where)
        kind = match.lastgroup or "skip"
        text = match.group()
        if kind == "spread":
            raise _unsupported("fragments", _Token(kind, text, line, column))
        if kind == "block":
            raise _unsupported("block strings", _Token(kind, text, line, column))
        if kind != "skip":
            tokens.append(_Token(kind, text, line, column))
        for newline in re.finditer(r"\r\n|[\n\r]", text):
            line, line_start = line + 1, position + newline.end()
        position = match.end()
    column = position - line_start + 1
    tokens.append(_Token("eof", "", line, column))
    return tokens


class _Parser:
    """Recursive descent over the tokens of one executable document (no fragments)."""

    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.index = 0

    def peek(self, text: str | None = None) -> bool:
        token = self.tokens[self.index]
        return token.kind != "eof" and (text is None or token.text == text)

    def take(self, kind: str | None = None, text: str | None = None) -> _Token:
        token = self.tokens[self.index]
        if token.kind == "eof":
            raise _GraphQLError("Unexpected end of document", at=token)
        if (kind is not None and token.kind != kind) or (text is not None and token.text != text):
            raise _GraphQLError(
                f'Parse error on "{token.text}" ({token.kind.upper()}) '
                f"at [{token.line}, {token.column}]",
                at=token,
            )
        self.index += 1
        return token

    def document(self) -> _Operation:
        operation = self.operation()
        token = self.tokens[self.index]
        if token.kind != "eof":
            if token.text in ("query", "mutation", "subscription", "fragment", "{"):
                raise _unsupported("documents with several definitions", token)
            self.take("eof")
        return operation

    def operation(self) -> _Operation:
        token = self.tokens[self.index]
        variables: dict[str, str] = {}
        if token.text == "{":
            kind = "query"
        elif token.kind == "name" and token.text in ("query", "mutation"):
            kind = self.take().text
            if self.tokens[self.index].kind == "name":
                self.take("name")  # the operation's name
            if self.peek("("):
                variables = self.variable_definitions()
            if self.peek("@"):
                raise _unsupported("directives", self.tokens[self.index])
        elif token.text in ("subscription", "fragment"):
            raise _unsupported(f"{token.text}s", token)
        else:
            self.take("punct", "{")
            raise AssertionError("unreachable")  # take() raised
        return _Operation(kind, variables, self.selection_set())

    def variable_definitions(self) -> dict[str, str]:
        self.take("punct", "(")
        variables: dict[str, str] = {}
        while True:
            dollar = self.take("punct", "$")
            name = self.take("name").text
            self.take("punct", ":")
            type_text = self.type_reference()
            if self.peek("="):
                raise _unsupported("default values", self.tokens[self.index])
            if self.peek("@"):
                raise _unsupported("directives", self.tokens[self.index])
            if name in variables:
                raise _GraphQLError(
                    f'There can be only one variable named "{name}"',
                    at=dollar,
                )
            variables[name] = type_text
            if self.peek(")"):
                break
        self.take("punct", ")")
        return variables

    def type_reference(self) -> str:
        if self.peek("["):
            self.take()
            text = f"[{self.type_reference()}]"
            self.take("punct", "]")
        else:
            text = self.take("name").text
        if self.peek("!"):
            self.take()
            text += "!"
        return text

    def selection_set(self) -> tuple[_Selection, ...]:
        self.take("punct", "{")
        selections = [self.selection()]
        while not self.peek("}"):
            selections.append(self.selection())
        self.take("punct", "}")
        return tuple(selections)

    def selection(self) -> _Selection:
        first = self.take("name")
        alias, name = None, first.text
        if self.peek(":"):
            self.take()
            alias, name = first.text, self.take("name").text
        arguments: dict[str, Any] = {}
        if self.peek("("):
            self.take()
            while True:
                argument = self.take("name")
                self.take("punct", ":")
                if argument.text in arguments:
                    raise _GraphQLError(
                        f'There can be only one argument named "{argument.text}"',
                        at=argument,
                    )
                arguments[argument.text] = self.value()
                if self.peek(")"):
                    break
            self.take("punct", ")")
        if self.peek("@"):
            raise _unsupported("directives", self.tokens[self.index])
        selections = self.selection_set() if self.peek("{") else None
        return _Selection(alias, name, arguments, selections, first.line, first.column)

    def value(self) -> Any:
        token = self.tokens[self.index]
        if token.text == "$":
            self.take()
            return _Variable(self.take("name").text)
        if token.kind == "string":
            self.take()
            return json.loads(token.text)
        if token.kind == "number":
            self.take()
            return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
        if token.kind == "name" and token.text in ("true", "false", "null"):
            self.take()
            return {"true": True, "false": False, "null": None}[token.text]
        if token.text in ("[", "{") or token.kind == "name":
            raise _unsupported("literal lists, objects and enums (pass them as variables)", token)
        self.take("name")
        raise AssertionError("unreachable")  # take() raised


#: Input object types: field -> type, as in GitHub's schema (``@octokit/graphql-schema``'s
#: ``schema.json``, which its ``validate`` uses; the contract tests compare the two).
_GQL_INPUTS: dict[str, dict[str, str]] = {
    "CheckRunFilter": {
        "checkType": "CheckRunType",
        "appId": "Int",
        "checkName": "String",
        "status": "CheckStatusState",
        "statuses": "[CheckStatusState!]",
        "conclusions": "[CheckConclusionState!]",
    },
    "CheckSuiteFilter": {"appId": "Int", "checkName": "String"},
    "AddLabelsToLabelableInput": {
        "clientMutationId": "String",
        "labelIds": "[ID!]!",
        "labelableId": "ID!",
    },
    "RemoveLabelsFromLabelableInput": {
        "clientMutationId": "String",
        "labelIds": "[ID!]!",
        "labelableId": "ID!",
    },
    "AddCommentInput": {"body": "String!", "clientMutationId": "String", "subjectId": "ID!"},
    "AddAssigneesToAssignableInput": {
        "assignableId": "ID!",
        "assigneeIds": "[ID!]!",
        "clientMutationId": "String",
    },
    "CloseIssueInput": {
        "clientMutationId": "String",
        "issueId": "ID!",
        "stateReason": "IssueClosedStateReason",
    },
    "CreateLabelInput": {
        "clientMutationId": "String",
        "color": "String!",
        "description": "String",
        "name": "String!",
        "repositoryId": "ID!",
    },
    "EnqueuePullRequestInput": {
        "clientMutationId": "String",
        "expectedHeadOid": "GitObjectID",
        "jump": "Boolean",
        "pullRequestId": "ID!",
    },
}
_GQL_ENUMS: dict[str, tuple[str, ...]] = {
    "CheckRunType": ("ALL", "LATEST"),
    "CheckStatusState": ("REQUESTED", "QUEUED", "IN_PROGRESS", "COMPLETED", "WAITING", "PENDING"),
    "CheckConclusionState": (
        "ACTION_REQUIRED",
        "TIMED_OUT",
        "CANCELLED",
        "FAILURE",
        "SUCCESS",
        "NEUTRAL",
        "SKIPPED",
        "STARTUP_FAILURE",
        "STALE",
    ),
    "StatusState": ("EXPECTED", "ERROR", "FAILURE", "PENDING", "SUCCESS"),
    "CommentAuthorAssociation": (
        "MEMBER",
        "OWNER",
        "MANNEQUIN",
        "COLLABORATOR",
        "CONTRIBUTOR",
        "FIRST_TIME_CONTRIBUTOR",
        "FIRST_TIMER",
        "NONE",
    ),
    "IssueClosedStateReason": ("COMPLETED", "NOT_PLANNED"),
    "MergeQueueEntryState": (
        "AWAITING_CHECKS",
        "LOCKED",
        "MERGEABLE",
        "QUEUED",
        "UNMERGEABLE",
    ),
}
_GQL_SCALARS = frozenset({"Boolean", "DateTime", "GitObjectID", "ID", "Int", "String", "URI"})
_PAGE = {"after": "String", "before": "String", "first": "Int", "last": "Int"}
#: Connection fields the stand-in cuts with ``first`` / ``last``.
_GQL_CONNECTIONS = frozenset(
    {("PullRequest", "commits"), ("Commit", "checkSuites"), ("CheckSuite", "checkRuns")}
)
_PAYLOAD: dict[str, tuple[str, dict[str, str]]] = {"clientMutationId": ("String", {})}
#: Output object types: field -> (type, arguments). A subset of GitHub's schema.
_GQL_OBJECTS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "Query": {
        "repository": (
            "Repository",
            {"owner": "String!", "name": "String!", "followRenames": "Boolean"},
        ),
        "user": ("User", {"login": "String!"}),
    },
    "Mutation": {
        "addLabelsToLabelable": (
            "AddLabelsToLabelablePayload",
            {"input": "AddLabelsToLabelableInput!"},
        ),
        "removeLabelsFromLabelable": (
            "RemoveLabelsFromLabelablePayload",
            {"input": "RemoveLabelsFromLabelableInput!"},
        ),
        "addComment": ("AddCommentPayload", {"input": "AddCommentInput!"}),
        "addAssigneesToAssignable": (
            "AddAssigneesToAssignablePayload",
            {"input": "AddAssigneesToAssignableInput!"},
        ),
        "closeIssue": ("CloseIssuePayload", {"input": "CloseIssueInput!"}),
        "createLabel": ("CreateLabelPayload", {"input": "CreateLabelInput!"}),
        "enqueuePullRequest": ("EnqueuePullRequestPayload", {"input": "EnqueuePullRequestInput!"}),
    },
    "Repository": {
        "id": ("ID!", {}),
        "name": ("String!", {}),
        "nameWithOwner": ("String!", {}),
        "label": ("Label", {"name": "String!"}),
        "pullRequest": ("PullRequest", {"number": "Int!"}),
    },
    "PullRequest": {
        "number": ("Int!", {}),
        "headRefOid": ("GitObjectID!", {}),
        "headRefName": ("String!", {}),
        "isCrossRepository": ("Boolean!", {}),
        "authorAssociation": ("CommentAuthorAssociation!", {}),
        "commits": ("PullRequestCommitConnection!", _PAGE),
    },
    "PullRequestCommitConnection": {
        "nodes": ("[PullRequestCommit]", {}),
        "totalCount": ("Int!", {}),
        "pageInfo": ("PageInfo!", {}),
    },
    "PullRequestCommit": {"commit": ("Commit!", {})},
    "Commit": {
        "oid": ("GitObjectID!", {}),
        "checkSuites": ("CheckSuiteConnection", {**_PAGE, "filterBy": "CheckSuiteFilter"}),
        "status": ("Status", {}),
    },
    "CheckSuiteConnection": {
        "nodes": ("[CheckSuite]", {}),
        "totalCount": ("Int!", {}),
        "pageInfo": ("PageInfo!", {}),
    },
    "CheckSuite": {
        "status": ("CheckStatusState!", {}),
        "conclusion": ("CheckConclusionState", {}),
        "app": ("App", {}),
        "url": ("URI!", {}),
        "checkRuns": ("CheckRunConnection", {**_PAGE, "filterBy": "CheckRunFilter"}),
    },
    "App": {"name": ("String!", {}), "slug": ("String!", {})},
    "CheckRunConnection": {
        "nodes": ("[CheckRun]", {}),
        "totalCount": ("Int!", {}),
        "pageInfo": ("PageInfo!", {}),
    },
    "CheckRun": {
        "name": ("String!", {}),
        "status": ("CheckStatusState!", {}),
        "conclusion": ("CheckConclusionState", {}),
        "detailsUrl": ("URI", {}),
        "url": ("URI!", {}),
    },
    "Status": {"state": ("StatusState!", {}), "contexts": ("[StatusContext!]!", {})},
    "StatusContext": {
        "context": ("String!", {}),
        "state": ("StatusState!", {}),
        "targetUrl": ("URI", {}),
    },
    "PageInfo": {"hasNextPage": ("Boolean!", {}), "endCursor": ("String", {})},
    "Label": {
        "id": ("ID!", {}),
        "name": ("String!", {}),
        "color": ("String!", {}),
        "description": ("String", {}),
    },
    "User": {"id": ("ID!", {}), "login": ("String!", {})},
    "MergeQueueEntry": {
        "id": ("ID!", {}),
        "position": ("Int!", {}),
        "state": ("MergeQueueEntryState!", {}),
        "enqueuedAt": ("DateTime!", {}),
    },
    "AddLabelsToLabelablePayload": _PAYLOAD,
    "RemoveLabelsFromLabelablePayload": _PAYLOAD,
    "AddCommentPayload": _PAYLOAD,
    "AddAssigneesToAssignablePayload": _PAYLOAD,
    "CloseIssuePayload": _PAYLOAD,
    "CreateLabelPayload": {**_PAYLOAD, "label": ("Label", {})},
    "EnqueuePullRequestPayload": {**_PAYLOAD, "mergeQueueEntry": ("MergeQueueEntry", {})},
}


def _named_type(type_text: str) -> str:
    return type_text.strip("[]!")


def _parse_graphql(document: str) -> _Operation:
    """The operation of ``document``, validated against the served subset of the schema."""
    operation = _Parser(document).document()
    for name, type_text in operation.variables.items():
        if _named_type(type_text) not in {*_GQL_INPUTS, *_GQL_SCALARS, *_GQL_ENUMS}:
            raise _GraphQLError(f"{_named_type(type_text)} isn't a defined input type (on ${name})")
    used: set[str] = set()
    root = "Mutation" if operation.kind == "mutation" else "Query"
    _check_selections(root, operation.selections, operation, used)
    for name in operation.variables:
        if name not in used:
            raise _GraphQLError(
                f"Variable ${name} is declared by anonymous {operation.kind} but not used"
            )
    return operation


def _check_selections(
    type_name: str, selections: Sequence[_Selection], operation: _Operation, used: set[str]
) -> None:
    """Raise the first validation error of ``selections`` on ``type_name``."""
    seen: dict[str, _Selection] = {}
    for selection in selections:
        earlier = seen.setdefault(selection.key, selection)
        if earlier is not selection and (
            earlier.name != selection.name or earlier.arguments != selection.arguments
        ):
            raise _GraphQLError(
                f"Field '{selection.key}' has an argument conflict or returns different fields",
                at=selection,
            )
        parameters: dict[str, str]
        if selection.name == "__typename":
            field_type, parameters = "String!", {}
        elif selection.name in _GQL_OBJECTS[type_name]:
            field_type, parameters = _GQL_OBJECTS[type_name][selection.name]
        else:
            raise _GraphQLError(
                f"Field '{selection.name}' doesn't exist on type '{type_name}'",
                extensions={
                    "code": "undefinedField",
                    "typeName": type_name,
                    "fieldName": selection.name,
                },
                at=selection,
            )
        for argument, value in selection.arguments.items():
            if argument not in parameters:
                raise _GraphQLError(
                    f"Field '{selection.name}' doesn't accept argument '{argument}'", at=selection
                )
            _check_argument(
                selection, argument, value, parameters[argument], operation=operation, used=used
            )
        missing = [
            a for a, t in parameters.items() if t.endswith("!") and a not in selection.arguments
        ]
        if missing:
            raise _GraphQLError(
                f"Field '{selection.name}' is missing required arguments: {', '.join(missing)}",
                at=selection,
            )
        target = _named_type(field_type)
        if target in _GQL_OBJECTS:
            if selection.selections is None:
                raise _GraphQLError(
                    f"Field must have selections (field '{selection.name}' returns {target} "
                    f"but has no selections. Did you mean '{selection.name} {{ ... }}'?)",
                    at=selection,
                )
            _check_selections(target, selection.selections, operation, used)
        elif selection.selections is not None:
            raise _GraphQLError(
                f"Selections can't be made on scalars (field '{selection.name}' returns "
                f"{target} but has selections)",
                at=selection,
            )


def _check_argument(
    selection: _Selection,
    argument: str,
    value: Any,
    expected: str,
    *,
    operation: _Operation,
    used: set[str],
) -> None:
    """Raise if ``value`` cannot be passed as ``argument`` of type ``expected``."""
    if isinstance(value, _Variable):
        declared = operation.variables.get(value.name)
        if declared is None:
            raise _GraphQLError(
                f"Variable ${value.name} is used by anonymous {operation.kind} but not declared",
                at=selection,
            )
        used.add(value.name)
        if declared.rstrip("!") != expected.rstrip("!"):
            raise _GraphQLError(
                f"Type mismatch on variable ${value.name} and argument {argument} "
                f"({declared} / {expected})",
                at=selection,
            )
        if expected.endswith("!") and not declared.endswith("!"):
            raise _GraphQLError(
                f"Nullability mismatch on variable ${value.name} and argument {argument} "
                f"({declared} / {expected})",
                at=selection,
            )
        return
    problems = _coerce_problems(value, expected, [])
    if problems:
        raise _GraphQLError(
            f"Argument '{argument}' on Field '{selection.name}' has an invalid value "
            f"({json.dumps(value)}). Expected type '{expected}'.",
            at=selection,
        )


def _coerce_problems(value: Any, type_text: str, path: list[str | int]) -> list[dict[str, Any]]:
    """Why ``value`` is not a valid input of type ``type_text`` (empty if it is)."""
    if type_text.endswith("!") and value is None:
        return [{"path": path, "explanation": "Expected value to not be null"}]
    type_text = type_text.removesuffix("!")
    if value is None:
        return []
    if type_text.startswith("["):
        items = value if isinstance(value, list) else [value]  # a single value is a list of one
        return [
            problem
            for i, item in enumerate(items)
            for problem in _coerce_problems(item, type_text[1:-1], [*path, i])
        ]
    if type_text in _GQL_INPUTS:
        return _input_object_problems(value, type_text, path)
    return _leaf_problems(value, type_text, path)


def _input_object_problems(
    value: Any, type_text: str, path: list[str | int]
) -> list[dict[str, Any]]:
    """Why ``value`` is not a valid input object of type ``type_text``."""
    fields = _GQL_INPUTS[type_text]
    if not isinstance(value, dict):
        explanation = f"Expected {json.dumps(value)} to be a key-value object"
        return [{"path": path, "explanation": explanation}]
    problems = [
        {"path": [*path, key], "explanation": f"Field is not defined on {type_text}"}
        for key in value
        if key not in fields
    ]
    for key, field_type in fields.items():
        problems += _coerce_problems(value.get(key), field_type, [*path, key])
    return problems


def _leaf_problems(value: Any, type_text: str, path: list[str | int]) -> list[dict[str, Any]]:
    """Why ``value`` is not a valid enum value or scalar of type ``type_text``."""
    if type_text in _GQL_ENUMS:
        valid = value in _GQL_ENUMS[type_text]
        choices = ", ".join(_GQL_ENUMS[type_text])
        explanation = f"Expected {json.dumps(value)} to be one of: {choices}"
    else:
        number = isinstance(value, int) and not isinstance(value, bool)
        valid = {
            "String": isinstance(value, str),
            "GitObjectID": isinstance(value, str),
            "DateTime": isinstance(value, str),
            "ID": isinstance(value, str) or number,
            "Int": number,
            "Boolean": isinstance(value, bool),
        }[type_text]
        explanation = f"Could not coerce value {json.dumps(value)} to {type_text}"
    return [] if valid else [{"path": path, "explanation": explanation}]


def _coerce_variables(operation: _Operation, values: Mapping[str, Any]) -> dict[str, Any]:
    """The declared variables' values; raise GitHub's error for the first invalid one."""
    coerced: dict[str, Any] = {}
    for name, type_text in operation.variables.items():
        value = values.get(name)
        problems = _coerce_problems(value, type_text, [])
        if problems:
            message = f"Variable ${name} of type {type_text} was provided invalid value"
            details = [
                f"{'.'.join(str(p) for p in problem['path'])} ({problem['explanation']})"
                for problem in problems
                if problem["path"]
            ]
            if details:
                message += " for " + ", ".join(details)
            raise _GraphQLError(message, extensions={"value": value, "problems": problems})
        coerced[name] = value
    return coerced


def _route(method: str, path: str) -> tuple[bool, _Action, dict[str, str]] | None:
    """``(needs_jwt, action, path parameters)`` of the endpoint, or None."""
    for route_method, pattern, needs_jwt, action in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and route_method == method:
            return needs_jwt, action, match.groupdict()
    return None


_Action = Callable[[GitHubStandIn, Any, dict[str, str], Mapping[str, str], Json], Answer]
_ROUTES: Sequence[tuple[str, re.Pattern[str], bool, _Action]] = [
    ("GET", re.compile(_REPO_PREFIX + r"/issues"), False, GitHubStandIn._list_issues),
    ("GET", re.compile(_REPO_PREFIX + r"/issues/(?P<number>\d+)"), False, GitHubStandIn._get_issue),
    (
        "PATCH",
        re.compile(_REPO_PREFIX + r"/issues/(?P<number>\d+)"),
        False,
        GitHubStandIn._patch_issue,
    ),
    (
        "POST",
        re.compile(_REPO_PREFIX + r"/issues/(?P<number>\d+)/comments"),
        False,
        GitHubStandIn._post_comment,
    ),
    (
        "GET",
        re.compile(_REPO_PREFIX + r"/issues/(?P<number>\d+)/comments"),
        False,
        GitHubStandIn._list_comments,
    ),
    (
        "POST",
        re.compile(_REPO_PREFIX + r"/actions/workflows/(?P<workflow>[^/]+)/dispatches"),
        False,
        GitHubStandIn._dispatch,
    ),
    ("GET", re.compile(_REPO_PREFIX + r"/pulls/(?P<number>\d+)"), False, GitHubStandIn._get_pull),
    (
        "GET",
        re.compile(_REPO_PREFIX + r"/commits/(?P<ref>.+)/check-suites"),
        False,
        GitHubStandIn._list_check_suites,
    ),
    (
        "PUT",
        re.compile(_REPO_PREFIX + r"/pulls/(?P<number>\d+)/merge"),
        False,
        GitHubStandIn._merge,
    ),
    ("GET", re.compile(_REPO_PREFIX + r"/installation"), True, GitHubStandIn._installation),
    ("POST", re.compile(r"/graphql"), False, GitHubStandIn._graphql),
    (
        "POST",
        re.compile(r"/app/installations/(?P<installation_id>\d+)/access_tokens"),
        True,
        GitHubStandIn._access_token,
    ),
]

_GQL_MUTATIONS: Mapping[str, Callable[[GitHubStandIn, Mapping[str, Any]], dict[str, Any]]] = {
    "addLabelsToLabelable": GitHubStandIn._gql_add_labels,
    "removeLabelsFromLabelable": GitHubStandIn._gql_remove_labels,
    "addComment": GitHubStandIn._gql_add_comment,
    "addAssigneesToAssignable": GitHubStandIn._gql_add_assignees,
    "closeIssue": GitHubStandIn._gql_close_issue,
    "createLabel": GitHubStandIn._gql_create_label,
    "enqueuePullRequest": GitHubStandIn._gql_enqueue,
}
