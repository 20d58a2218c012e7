"""GitHub's HTTP transport: one pooled connection, retries, rate limits, conditional GETs.

:class:`Transport` sends one logical request (:meth:`Transport._request`): it adds the
credentials (:mod:`valine.github.auth` supplies them), answers a repeated list from its
``ETag`` cache (a ``304`` costs no rate limit), retries network errors and 5xx with the
service's one backoff (:mod:`valine.infra.http_client`), waits for a rate limit that lifts
soon enough (GitHub's documented rules: ``Retry-After``, ``x-ratelimit-reset``, a minute;
GraphQL's spent limit arrives as HTTP 200 with ``errors[].type`` ``RATE_LIMITED``) and
maps what is left to domain errors. No ``httpx`` or ``gidgethub`` exception leaves it.
"""

from __future__ import annotations

import datetime
import math
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypedDict
from urllib.parse import urlsplit

import httpx
from gidgethub import HTTPException as GidgetHubHTTPException
from gidgethub import sansio

from valine import metrics
from valine.core.errors import GitHubUnavailable, NotFound, RateLimited
from valine.infra import budget
from valine.infra.http_client import RateLimitGate, backoff_delay, may_have_arrived
from valine.logs import get_logger
from valine.ports import GitHubError

#: Every module of the client logs as ``valine.github.client``, as the one class did.
log = get_logger("valine.github.client")

DEFAULT_API_URL = "https://api.github.com"
#: Conditional-request cache entries kept (one per list URL and page).
ETAG_CACHE_SIZE = 256
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


_OK = frozenset({200, 201, 202, 204})
_HTTPX_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    httpx.CookieConflict,
)


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


class TransportOptions(TypedDict, total=False):
    """The keyword arguments of :class:`Transport` (its defaults are in its signature)."""

    api_url: str
    timeout: float
    max_attempts: int
    backoff_base: float
    max_retry_wait: float
    rate_limit_cap: float
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    jitter: Callable[[], float]
    transport: httpx.BaseTransport | None


