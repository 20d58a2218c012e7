"""The GitHub REST adapter of the :class:`~valine.ports.GitHub` port.

Synchronous (the workers are threads) on one pooled :class:`httpx.Client` per
:class:`GitHubClient`. ``gidgethub.sansio`` does what it is good at: request headers,
deciphering responses (errors, rate-limit headers, the ``Link: rel=next`` URL), and
``gidgethub.apps.get_jwt`` signs GitHub App JWTs.

Economy: every method is one request except ``read_ready_issues`` and
``list_ready_issues`` beyond 100 issues, ``pull_checks`` beyond 25 pull requests (one
GraphQL query each 25) and a GitHub App's token refresh (one request an hour). The REST
issue list is fetched conditionally: the last ``ETag`` of each URL is sent back in
``If-None-Match``
and a ``304`` (which GitHub does not count against the rate limit) returns the
remembered result. :attr:`GitHubClient.request_count` counts every HTTP
request sent, 304s, retries and token requests included.

Failures: network errors and 5xx are retried with exponential backoff and jitter;
``429`` and rate-limited ``403`` wait for ``Retry-After`` or ``x-ratelimit-reset`` when
that is soon enough. What outlasts the retries is :class:`GitHubUnavailable`; ``404`` is
:class:`NotFound`; other refusals are :class:`~valine.ports.GitHubError` and its merge
subclasses. No ``httpx`` or ``gidgethub`` exception leaves this module. Tokens are
never logged: a request is logged as method, path, status and ``x-github-request-id``.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import httpx
from gidgethub import HTTPException as GidgetHubHTTPException
from gidgethub import sansio

from valine.core.checks import Check, CheckKind, CheckPicture
from valine.core.errors import ConfigurationError, GitHubUnavailable, NotFound, RateLimited
from valine.core.models import Issue, PullRequest
from valine.infra import budget
from valine.infra.http_client import RateLimitGate, backoff_delay, may_have_arrived
from valine.ports import (
    GitHubError,
    HeadMoved,
    IssueSnapshot,
    IssueUpdate,
    MergeQueueRequired,
    MergeResult,
    NotMergeable,
    ReadyIssues,
    RepositoryIds,
)

log = logging.getLogger("valine.github.client")

DEFAULT_API_URL = "https://api.github.com"
USER_AGENT = "valine-orchestrator"
ACCEPT = "application/vnd.github+json"
API_VERSION = "2022-11-28"
#: An installation token is replaced this long before GitHub says it expires.
TOKEN_REFRESH_MARGIN = 5 * 60.0
#: Pages followed at most by one list call (100 issues or check suites each).
MAX_PAGES = 50
#: Conditional-request cache entries kept (one per list URL and page).
ETAG_CACHE_SIZE = 256

_T = TypeVar("_T")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_OK = frozenset({200, 201, 202, 204})
_HTTPX_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    httpx.CookieConflict,
)


@dataclass(frozen=True)
class TokenAuth:
    """Authenticate with a personal access token (``GITHUB_TOKEN``)."""

    token: str = field(repr=False)


@dataclass(frozen=True)
class AppAuth:
    """Authenticate as a GitHub App installation.

    The App's JWT (signed with ``private_key_pem``) buys installation tokens, which are
    cached until five minutes before they expire. Without ``installation_id`` the
    installation is looked up once per repository (``GET /repos/{repo}/installation``).
    """

    app_id: str
    private_key_pem: str = field(repr=False)
    installation_id: str | None = None


@dataclass(frozen=True)
class _Reply:
    """A successful (2xx or 304) answer, body already decoded."""

    status: int
    data: Any
    next_url: str | None


class _Failure(Exception):
    """An error answer, before it is mapped to a domain error."""

    def __init__(
        self, status: int, message: str, headers: httpx.Headers, rate_limited: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        #: A rate limit whatever the status (GraphQL's are HTTP 200).
        self.rate_limited = rate_limited


class GitHubClient:
    """The :class:`~valine.ports.GitHub` port over GitHub's REST API (thread-safe).

    ``sleep``, ``clock`` and ``jitter`` are injectable so tests run without waiting;
    ``max_retry_wait`` bounds the total backoff of one call and ``rate_limit_cap`` the
    total time one call may wait for a rate limit to lift (beyond it the call raises
    :class:`~valine.core.errors.RateLimited` with the reset, and the worker puts the job
    back until then). A spent limit is remembered per resource (``core``, ``graphql``)
    by the client, which the process's workers share: no request is sent before a known
    reset.
    """

    def __init__(
        self,
        auth: TokenAuth | AppAuth,
        *,
        api_url: str = DEFAULT_API_URL,
        timeout: float = budget.GITHUB_TIMEOUT,
        max_attempts: int = budget.GITHUB_ATTEMPTS,
        backoff_base: float = 0.5,
        max_retry_wait: float = budget.GITHUB_RETRY_WAIT,
        rate_limit_cap: float = budget.RATE_LIMIT_BUDGET,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._auth = auth
        self._base = api_url.rstrip("/")
        # GitHub.com: api.github.com/graphql; Enterprise Server: <host>/api/graphql.
        self._graphql_url = (
            self._base.removesuffix("/v3") + "/graphql"
            if self._base.endswith("/api/v3")
            else self._base + "/graphql"
        )
        parts = urlsplit(self._base)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._max_attempts = max(1, max_attempts)
        self._backoff_base = backoff_base
        self._max_retry_wait = max_retry_wait
        self._rate_limit_cap = rate_limit_cap
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )
        self._count = 0
        self._count_lock = threading.Lock()
        self._rate_limit: sansio.RateLimit | None = None
        #: Per resource (``core``, ``graphql``): no request before the time it holds.
        self._limits = RateLimitGate(clock)
        self._etags: OrderedDict[str, tuple[str, Any, str | None]] = OrderedDict()
        self._etag_lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._installations: dict[str, str] = {}

    # -- lifecycle and counters ---------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> GitHubClient:
        """The client itself; closed when the ``with`` block ends."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the pooled connections."""
        self.close()

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (retries, 304s and token requests included)."""
        with self._count_lock:
            return self._count

    @property
    def rate_limit(self) -> sansio.RateLimit | None:
        """The rate limit GitHub reported on the last successful answer, if any."""
        return self._rate_limit

    # -- the port -----------------------------------------------------------------------

    def list_ready_issues(self, repo: str, label: str) -> Sequence[Issue]:
        """Open issues carrying ``label``, pull requests excluded, over REST.

        One request per 100 issues, ETag-conditional (an unchanged list costs no rate
        limit). ``/plan`` uses :meth:`read_ready_issues` instead, which also reads the
        node ids a run needs in the same request.
        """
        query = urlencode({"state": "open", "labels": label, "per_page": 100})
        url: str | None = f"{self._repo_url(repo)}/issues?{query}"
        issues: list[Issue] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            reply = self._request("GET", url, repo=repo, conditional=True)
            if not isinstance(reply.data, list):
                raise GitHubError(reply.status, "unexpected response: issue list is not a list")
            issues.extend(
                _shaped(_issue, item) for item in reply.data if "pull_request" not in item
            )
            url = reply.next_url
        else:
            if url is not None:
                log.warning("issue list of %s cut at %d pages", repo, MAX_PAGES)
        return tuple(issues)

    def dispatch_workflow(
        self, repo: str, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> None:
        """Start a ``workflow_dispatch`` run of ``workflow`` (file name or id) on ``ref``."""
        url = f"{self._repo_url(repo)}/actions/workflows/{quote(str(workflow), safe='')}"
        payload = {"ref": ref, "inputs": {str(k): str(v) for k, v in inputs.items()}}
        # A dispatch must not happen twice: only failures that cannot have reached GitHub
        # are retried; a timeout or 5xx raises GitHubUnavailable(request_sent=True).
        self._request("POST", f"{url}/dispatches", repo=repo, json=payload, retry_ambiguous=False)

    # -- GraphQL: several changes in one request --------------------------------------

    def read_ready_issues(
        self, repo: str, label: str, labels: Sequence[str], logins: Sequence[str] = ()
    ) -> ReadyIssues:
        """The ready issues and the run's node ids in one GraphQL query (see the port).

        Pages of 100 issues; each further page is one more query (issues only), at
        most :data:`MAX_PAGES` in all. GraphQL rate limits (HTTP 200, ``RATE_LIMITED``)
        are waits, as for every GraphQL request.
        """
        owner, name = self._repo_url(repo).rsplit("/", 2)[-2:]
        document, variables = _ready_issues_query(owner, name, label, labels, logins)
        data = self.graphql(document, variables, repo=repo, not_found_ok=True)
        repository = data.get("repository")
        if not isinstance(repository, Mapping):
            raise NotFound(f"GitHub: no repository {repo}")
        ids = _shaped(functools.partial(_repository_ids, labels, logins), data)
        issues: list[Issue] = []
        page = repository.get("issues")
        for pages in range(1, MAX_PAGES + 1):
            after = self._take_issue_page(repo, page, issues)
            if after is None:
                break
            if pages == MAX_PAGES:
                log.warning("issue list of %s cut at %d pages", repo, MAX_PAGES)
                break
            document, variables = _ready_issues_query(owner, name, label, after=after)
            repository = self.graphql(document, variables, repo=repo).get("repository")
            page = repository.get("issues") if isinstance(repository, Mapping) else None
        return ReadyIssues(tuple(issues), ids)

    @staticmethod
    def _take_issue_page(repo: str, page: Any, into: list[Issue]) -> str | None:
        """Add one page of ``Repository.issues`` to ``into``; the next page's cursor."""
        if not isinstance(page, Mapping) or not isinstance(page.get("nodes"), list):
            raise GitHubError(200, "unexpected response: the issue list is not a connection")
        for node in page["nodes"]:
            issue = _shaped(_graphql_issue, node)
            if issue is None:
                number = node.get("number") if isinstance(node, Mapping) else "?"
                log.warning("%s#%s has over 100 labels: left out of the plan", repo, number)
                continue
            into.append(issue)
        info = page.get("pageInfo") or {}
        cursor = info.get("endCursor")
        return str(cursor) if info.get("hasNextPage") and cursor else None

    def repository_ids(
        self, repo: str, labels: Sequence[str], logins: Sequence[str] = ()
    ) -> RepositoryIds:
        """Node ids of the repository, of ``labels`` and of ``logins`` (one GraphQL query)."""
        owner, name = repo.split("/", 1)
        declarations = ["$owner: String!", "$name: String!"]
        variables: dict[str, Any] = {"owner": owner, "name": name}
        label_fields, user_fields = _id_fields(labels, logins, declarations, variables)
        document = (
            f"query({', '.join(declarations)}) {{ "
            f"repository(owner: $owner, name: $name) {{ id {label_fields} }} "
            f"{user_fields} }}"
        )
        # GitHub answers an unknown login or repository with null plus a NOT_FOUND error.
        data = self.graphql(document, variables, repo=repo, not_found_ok=True)
        if not isinstance(data.get("repository"), Mapping):
            raise NotFound(f"GitHub: no repository {repo}")
        return _shaped(functools.partial(_repository_ids, labels, logins), data)

    def create_labels(
        self, repo: str, repository_id: str, names: Sequence[str]
    ) -> Mapping[str, str]:
        """Create labels in one mutation; their node ids by name."""
        if not names:
            return {}
        declarations, fields, variables = [], [], {}
        for i, label in enumerate(names):
            declarations.append(f"$c{i}: CreateLabelInput!")
            fields.append(f"c{i}: createLabel(input: $c{i}) {{ label {{ id name }} }}")
            variables[f"c{i}"] = {"repositoryId": repository_id, "name": label, "color": "ededed"}
        document = f"mutation({', '.join(declarations)}) {{ {' '.join(fields)} }}"
        data = self.graphql(document, variables, repo=repo)
        return {label: str(data[f"c{i}"]["label"]["id"]) for i, label in enumerate(names)}

    def update_issues(
        self, repo: str, updates: Sequence[IssueUpdate], *, partial: bool = False
    ) -> Mapping[str, str]:
        """Apply every update in one GraphQL mutation; fields run in order (see the port).

        With ``partial``, the fields GitHub refused are returned as ``{node_id: error}``
        (GitHub runs the other fields); without it any error raises ``GitHubError``.
        """
        if not updates:
            return {}
        document, variables, owners = _issue_mutation(updates)
        # The repository picks the App installation whose token the mutation needs.
        data, errors = self._graphql_answer(document, variables, repo=repo)
        failed: dict[str, str] = {}
        unplaced = []
        for error in errors:
            path = error.get("path") if isinstance(error, Mapping) else None
            node_id = owners.get(str(path[0])) if isinstance(path, list) and path else None
            if node_id is None:
                unplaced.append(error)
            else:
                failed[node_id] = "; ".join(filter(None, (failed.get(node_id), _message(error))))
        if unplaced or (failed and not partial) or not isinstance(data, dict):
            messages = "; ".join(_message(e) for e in errors) or "GraphQL answer without data"
            raise GitHubError(200, f"GraphQL: {messages}")
        return failed

    def read_issue(self, repo: str, number: int) -> IssueSnapshot:
        """An issue's labels and assignees and every comment's body (REST, paginated)."""
        base = f"{self._repo_url(repo)}/issues/{int(number)}"
        data = self._request("GET", base, repo=repo).data
        if not isinstance(data, Mapping):
            raise GitHubError(200, f"unexpected response: issue #{number} is not an object")
        comments: list[str] = []
        url: str | None = f"{base}/comments?per_page=100"
        for _ in range(MAX_PAGES):
            if url is None:
                break
            reply = self._request("GET", url, repo=repo)
            if not isinstance(reply.data, list):
                raise GitHubError(reply.status, "unexpected response: comments are not a list")
            comments.extend(str(c.get("body") or "") for c in reply.data if isinstance(c, Mapping))
            url = reply.next_url
        return IssueSnapshot(
            labels=tuple(str(label["name"]) for label in data.get("labels") or ()),
            assignees=tuple(str(a["login"]) for a in data.get("assignees") or ()),
            comments=tuple(comments),
        )

    def enqueue_pull(self, repo: str, number: int, sha: str) -> None:
        """Add the pull request to its merge queue (reads its node id first)."""
        url = f"{self._repo_url(repo)}/pulls/{int(number)}"
        data = self._request("GET", url, repo=repo).data
        node_id = data.get("node_id") if isinstance(data, Mapping) else None
        if not node_id:
            raise GitHubError(0, f"pull request #{number} has no node id")
        document = (
            "mutation($q: EnqueuePullRequestInput!) { "
            "enqueuePullRequest(input: $q) { mergeQueueEntry { id } } }"
        )
        self.graphql(document, {"q": {"pullRequestId": node_id, "expectedHeadOid": sha}}, repo=repo)

    def graphql(
        self,
        document: str,
        variables: Mapping[str, Any],
        *,
        repo: str | None = None,
        not_found_ok: bool = False,
    ) -> dict[str, Any]:
        """One GraphQL request; its ``data``. Errors in the answer raise ``GitHubError``.

        With ``not_found_ok``, ``NOT_FOUND`` errors are left to the caller: the fields
        they concern are null in ``data``.
        """
        data, all_errors = self._graphql_answer(document, variables, repo=repo)
        errors = [
            e
            for e in all_errors
            if not (not_found_ok and isinstance(e, Mapping) and e.get("type") == "NOT_FOUND")
        ]
        if errors:
            messages = "; ".join(_message(e) for e in errors if e)
            raise GitHubError(200, f"GraphQL: {messages}")
        if not isinstance(data, dict):
            raise GitHubError(200, "GraphQL answer without data")
        return data

    def _graphql_answer(
        self, document: str, variables: Mapping[str, Any], *, repo: str | None
    ) -> tuple[Any, list[Any]]:
        """One GraphQL request: its ``data`` and its ``errors`` (a list, maybe empty)."""
        reply = self._request(
            "POST",
            self._graphql_url,
            repo=repo,
            json={"query": document, "variables": dict(variables)},
            # A mutation whose answer was lost (timeout, 5xx) may have been applied: it is
            # not sent again blindly; GitHubUnavailable(request_sent=True) lets the caller
            # read back what is there and send only what is missing.
            retry_ambiguous=not _is_mutation(document),
        )
        body = reply.data if isinstance(reply.data, Mapping) else {}
        errors = body.get("errors")
        return body.get("data"), list(errors) if isinstance(errors, list) else []

    def get_pull(self, repo: str, number: int) -> PullRequest:
        """One pull request (``NotFound`` if there is none)."""
        reply = self._request("GET", f"{self._repo_url(repo)}/pulls/{int(number)}", repo=repo)
        return _shaped(_pull, reply.data)

    def pull_checks(
        self, repo: str, numbers: Sequence[int], *, merge_queue: bool = False
    ) -> Sequence[CheckPicture]:
        """Every check on the head of each pull request (see the port): one GraphQL query.

        The query asks, per pull request, for its head commit's check suites (each
        with its latest check runs) and commit statuses, 100 of each; a list cut
        there makes the picture incomplete, which is never green. With
        ``merge_queue`` it also asks for ``merged`` and ``mergeQueueEntry`` (only then:
        a GitHub Enterprise Server without merge queues does not know the field).
        """
        owner, name = self._repo_url(repo).rsplit("/", 2)[-2:]
        wanted = list(dict.fromkeys(int(n) for n in numbers))
        pictures: list[CheckPicture] = []
        for start in range(0, len(wanted), PULLS_PER_QUERY):
            chunk = wanted[start : start + PULLS_PER_QUERY]
            document, variables = _checks_query(owner, name, chunk, merge_queue)
            data = self.graphql(document, variables, repo=repo, not_found_ok=True)
            repository = data.get("repository")
            if not isinstance(repository, Mapping):
                raise NotFound(f"repository {repo} not found")
            for i, number in enumerate(chunk):
                node = repository.get(f"p{i}")
                if node is not None:
                    pictures.append(_shaped(functools.partial(_picture, number), node))
        return pictures

    def merge_pull(self, repo: str, number: int, sha: str, method: str) -> MergeResult:
        """Merge only if the head is still ``sha`` (see the port for the errors).

        Idempotent: if GitHub refuses because the pull request is already merged at
        ``sha`` (say, an earlier attempt merged it but its answer was lost), the
        existing merge commit is returned -- one extra request, on that path only.
        """
        url = f"{self._repo_url(repo)}/pulls/{int(number)}"
        try:
            reply = self._request(
                "PUT", f"{url}/merge", repo=repo, json={"sha": sha, "merge_method": method}
            )
        except GitHubError as exc:
            if exc.status == 409:
                raise HeadMoved(exc.status, exc.message) from None
            if exc.status == 405 and "merge queue" in exc.message.lower():
                raise MergeQueueRequired(exc.status, exc.message) from None
            if exc.status == 405:
                merged = self._already_merged(url, repo, sha)
                if merged is not None:
                    return merged
            if exc.status in (405, 422):
                raise NotMergeable(exc.status, exc.message) from None
            raise
        data = reply.data
        if not isinstance(data, Mapping) or not data.get("merged") or not data.get("sha"):
            message = data.get("message", "not merged") if isinstance(data, Mapping) else ""
            raise NotMergeable(reply.status, str(message or "not merged"))
        return MergeResult(sha=str(data["sha"]))

    def _already_merged(self, url: str, repo: str, sha: str) -> MergeResult | None:
        """The merge commit if the pull request is already merged with head ``sha``."""
        data = self._request("GET", url, repo=repo).data
        if not isinstance(data, Mapping) or not data.get("merged"):
            return None
        head = data.get("head")
        if not isinstance(head, Mapping) or head.get("sha") != sha:
            return None
        merge_sha = data.get("merge_commit_sha")
        return MergeResult(sha=str(merge_sha)) if merge_sha else None

    # -- requests -----------------------------------------------------------------------

    def _repo_url(self, repo: str) -> str:
        if not _REPO.fullmatch(repo):
            raise ValueError(f"repository must look like owner/name, got {repo!r}")
        return f"{self._base}/repos/{repo}"

    def _request(
        self,
        method: str,
        url: str,
        *,
        repo: str | None = None,
        json: Any = None,
        conditional: bool = False,
        jwt: bool = False,
        retry_ambiguous: bool = True,
    ) -> _Reply:
        """One logical request: credentials, conditional cache, retries, error mapping."""
        if not url.startswith(self._origin + "/"):
            # A Link header pointing elsewhere must never receive our token.
            raise GitHubError(0, f"refusing to follow a URL off {self._origin}: {url}")
        refreshed = False
        while True:
            headers, token = self._credentials(repo, jwt=jwt)
            cached = self._etag_get(url) if conditional else None
            if cached is not None:
                headers["if-none-match"] = cached[0]
            try:
                reply, etag = self._send(method, url, headers, json, retry_ambiguous)
            except _Failure as failure:
                if failure.status == 401 and token and not refreshed:
                    # An installation token revoked or expired early: buy a new one once.
                    refreshed = self._forget_token(token)
                    if refreshed:
                        continue
                raise _domain_error(failure) from None
            if reply.status == 304 and cached is not None:
                return _Reply(304, cached[1], cached[2])
            if conditional and etag and reply.status == 200:
                self._etag_put(url, (etag, reply.data, reply.next_url))
            return reply

    def _send(
        self, method: str, url: str, headers: dict[str, str], json: Any, retry_ambiguous: bool
    ) -> tuple[_Reply, str | None]:
        """Send with retries; the reply and its ETag, or raise ``_Failure`` / unavailable.

        A failure that may have reached GitHub (a timeout after connecting, a 5xx) is
        retried only if ``retry_ambiguous``; one that cannot have (no connection) always.
        """
        path = urlsplit(url).path
        resource = "graphql" if url == self._graphql_url else "core"
        backoff_waited = limit_waited = 0.0
        attempt = 0
        maybe_sent = False
        while True:
            attempt += 1
            last = attempt >= self._max_attempts
            limit_waited += self._wait_until_unblocked(resource, limit_waited, method, path)
            try:
                response = self._http.request(method, url, headers=headers, json=json)
            except httpx.TransportError as exc:
                self._count_request()
                log.warning("github %s %s failed: %s", method, path, type(exc).__name__)
                reason = f"{method} {path}: {type(exc).__name__}"
                sent = may_have_arrived(exc)
            except _HTTPX_ERRORS as exc:
                self._count_request()
                raise GitHubUnavailable(f"{method} {path}: {type(exc).__name__}") from None
            else:
                self._count_request()
                outcome = self._interpret(response, method, path)
                if not isinstance(outcome, _Failure):
                    return outcome
                wait = self._rate_limit_wait(outcome)
                if wait is not None:
                    self._block(resource, self._clock() + wait)
                    if last:
                        self._wait_for_limit(wait, math.inf, method, path)
                    continue
                if outcome.status < 500:
                    raise outcome
                reason, sent = f"{method} {path}: GitHub answered {outcome.status}", True
            maybe_sent = maybe_sent or sent
            if sent and not retry_ambiguous:
                raise GitHubUnavailable(f"{reason} (not retried: GitHub may have acted on it)")
            backoff_waited += self._backoff(attempt, last, backoff_waited, reason, maybe_sent)

    def _interpret(
        self, response: httpx.Response, method: str, path: str
    ) -> tuple[_Reply, str | None] | _Failure:
        """A successful reply and its ETag, or the failure it reports."""
        status = response.status_code
        log.info(
            "github %s %s -> %d",
            method,
            path,
            status,
            extra={"github_request_id": response.headers.get("x-github-request-id", "")},
        )
        if status == 304:
            return _Reply(304, None, None), response.headers.get("etag")
        try:
            data, rate_limit, next_url = sansio.decipher_response(
                status, response.headers, response.content
            )
        except GidgetHubHTTPException as exc:
            return _Failure(status, str(exc), response.headers)
        except ValueError:  # undecodable body or a status http.HTTPStatus does not know
            return _Failure(status, f"undecodable answer ({status})", response.headers)
        if status not in _OK:
            return _Failure(status, f"unexpected status {status}", response.headers)
        if _graphql_rate_limited(data):
            # GitHub answers a spent GraphQL budget with HTTP 200 and errors[].type
            # RATE_LIMITED (sometimes RATE_LIMIT): nothing in the document ran.
            return _Failure(status, "GraphQL rate limit exceeded", response.headers, True)
        if rate_limit is not None:
            self._rate_limit = rate_limit
        return _Reply(status, data, next_url), response.headers.get("etag")

    def _backoff(
        self, attempt: int, last: bool, waited: float, reason: str, maybe_sent: bool
    ) -> float:
        """Sleep before the next attempt (exponential, jittered), or give up."""
        delay = backoff_delay(attempt, self._backoff_base, draw=self._jitter)
        if last or waited + delay > self._max_retry_wait:
            raise GitHubUnavailable(
                f"{reason} (gave up after {attempt} attempts)", request_sent=maybe_sent
            )
        self._sleep(delay)
        return delay

    def _rate_limit_wait(self, failure: _Failure) -> float | None:
        """Seconds to wait if ``failure`` is a rate limit (GitHub's documented rules)."""
        if failure.status not in (403, 429) and not failure.rate_limited:
            return None
        headers = failure.headers
        retry_after = headers.get("retry-after")
        if retry_after is not None and retry_after.strip().isdigit():
            return float(retry_after.strip())
        limit = sansio.RateLimit.from_http(headers)
        if limit is not None and limit.remaining == 0:
            reset = float(limit.reset_datetime.timestamp())
            return max(0.0, reset - self._clock()) + 1.0
        if failure.rate_limited or failure.status == 429 or "rate limit" in failure.message.lower():
            return 60.0  # GitHub: "wait for at least one minute before retrying"
        return None

    def _block(self, resource: str, until: float) -> None:
        """Remember that ``resource`` takes no request before ``until`` (epoch seconds)."""
        self._limits.block_until(resource, until)

    def _wait_until_unblocked(self, resource: str, waited: float, method: str, path: str) -> float:
        """Sleep until ``resource``'s known reset, within the budget; seconds slept."""
        wait = self._limits.wait(resource)
        if wait <= 0:
            return 0.0
        return self._wait_for_limit(wait, waited, method, path)

    def _wait_for_limit(self, wait: float, waited: float, method: str, path: str) -> float:
        """Sleep ``wait`` seconds for a rate limit to lift, or raise ``RateLimited``."""
        if waited + wait > self._rate_limit_cap:
            reset_at = self._clock() + wait
            until = datetime.datetime.fromtimestamp(reset_at, datetime.UTC)
            raise RateLimited(
                f"{method} {path}: GitHub rate limit exceeded; it resets at "
                f"{until:%Y-%m-%dT%H:%M:%SZ}",
                reset_at,
            )
        log.warning("github %s %s rate limited: waiting %.0f s", method, path, wait)
        self._sleep(wait)
        return wait

    def _count_request(self) -> None:
        with self._count_lock:
            self._count += 1

    # -- conditional requests -----------------------------------------------------------

    def _etag_get(self, url: str) -> tuple[str, Any, str | None] | None:
        with self._etag_lock:
            return self._etags.get(url)

    def _etag_put(self, url: str, entry: tuple[str, Any, str | None]) -> None:
        with self._etag_lock:
            self._etags[url] = entry
            self._etags.move_to_end(url)
            while len(self._etags) > ETAG_CACHE_SIZE:
                self._etags.popitem(last=False)

    # -- credentials --------------------------------------------------------------------

    def _credentials(self, repo: str | None, *, jwt: bool) -> tuple[dict[str, str], str | None]:
        """Request headers, and the installation token used (to refresh it on a 401)."""
        auth = self._auth
        if isinstance(auth, TokenAuth):
            return self._headers(oauth_token=auth.token), None
        if jwt:
            return self._headers(jwt=self._app_jwt(auth)), None
        token = self._installation_token(auth, repo)
        return self._headers(oauth_token=token), token

    @staticmethod
    def _headers(*, oauth_token: str | None = None, jwt: str | None = None) -> dict[str, str]:
        headers = sansio.create_headers(USER_AGENT, accept=ACCEPT, oauth_token=oauth_token, jwt=jwt)
        headers["x-github-api-version"] = API_VERSION
        return headers

    @staticmethod
    def _app_jwt(auth: AppAuth) -> str:
        from gidgethub.apps import get_jwt

        key = auth.private_key_pem
        if "\\n" in key and "\n" not in key:  # a PEM squeezed onto one line in .env
            key = key.replace("\\n", "\n")
        try:
            return str(get_jwt(app_id=str(auth.app_id), private_key=key))
        except Exception as exc:  # PyJWT/cryptography: malformed or wrong-type key
            raise ConfigurationError(
                f"GITHUB_APP_PRIVATE_KEY cannot sign the App JWT: {type(exc).__name__}"
            ) from None

    def _installation_token(self, auth: AppAuth, repo: str | None) -> str:
        """A cached installation token, bought anew when within 5 minutes of expiry."""
        with self._token_lock:
            installation = self._installation_id(auth, repo)
            cached = self._tokens.get(installation)
            if cached is not None and cached[1] - TOKEN_REFRESH_MARGIN > self._clock():
                return cached[0]
            url = f"{self._base}/app/installations/{quote(installation, safe='')}/access_tokens"
            data = self._request("POST", url, jwt=True).data
            try:
                token = str(data["token"])
                expires = datetime.datetime.fromisoformat(str(data["expires_at"])).timestamp()
            except (KeyError, TypeError, ValueError):
                raise GitHubError(201, "unexpected installation token answer") from None
            self._tokens[installation] = (token, expires)
            return token

    def _installation_id(self, auth: AppAuth, repo: str | None) -> str:
        """The configured installation, or the one installed on ``repo`` (looked up once)."""
        if auth.installation_id:
            return str(auth.installation_id)
        if repo is None:
            raise ConfigurationError("GITHUB_APP_INSTALLATION_ID is not set")
        known = self._installations.get(repo)
        if known is None:
            data = self._request("GET", f"{self._repo_url(repo)}/installation", jwt=True).data
            try:
                known = str(int(data["id"]))
            except (KeyError, TypeError, ValueError):
                raise GitHubError(200, "unexpected installation answer") from None
            self._installations[repo] = known
        return known

    def _forget_token(self, token: str) -> bool:
        """Drop ``token`` from the cache; True if it was there (so a retry may help)."""
        with self._token_lock:
            for installation, (cached, _expiry) in list(self._tokens.items()):
                if cached == token:
                    del self._tokens[installation]
                    return True
        return False


