"""Deterministic fault injection for the GitHub and Discord stand-ins.

Each stand-in owns one :class:`FaultPlan` (``standin.faults``). Before it serves a request
it calls :meth:`FaultPlan.take` with a :class:`FaultRequest` (method, path, parsed JSON
body); the first queued :class:`Fault` whose :class:`Match` accepts the request is removed
and applied. Nothing is random here: the same plan and the same requests give the same
answers, so a test can say exactly which request fails and how.

When a fault strikes (:class:`Phase`):

* ``INSTEAD`` -- the request is not served: the fault's answer goes back and the stand-in's
  state does not change (a 502 before anything happened, a 429, a GraphQL
  ``RATE_LIMITED``).
* ``AFTER`` -- the request is served first (its effect is applied: the comment exists, the
  label is set), then the fault's answer replaces the real one: *applied, then 502*, the
  ambiguous failure a client must not resolve by sending again. With ``status=None`` the
  real answer is kept and only the fault's headers are merged into it (a bucket that says
  ``X-RateLimit-Remaining: 0``).
* ``DROP`` -- the request is served and applied, then the connection is closed without an
  answer (what a client sees as a read timeout or a reset connection).

``delay`` (seconds) is slept before answering, outside the stand-in's lock: a delay longer
than the client's timeout is a timeout after the effect was applied.

Every applied fault is appended to :attr:`FaultPlan.history` as ``(request, fault)``.

Extension point for layered fault models (a seeded, per-route, probabilistic injector):
set :attr:`FaultPlan.policy` to a callable ``(FaultRequest) -> Fault | None``; it is asked
only when no queued fault matches, under the plan's lock, in request order. A policy that
draws from its own seeded :class:`random.Random` stays reproducible for a given sequence
of requests. The builders below (:func:`server_error`, :func:`github_secondary_limit`,
:func:`github_primary_limit`, :func:`graphql_rate_limited`, :func:`discord_rate_limited`)
make the platform-shaped answers such a policy can return.

The stand-ins keep their short-hands (``fail_next``, ``rate_limit_next``,
``primary_rate_limit_next``, ``apply_then_fail_next``, ``apply_then_drop_next``,
``graphql_rate_limit_next`` ...), which only queue faults built here.
"""

from __future__ import annotations

import enum
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: GitHub's words for a secondary rate limit (REST 403/429 with ``Retry-After``).
SECONDARY_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
PRIMARY_LIMIT_MESSAGE = "API rate limit exceeded for user ID 1."
GITHUB_DOCS_URL = "https://docs.github.com/rest"


class Phase(enum.Enum):
    """When a fault strikes, relative to serving the request (see the module docstring)."""

    INSTEAD = "instead"
    AFTER = "after"
    DROP = "drop"


@dataclass(frozen=True)
class FaultRequest:
    """What a fault can match on: the request as the stand-in parsed it."""

    method: str
    #: The path below the API root (``/repos/o/r/issues``, ``/graphql``, ``/channels/1/messages``).
    path: str
    body: Any = None

    @property
    def graphql_document(self) -> str:
        """The GraphQL document of a ``POST /graphql`` (empty otherwise)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("query"), str):
            return str(self.body["query"])
        return ""


@dataclass(frozen=True)
class Match:
    """Which requests a fault applies to; every given field must match (None = any)."""

    method: str | None = None
    #: A regular expression searched in the path.
    path: str | None = None
    #: A substring of the GraphQL document (``"addComment"``, ``"mutation"``).
    graphql: str | None = None

    def accepts(self, request: FaultRequest) -> bool:
        """True if ``request`` is one this fault is meant for."""
        if self.method is not None and self.method.upper() != request.method.upper():
            return False
        if self.path is not None and not re.search(self.path, request.path):
            return False
        return self.graphql is None or self.graphql in request.graphql_document


ANY = Match()


@dataclass(frozen=True)
class Fault:
    """One injected failure: when it strikes, what it answers, and for which requests."""

    phase: Phase = Phase.INSTEAD
    #: The answer's status; None keeps the real status and body (``AFTER`` only).
    status: int | None = 502
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (or before dropping the connection).
    delay: float = 0.0
    match: Match = ANY
    #: A short name for logs and :attr:`FaultPlan.history`.
    name: str = "fault"

    def answer(self, real: tuple[int, Any, dict[str, str]]) -> tuple[int, Any, dict[str, str]]:
        """The answer to send, given the real one (ignored unless ``status`` is None)."""
        if self.status is None:
            status, body, headers = real
            return status, body, {**headers, **self.headers}
        return self.status, self.body, dict(self.headers)


Policy = Callable[[FaultRequest], "Fault | None"]


class FaultPlan:
    """A thread-safe queue of faults, consumed in order by the requests they match."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []
        #: Asked when no queued fault matches (see the module docstring); None = no fault.
        self.policy: Policy | None = None
        #: Every fault applied, with the request it struck, oldest first.
        self.history: list[tuple[FaultRequest, Fault]] = []

    def add(self, fault: Fault, count: int = 1) -> None:
        """Queue ``count`` copies of ``fault``."""
        with self._lock:
            self._queue.extend([fault] * count)

    def take(self, request: FaultRequest) -> Fault | None:
        """Remove and return the first queued fault matching ``request`` (or ask the policy)."""
        with self._lock:
            chosen = next((f for f in self._queue if f.match.accepts(request)), None)
            if chosen is not None:
                self._queue.remove(chosen)
            elif self.policy is not None:
                chosen = self.policy(request)
            if chosen is not None:
                self.history.append((request, chosen))
            return chosen

    def pending(self) -> int:
        """How many queued faults have not struck yet."""
        with self._lock:
            return len(self._queue)

    def clear(self) -> None:
        """Drop every queued fault (the policy and the history stay)."""
        with self._lock:
            self._queue.clear()


