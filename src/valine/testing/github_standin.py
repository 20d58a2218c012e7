"""A stateful stand-in of GitHub's REST API, for tests, ``valine demo`` and local runs.

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

Stricter than GitHub on purpose: a workflow dispatch without ``inputs`` is refused
(``422``); the workflow executor always sends them.

Tests change the world as a person or CI would (:meth:`add_issue`, :meth:`open_pull`,
:meth:`push`, :meth:`close_issue`, :meth:`require_merge_queue`), inject faults
(:meth:`fail_next`, :meth:`rate_limit_next`, :meth:`primary_rate_limit_next`), and read
the state and the :attr:`requests` log. Everything is guarded by one lock.
"""

from __future__ import annotations

import base64
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

DOCS_URL = "https://docs.github.com/rest"
#: GitHub's closing keywords: ``close[sd]?``, ``fix(e[sd])?``, ``resolve[sd]?`` + ``#N``.
CLOSING_KEYWORDS = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b", re.IGNORECASE
)
MERGE_QUEUE_MESSAGE = "Changes must be made through the merge queue"
NOT_MERGEABLE_MESSAGE = "Pull Request is not mergeable"
HEAD_MOVED_MESSAGE = "Head branch was modified. Review and try the merge again."
SECONDARY_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
_REPO_PREFIX = r"/repos/(?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+)"
_MERGE_METHODS = frozenset({"merge", "squash", "rebase"})

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


def _error(status: int, message: str, **extra: Any) -> Answer:
    body = {"message": message, "documentation_url": DOCS_URL, "status": str(status), **extra}
    return status, body, {}