# -- mapping ------------------------------------------------------------------------------


def _is_mutation(document: str) -> bool:
    """True for a GraphQL mutation document (it changes something on GitHub)."""
    return document.lstrip().startswith("mutation")


def _graphql_rate_limited(data: Any) -> bool:
    """True if a GraphQL answer reports a spent rate limit (``errors[].type``)."""
    if not isinstance(data, Mapping):
        return False
    errors = data.get("errors")
    return isinstance(errors, list) and any(
        isinstance(e, Mapping) and e.get("type") in ("RATE_LIMITED", "RATE_LIMIT") for e in errors
    )


def _domain_error(failure: _Failure) -> Exception:
    """The domain error for an answer retrying cannot change (5xx never get here)."""
    if failure.status == 404:
        return NotFound(f"GitHub: {failure.message}")
    return GitHubError(failure.status, failure.message)


def _shaped(mapper: Callable[[Any], _T], data: Any) -> _T:
    """``mapper(data)``, an unexpected shape reported as a GitHubError."""
    try:
        return mapper(data)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise GitHubError(200, f"unexpected response shape: {exc!r}") from None


def _message(error: Any) -> str:
    """The message of one GraphQL error entry."""
    return str(error.get("message", error)) if isinstance(error, Mapping) else str(error)