class Transport:
    """Requests to one GitHub API (REST and GraphQL), shared by the process's threads.

    ``sleep``, ``clock`` and ``jitter`` are injectable so tests run without waiting;
    ``max_retry_wait`` bounds the total backoff of one call and ``rate_limit_cap`` the
    total time one call may wait for a rate limit to lift (beyond it the call raises
    :class:`~valine.core.errors.RateLimited` with the reset, and the worker puts the job
    back until then). A spent limit is remembered per budget -- the credential's scope
    (:meth:`_limit_scope`: a GitHub App's installation) and the resource (``core``,
    ``graphql``): no request of that budget is sent before a known reset, and the other
    budgets' requests go on.
    """

    def __init__(
        self,
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
        #: Per budget (``[scope/]core``, ``[scope/]graphql``): no request before the time
        #: it holds.
        self._limits = RateLimitGate(clock)
        self._levels = RateLimitLevels(clock)
        self._etags: OrderedDict[str, tuple[str, Any, str | None]] = OrderedDict()
        self._etag_lock = threading.Lock()

    # -- lifecycle and counters ---------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> Self:
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
            scope = self._limit_scope(repo, jwt=jwt)
            cached = self._etag_get(url) if conditional else None
            if cached is not None:
                headers["if-none-match"] = cached[0]
            try:
                reply, etag = self._send(method, url, headers, json, retry_ambiguous, scope=scope)
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
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        json: Any,
        retry_ambiguous: bool,
        *,
        scope: str = "",
    ) -> tuple[_Reply, str | None]:
        """Send with retries; the reply and its ETag, or raise ``_Failure`` / unavailable.

        A failure that may have reached GitHub (a timeout after connecting, a 5xx) is
        retried only if ``retry_ambiguous``; one that cannot have (no connection) always.
        A rate limit holds ``scope``'s budget of the resource (:meth:`_limit_scope`).
        """
        path = urlsplit(url).path
        resource = "graphql" if url == self._graphql_url else "core"
        held = f"{scope}/{resource}" if scope else resource
        backoff_waited = limit_waited = 0.0
        attempt = 0
        maybe_sent = False
        while True:
            attempt += 1
            last = attempt >= self._max_attempts
            limit_waited += self._wait_until_unblocked(held, limit_waited, method, path)
            try:
                response = self._http.request(method, url, headers=headers, json=json)
            except httpx.TransportError as exc:
                self._count_request(resource)
                log.warning("github %s %s failed: %s", method, path, type(exc).__name__)
                reason = f"{method} {path}: {type(exc).__name__}"
                sent = may_have_arrived(exc)
            except _HTTPX_ERRORS as exc:
                self._count_request(resource)
                raise GitHubUnavailable(f"{method} {path}: {type(exc).__name__}") from None
            else:
                self._count_request(resource)
                outcome = self._interpret(response, method, path, scope)
                if not isinstance(outcome, _Failure):
                    return outcome
                wait = self._rate_limit_wait(outcome)
                if wait is not None:
                    self._block(held, self._clock() + wait)
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
        self, response: httpx.Response, method: str, path: str, scope: str = ""
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
            self._levels.measure(rate_limit, response.headers.get("x-ratelimit-resource"), scope)
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

    def _block(self, held: str, until: float) -> None:
        """Remember that the budget ``held`` (``[scope/]resource``) takes no request before
        ``until`` (epoch seconds)."""
        self._limits.block_until(held, until)

    def _wait_until_unblocked(self, held: str, waited: float, method: str, path: str) -> float:
        """Sleep until the budget ``held``'s known reset, within the budget; seconds slept.

        The hold is read again after each sleep: another worker may have learned of a
        later reset meanwhile (a primary limit spent while this one waited out a
        ``Retry-After``), and no request goes out before it either.
        """
        slept = waited_for = 0.0
        while (until := self._limits.until(held)) > waited_for:
            wait = until - self._clock()
            if wait <= 0:
                break
            slept += self._wait_for_limit(wait, waited + slept, method, path)
            waited_for = until
        return slept

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

    def _count_request(self, resource: str) -> None:
        with self._count_lock:
            self._count += 1
        metrics.count("github_requests", kind="graphql" if resource == "graphql" else "rest")

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

    # -- what the credentials supply (valine.github.auth) ------------------------------

    def _credentials(self, repo: str | None, *, jwt: bool) -> tuple[dict[str, str], str | None]:
        """Request headers, and the installation token used (to refresh it on a 401)."""
        raise NotImplementedError

    def _forget_token(self, token: str) -> bool:
        """Drop ``token`` from the cache; True if it was there (so a retry may help)."""
        raise NotImplementedError

    def _limit_scope(self, repo: str | None, *, jwt: bool) -> str:
        """Whose rate limit a request spends (``""``: the client's one budget).

        GitHub keeps a budget per credential: a GitHub App's per installation, its JWT's
        apart from them, a personal token's per user. A spent limit holds only the
        requests of the same scope and resource.
        """
        return ""


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


#: Rate-limit resources measured by name; any other is "other" (bounded series).
_RESOURCES = frozenset({"core", "graphql", "search"})


class RateLimitLevels:
    """The share of each rate-limit budget left, gauged as the lowest per resource.

    A GitHub App has a budget per installation (:meth:`Transport._limit_scope`): one
    gauge per resource that took whichever installation answered last would hide a spent
    budget behind a fresh one, so the gauge is the lowest share any budget of the
    resource reported, a budget whose reset has passed counting as full (the below-10 %
    alarm then fires while any is low); the series stay bounded by the resource names.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: resource -> scope -> (percent left, when the budget resets)
        self._left: dict[str, dict[str, tuple[float, float]]] = {}

    def measure(self, rate_limit: sansio.RateLimit, resource: str | None, scope: str) -> float:
        """Record ``scope``'s share left of ``resource``; gauge and return the lowest."""
        if rate_limit.limit <= 0:
            return math.nan
        name = resource if resource in _RESOURCES else "other"
        percent = 100.0 * rate_limit.remaining / rate_limit.limit
        reset = rate_limit.reset_datetime.timestamp()
        now = self._clock()
        with self._lock:
            budgets = self._left.setdefault(name, {})
            budgets[scope] = (percent, reset)
            lowest = min(left if now < at else 100.0 for left, at in budgets.values())
        metrics.gauge("github_rate_limit_remaining", lowest, resource=name)
        return lowest