def _validation_failed(message: str, field_name: str, code: str = "invalid") -> Answer:
    error = {"resource": "Issue", "field": field_name, "code": code}
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
        self._faults: list[Answer] = []
        self._used = 0
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
    ) -> tuple[int, str]:
        """Open a pull request from ``head_ref``; returns ``(number, head_sha)``."""
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
            )
            r.pulls[issue.number] = pull
            return pull.number, pull.head_sha

    def push(self, repo: str, pr_number: int) -> str:
        """Push a new commit to the pull request's branch; returns the new head SHA."""
        with self._lock:
            pull = self._pull(repo, pr_number)
            pull.head_sha = self._sha()
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
            issue.labels = list(dict.fromkeys(labels))
            issue.updated_at = self._now()

    # -- fault injection ----------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        """Answer the next ``n`` requests (any endpoint) with ``status``."""
        with self._lock:
            for _ in range(n):
                self._faults.append(_error(status, "Server Error" if status >= 500 else "Error"))

    def rate_limit_next(self, retry_after: int = 1, count: int = 1) -> None:
        """Answer the next ``count`` requests 403 "secondary rate limit" + ``Retry-After``."""
        with self._lock:
            for _ in range(count):
                status, body, headers = _error(403, SECONDARY_LIMIT_MESSAGE)
                headers["retry-after"] = str(int(retry_after))
                self._faults.append((status, body, headers))

    def primary_rate_limit_next(self, reset_in: float = 30.0) -> None:
        """Answer the next request 403 with ``x-ratelimit-remaining: 0``.

        ``x-ratelimit-reset`` says the limit lifts ``reset_in`` seconds from now (by the
        stand-in's clock).
        """
        with self._lock:
            status, body, _ = _error(403, "API rate limit exceeded for user ID 1.")
            reset = str(int(self._clock() + reset_in))
            self._faults.append(
                (status, body, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})
            )

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

    def pull(self, repo: str, number: int) -> StandInPull:
        """A copy of a pull request's branch and merge state."""
        with self._lock:
            return copy.deepcopy(self._pull(repo, number))

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
            labels=list(dict.fromkeys(labels)),
            created_at=created_at or now,
            updated_at=now,
            author=author,
        )
        r.issues[number] = issue
        return issue

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
        with self._lock:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    answer: Answer = _error(400, "Problems parsing JSON")
                else:
                    answer = self._answer(handler.command, split.path, query, body, authorization)
            else:
                answer = self._answer(handler.command, split.path, query, body, authorization)
            status, payload, extra = answer
            extra = {**extra}
            if handler.command == "GET" and status == 200:
                etag = 'W/"' + hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:40] + '"'
                extra["etag"] = etag
                if etag in {t.strip() for t in headers.get("if-none-match", "").split(",")}:
                    status, payload = 304, None
            if self._clock() >= self._window_reset:
                self._used, self._window_reset = 0, self._clock() + 3600
            if status != 304:  # GitHub does not count a 304 against the rate limit
                self._used += 1
            reset = self._window_reset
            rate = {
                "x-ratelimit-limit": str(self._limit),
                "x-ratelimit-remaining": str(max(0, self._limit - self._used)),
                "x-ratelimit-reset": str(int(reset)),
                "x-ratelimit-used": str(self._used),
                "x-ratelimit-resource": "core",
            }
            extra = {**rate, **extra}
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
                )
            )
        self._write(handler, status, payload, extra)

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
        if self._faults:
            return self._faults.pop(0)
        scheme, _, credential = authorization.strip().partition(" ")
        route = _route(method, path)
        needs_jwt = route is not None and route[0]
        denied = self._authenticate(scheme, credential.strip(), jwt=needs_jwt)
        if denied is not None:
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
        last = max(1, -(-len(matching) // per_page))
        items = matching[(page - 1) * per_page : page * per_page]
        headers: dict[str, str] = {}
        links = []

        def link(n: int, rel: str) -> str:
            q = {**query, "per_page": str(per_page), "page": str(n)}
            return f'<{self.url}/repos/{r.full_name}/issues?{urlencode(q)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if links:
            headers["link"] = ", ".join(links)
        return 200, [self._issue_json(r, i) for i in items], headers

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
            issue.labels = list(dict.fromkeys(names))
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

    def _merge(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        number = int(params["number"])
        refusal = self._merge_refusal(r, number, {} if body is None else body)
        if refusal is not None:
            return refusal
        pull, issue = r.pulls[number], r.issues[number]
        pull.merged = True
        pull.merged_at = self._now()
        pull.merge_commit_sha = self._sha()
        pull.base_sha = pull.merge_commit_sha
        self._set_state(issue, "closed", None)
        for match in CLOSING_KEYWORDS.finditer(issue.body or ""):
            closed = r.issues.get(int(match.group(1)))
            if closed is not None and closed.number not in r.pulls and closed.state == "open":
                self._set_state(closed, "closed", "completed")
        answer = {
            "sha": pull.merge_commit_sha,
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

    # -- documents shaped like GitHub's -------------------------------------------------

    def _user(self, login: str) -> dict[str, Any]:
        user_id = int(hashlib.sha256(login.encode()).hexdigest()[:6], 16)
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
        label_id = int(hashlib.sha256(f"{r.full_name}:{name}".encode()).hexdigest()[:8], 16)
        return {
            "id": label_id,
            "node_id": _node_id("LA_", label_id),
            "url": f"{self.url}/repos/{r.full_name}/labels/{name}",
            "name": name,
            "description": None,
            "color": hashlib.sha256(name.encode()).hexdigest()[:6],
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
            "head": {
                "label": f"{r.owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": owner,
                "repo": repo,
            },
            "base": {
                "label": f"{r.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": pull.base_sha,
                "user": owner,
                "repo": repo,
            },
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": "OWNER" if issue.author == r.owner else "MEMBER",
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
        "PUT",
        re.compile(_REPO_PREFIX + r"/pulls/(?P<number>\d+)/merge"),
        False,
        GitHubStandIn._merge,
    ),
    ("GET", re.compile(_REPO_PREFIX + r"/installation"), True, GitHubStandIn._installation),
    (
        "POST",
        re.compile(r"/app/installations/(?P<installation_id>\d+)/access_tokens"),
        True,
        GitHubStandIn._access_token,
    ),
]