def _issue_mutation(
    updates: Sequence[IssueUpdate],
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The mutation document and variables applying ``updates`` in order, and the node id
    of the issue each field (by its alias) changes."""
    declarations: list[str] = []
    fields: list[str] = []
    variables: dict[str, Any] = {}
    owners: dict[str, str] = {}

    def add(kind: str, input_type: str, field_name: str, value: dict[str, Any]) -> None:
        name = f"{kind}{len(fields)}"
        declarations.append(f"${name}: {input_type}!")
        fields.append(f"{name}: {field_name}(input: ${name}) {{ clientMutationId }}")
        variables[name] = value
        owners[name] = current

    for u in updates:
        current = u.node_id
        if u.remove_labels:
            add(
                "r",
                "RemoveLabelsFromLabelableInput",
                "removeLabelsFromLabelable",
                {"labelableId": u.node_id, "labelIds": list(u.remove_labels)},
            )
        if u.add_labels:
            add(
                "a",
                "AddLabelsToLabelableInput",
                "addLabelsToLabelable",
                {"labelableId": u.node_id, "labelIds": list(u.add_labels)},
            )
        if u.assignees:
            add(
                "s",
                "AddAssigneesToAssignableInput",
                "addAssigneesToAssignable",
                {"assignableId": u.node_id, "assigneeIds": list(u.assignees)},
            )
        if u.comment is not None:
            add("c", "AddCommentInput", "addComment", {"subjectId": u.node_id, "body": u.comment})
        if u.close:
            add("x", "CloseIssueInput", "closeIssue", {"issueId": u.node_id})
    return f"mutation({', '.join(declarations)}) {{ {' '.join(fields)} }}", variables, owners


#: Pull requests read by one ``pull_checks`` query (each asks for up to 100 suites of
#: 100 check runs: 10,000 nodes, well inside GitHub's 500,000 per query).
PULLS_PER_QUERY = 25
_PULL_CHECKS = (
    "number commits(last: 1) { nodes { commit { oid "
    "checkSuites(first: 100) { pageInfo { hasNextPage } nodes { status conclusion "
    "app { name } checkRuns(first: 100, filterBy: $latest) { pageInfo { hasNextPage } "
    "nodes { name status conclusion detailsUrl } } } } "
    "status { contexts { context state targetUrl } } } } }"
)


_PULL_QUEUE = "merged mergeQueueEntry { state } "


def _checks_query(
    owner: str, name: str, numbers: Sequence[int], merge_queue: bool = False
) -> tuple[str, dict[str, Any]]:
    """The ``pull_checks`` query of ``numbers`` (aliases ``p0``, ``p1`` ...)."""
    declarations = ["$owner: String!", "$name: String!", "$latest: CheckRunFilter"]
    fields = []
    variables: dict[str, Any] = {"owner": owner, "name": name, "latest": {"checkType": "LATEST"}}
    selection = (_PULL_QUEUE if merge_queue else "") + _PULL_CHECKS
    for i, number in enumerate(numbers):
        declarations.append(f"$p{i}: Int!")
        fields.append(f"p{i}: pullRequest(number: $p{i}) {{ {selection} }}")
        variables[f"p{i}"] = number
    document = (
        f"query({', '.join(declarations)}) {{ repository(owner: $owner, name: $name) "
        f"{{ {' '.join(fields)} }} }}"
    )
    return document, variables


def _picture(number: int, pull: Any) -> CheckPicture:
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


#: One page of ``Repository.issues`` as ``/plan`` reads it (issues only, never PRs).
_ISSUE_PAGE = (
    "issues(first: 100, after: $after, states: $open, labels: $ready) { "
    "pageInfo { hasNextPage endCursor } nodes { id number title url createdAt "
    "milestone { dueOn } labels(first: 100) { pageInfo { hasNextPage } nodes { name } } } }"
)


def _ready_issues_query(
    owner: str,
    name: str,
    label: str,
    labels: Sequence[str] = (),
    logins: Sequence[str] = (),
    *,
    after: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A page of open issues labelled ``label``; the first page also reads the node
    ids of the repository, of ``labels`` and of ``logins`` (aliases ``l0``, ``u0`` ...)."""
    declarations = [
        "$owner: String!",
        "$name: String!",
        "$ready: [String!]",
        "$open: [IssueState!]",
        "$after: String",
    ]
    variables: dict[str, Any] = {
        "owner": owner,
        "name": name,
        "ready": [label],
        "open": ["OPEN"],
        "after": after,
    }
    label_fields, user_fields = "", ""
    if after is None:
        label_fields, user_fields = _id_fields(labels, logins, declarations, variables)
    document = (
        f"query({', '.join(declarations)}) {{ repository(owner: $owner, name: $name) "
        f"{{ id {label_fields} {_ISSUE_PAGE} }} {user_fields} }}"
    )
    return document, variables


def _id_fields(
    labels: Sequence[str],
    logins: Sequence[str],
    declarations: list[str],
    variables: dict[str, Any],
) -> tuple[str, str]:
    """The ``label(name:)`` fields (inside ``repository``) and ``user(login:)`` fields
    (at the root) reading node ids; their variables are added to the two lists given."""
    label_fields = []
    for i, label in enumerate(labels):
        declarations.append(f"$l{i}: String!")
        variables[f"l{i}"] = label
        label_fields.append(f"l{i}: label(name: $l{i}) {{ id }}")
    user_fields = []
    for i, login in enumerate(logins):
        declarations.append(f"$u{i}: String!")
        variables[f"u{i}"] = login
        user_fields.append(f"u{i}: user(login: $u{i}) {{ id }}")
    return " ".join(label_fields), " ".join(user_fields)


def _repository_ids(labels: Sequence[str], logins: Sequence[str], data: Any) -> RepositoryIds:
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


def _graphql_issue(node: Any) -> Issue | None:
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


def _issue(data: Any) -> Issue:
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


def _pull(data: Any) -> PullRequest:
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
