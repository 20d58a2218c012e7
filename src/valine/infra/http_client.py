"""What the GitHub and Discord clients share: backoff, rate-limit waits, what a failure means.

Each client keeps its own request loop, because the platforms signal differently (Discord:
per-route buckets, 429 with ``retry_after`` in JSON, a global limit; GitHub: primary and
secondary limits on 403/429, GraphQL limits as HTTP 200), but the rules are one:

* :func:`backoff_delay`: exponential backoff with "equal jitter" (uniform in ``[b/2, b]``,
  ``b = min(cap, base * 2 ** (attempt - 1))``), the one formula of every retry in the
  service (the job queues' too, :class:`valine.queue.retry.RetryPolicy`);
* :class:`RateLimitGate`: until when each key (a route's bucket, an API resource, the
  global limit) takes no request, shared by the threads of one process;
* :func:`may_have_arrived`: whether a network error may have reached the platform (then
  only an idempotent request is retried);
* secrets in error texts are redacted with :func:`valine.logs.redact`, the one redaction
  of the service.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


def may_have_arrived(exc: httpx.TransportError) -> bool:
    """False only for a network error raised before the request left this process
    (connecting, or waiting for a pooled connection): such a request is safe to retry
    whatever its method. httpx is imported here, not at module level: the job queues use
    this module's backoff and must not load an HTTP client."""
    import httpx

    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def backoff_delay(
    attempt: int,
    base: float,
    cap: float = math.inf,
    draw: Callable[[], float] = random.random,
) -> float:
    """The wait before retrying after failed attempt number ``attempt`` (1 for the first).

    Uniform in ``[b/2, b]`` with ``b = min(cap, base * 2 ** (attempt - 1))``: the delay
    still doubles per attempt, and retries that failed together spread out. ``draw``
    gives the jitter, in ``[0, 1)`` (tests fix it).
    """
    exponent = min(max(attempt - 1, 0), 64)  # 2**64 * base already exceeds any cap
    ceiling = min(cap, base * 2.0**exponent)
    return ceiling / 2 + draw() * ceiling / 2


class RateLimitGate:
    """Until when each key takes no request (epoch seconds of ``clock``); thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def block(self, key: str, seconds: float) -> float:
        """Hold ``key`` for ``seconds`` from now (a longer hold stays); the time it ends."""
        return self.block_until(key, self._clock() + seconds)

    def block_until(self, key: str, until: float) -> float:
        """Hold ``key`` until ``until`` (a later hold stays); the time it ends."""
        with self._lock:
            self._until[key] = max(self._until.get(key, 0.0), until)
            return self._until[key]

    def until(self, *keys: str) -> float:
        """The latest time any of ``keys`` is held until (0 when none is); forgets past holds."""
        now = self._clock()
        with self._lock:
            for key in [k for k, until in self._until.items() if until <= now]:
                del self._until[key]
            return max((self._until.get(key, 0.0) for key in keys), default=0.0)

    def wait(self, *keys: str) -> float:
        """Seconds from now until every one of ``keys`` is free (0 when none is held)."""
        return max(0.0, self.until(*keys) - self._clock())