# -- platform-shaped answers ------------------------------------------------------------


def server_error(
    status: int = 502,
    *,
    phase: Phase = Phase.INSTEAD,
    match: Match = ANY,
    delay: float = 0.0,
    body: Any = None,
) -> Fault:
    """A 5xx (or any status); ``phase=AFTER`` applies the request first.

    The body defaults to GitHub's error shape (``message``, ``documentation_url``,
    ``status``); the Discord stand-in passes Discord's ``{"message", "code"}``.
    """
    if body is None:
        message = "Server Error" if status >= 500 else "Error"
        body = {"message": message, "documentation_url": GITHUB_DOCS_URL, "status": str(status)}
    return Fault(phase, status, body, {}, delay, match, f"http-{status}")


def dropped(*, delay: float = 0.0, match: Match = ANY) -> Fault:
    """Apply the request, then close the connection without an answer."""
    return Fault(Phase.DROP, None, None, {}, delay, match, "drop")


def github_secondary_limit(retry_after: int = 1, *, status: int = 403, match: Match = ANY) -> Fault:
    """GitHub's secondary rate limit: 403 (or 429) with ``Retry-After`` seconds."""
    body = {
        "message": SECONDARY_LIMIT_MESSAGE,
        "documentation_url": GITHUB_DOCS_URL,
        "status": str(status),
    }
    headers = {"retry-after": str(int(retry_after))}
    return Fault(Phase.INSTEAD, status, body, headers, 0.0, match, "secondary-limit")


def github_primary_limit(reset_at: float, *, match: Match = ANY) -> Fault:
    """GitHub's primary rate limit (REST): 403 with ``x-ratelimit-remaining: 0`` until ``reset_at``.

    ``reset_at`` is epoch seconds; GitHub sends whole seconds.
    """
    body = {"message": PRIMARY_LIMIT_MESSAGE, "documentation_url": GITHUB_DOCS_URL, "status": "403"}
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(reset_at))}
    return Fault(Phase.INSTEAD, 403, body, headers, 0.0, match, "primary-limit")


def graphql_rate_limited(reset_at: float, *, match: Match | None = None) -> Fault:
    """GitHub's GraphQL rate limit: **HTTP 200** with ``errors[].type == "RATE_LIMITED"``.

    The headers say the ``graphql`` budget is spent until ``reset_at`` (epoch seconds).
    """
    body = {"errors": [{"type": "RATE_LIMITED", "message": PRIMARY_LIMIT_MESSAGE}]}
    headers = {
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(reset_at)),
        "x-ratelimit-resource": "graphql",
    }
    where = match or Match(method="POST", path="^/graphql$")
    return Fault(Phase.INSTEAD, 200, body, headers, 0.0, where, "graphql-rate-limited")


def discord_rate_limited(
    retry_after: float = 0.05, *, is_global: bool = False, match: Match = ANY
) -> Fault:
    """Discord's 429: JSON ``retry_after``/``global`` and the ``X-RateLimit-*`` headers."""
    headers = {
        "Retry-After": f"{retry_after:g}",
        "X-RateLimit-Scope": "global" if is_global else "user",
    }
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    else:
        headers.update(
            {
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{retry_after:g}",
                "X-RateLimit-Bucket": "standin",
            }
        )
    body = {
        "message": "You are being rate limited.",
        "code": 0,
        "retry_after": retry_after,
        "global": is_global,
    }
    return Fault(Phase.INSTEAD, 429, body, headers, 0.0, match, "discord-rate-limited")
