"""The GitHub stand-in's world: repositories, issues, pull requests, labels, checks.

What a person or CI changes (:meth:`GitHubState.add_issue`, :meth:`~GitHubState.open_pull`,
:meth:`~GitHubState.push`, :meth:`~GitHubState.report_checks` ...) and what tests read
back, with GitHub's rules that hold whichever API is used: pull requests are issues
(shared numbering); a label lives in a per-repository registry once an issue carries it,
its name matched case-insensitively; a merge closes the issues its body closes
(``Fixes #12``, ``closes: #3`` ...); a merge queue drops a pull request that is closed or
pushed to. Node ids are base64 of a kind prefix and a number, as the REST answers'
``node_id``. Everything is guarded by one lock (:attr:`GitHubState._lock`); the REST and
GraphQL views (:mod:`.rest`, :mod:`.graphql`) read and change this state only.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DOCS_URL = "https://docs.github.com/rest"
#: GitHub's closing keywords: ``close[sd]?``, ``fix(e[sd])?``, ``resolve[sd]?`` + ``#N``.
CLOSING_KEYWORDS = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b", re.IGNORECASE
)


HEAD_MOVED_MESSAGE = "Head branch was modified. Review and try the merge again."


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
class StandInHook:
    """A repository webhook (``GET /repos/{o}/{r}/hooks``)."""

    id: int
    url: str
    events: list[str]
    content_type: str = "json"
    active: bool = True
    created_at: str = "2026-01-01T00:00:00Z"


@dataclass
class _Org:
    """An organisation: its webhooks and who may read them (``GET /orgs/{org}/hooks``)."""

    login: str
    #: Organisation webhooks, oldest first (they receive every repository's events).
    hooks: list[StandInHook] = field(default_factory=list)
    #: Whether the personal token may read them (an owner's token with ``admin:org_hook``);
    #: without it GitHub answers 404.
    token_reads_hooks: bool = True
    #: The App installations granted the ``organization_hooks`` read permission; any other
    #: installation's token gets 403 "Resource not accessible by integration".
    hook_readers: set[int] = field(default_factory=set)


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
    #: Webhooks, oldest first.
    hooks: list[StandInHook] = field(default_factory=list)
    #: The token's role in the repository (``permissions`` of ``GET /repos/{o}/{r}``):
    #: "admin", "maintain", "push", "triage" or "pull". Below admin, reading the hooks
    #: is 404, as GitHub answers a token without admin rights.
    role: str = "admin"
    #: The GitHub App installation it sits in (None: the stand-in's ``installation_id``).
    installation_id: int | None = None
    #: Whether that installation was granted the Repository permission Webhooks (read):
    #: an installation token's ``GET /repos/{o}/{r}/hooks`` is 403 "Resource not
    #: accessible by integration" without it (an App has no role; the permission decides).
    installation_reads_hooks: bool = True

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


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


class GitHubState:
    """The stand-in's state and the changes a person or CI makes to it (one lock)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._users: dict[str, str] = {}
        #: Organisations by lower-case login (a repository's owner named here is one).
        self._orgs: dict[str, _Org] = {}
        self._next_id = 1000
        #: The installation every repository sits in unless :meth:`install` says otherwise.
        self.installation_id = 1
        #: The installation whose token authenticated the request being answered (None: a
        #: personal token or the App's JWT, which see every repository).
        self._caller_installation: int | None = None

    @property
    def url(self) -> str:
        """Base URL of the API (use it as ``GITHUB_API_URL``)."""
        return self._base_url()

    def _base_url(self) -> str:
        """Where the API is served; links in documents start with it."""
        raise RuntimeError("the GitHub stand-in is not started")

    def add_repo(self, repo: str, *, merge_queue: bool = False) -> None:
        """Create repository ``owner/name`` (helpers create it on first use too)."""
        with self._lock:
            self._repo(repo).merge_queue = merge_queue

    def install(self, repo: str, installation_id: int, *, reads_hooks: bool = True) -> None:
        """Put ``repo`` in the App installation ``installation_id``: only that
        installation's tokens see it (others get 404, as from a repository they lack);
        ``reads_hooks``: whether the App has the Repository permission Webhooks (read)."""
        with self._lock:
            found = self._repo(repo)
            found.installation_id = int(installation_id)
            found.installation_reads_hooks = reads_hooks

    def installation_of(self, repo: str) -> int:
        """The App installation ``repo`` sits in."""
        with self._lock:
            return self._installation_id_of(self._repo(repo))

    def _installation_id_of(self, r: _Repo) -> int:
        return r.installation_id if r.installation_id is not None else self.installation_id

    def _visible(self, r: _Repo) -> bool:
        """True if the request being answered may see ``r`` (its installation's token)."""
        caller = self._caller_installation
        return caller is None or caller == self._installation_id_of(r)

    def add_hook(
        self,
        repo: str,
        url: str,
        events: Iterable[str],
        *,
        content_type: str = "json",
        active: bool = True,
    ) -> int:
        """Add a webhook to ``repo`` (only listed: the stand-in delivers nothing); its id."""
        with self._lock:
            self._next_id += 1
            hook = StandInHook(self._next_id, url, list(events), content_type, active)
            self._repo(repo).hooks.append(hook)
            return hook.id

    def add_org(
        self, org: str, *, token_reads_hooks: bool = True, hook_readers: Iterable[int] = ()
    ) -> None:
        """Make ``org`` an organisation (its repositories' ``owner.type`` is
        ``Organization``): whether the personal token may read its webhooks, and which App
        installations have the ``organization_hooks`` read permission."""
        with self._lock:
            found = self._orgs.setdefault(org.lower(), _Org(org))
            found.token_reads_hooks = token_reads_hooks
            found.hook_readers = {int(i) for i in hook_readers}

    def add_org_hook(
        self,
        org: str,
        url: str,
        events: Iterable[str],
        *,
        content_type: str = "json",
        active: bool = True,
    ) -> int:
        """Add an organisation webhook (``org`` becomes an organisation); its id."""
        with self._lock:
            found = self._orgs.setdefault(org.lower(), _Org(org))
            self._next_id += 1
            hook = StandInHook(self._next_id, url, list(events), content_type, active)
            found.hooks.append(hook)
            return hook.id

    def set_role(self, repo: str, role: str) -> None:
        """The token's role in ``repo`` (see ``_Repo.role``)."""
        if role not in ("admin", "maintain", "push", "triage", "pull"):
            raise ValueError(f"unknown role {role!r}")
        with self._lock:
            self._repo(repo).role = role

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

    def _latest_statuses(self, r: _Repo, sha: str) -> list[StandInStatus]:
        """The latest status of each context on ``sha``, in order of first appearance."""
        latest: dict[str, StandInStatus] = {}
        for status in r.statuses.get(sha, []):
            latest[status.context] = status
        return list(latest.values())

    @staticmethod
    def _association(r: _Repo, issue: StandInIssue, pull: StandInPull) -> str:
        if pull.author_association is not None:
            return pull.author_association
        return "OWNER" if issue.author == r.owner else "MEMBER"

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


def _error(status: int, message: str, **extra: Any) -> Answer:
    body = {"message": message, "documentation_url": DOCS_URL, "status": str(status), **extra}
    return status, body, {}
