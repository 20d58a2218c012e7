"""What every :class:`~valine.ports.JobQueue` adapter shares: the queue's semantics.

The base holds the rules (how many attempts, the backoff, when a job is dead-lettered, a
lease that is no longer held, a worker that kept dying, which errors become
``QueueUnavailable``); an adapter supplies a few storage primitives, each one round trip
or one transaction of its backend:

``_receive(visibility)``
    take the next due job for ``visibility`` seconds (counting the attempt), or None;
``_delete(job)``
    drop a finished job; False if its lease is no longer held;
``_reschedule(job, delay, error)``
    make a failed job due after ``delay``, keeping ``error``; False if not held;
``_bury(job, error, attempts)``
    move the job to the dead letters with ``error`` and forget its dedupe key (its work
    was not done); False if not held;
``_set_visibility(job, seconds)``
    push a held lease ``seconds`` past now (the heartbeat); False if not held;
``_put_back(job, delay)``
    make the job due after ``delay`` without spending the attempt; False if not held.

``enqueue``, ``claim``, ``dead_letters`` and ``depth`` are the adapter's own: how a dedupe
key and its job are written together differs too much between a SQLite transaction and
a DynamoDB claim followed by an SQS send to share code.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypedDict, Unpack

from valine.core.errors import QueueUnavailable
from valine.logs import get_logger
from valine.ports import Job
from valine.queue.retry import queue_policy

log = get_logger("valine.queue")

#: How many abandoned jobs (received more than ``max_attempts`` times) one ``lease`` buries
#: before it gives up and reports the queue as empty for now.
MAX_BURIALS_PER_LEASE = 10
#: The defaults of every queue adapter: attempts before a job is dead-lettered, the
#: backoff's first step and cap (seconds), how long a dedupe key is remembered.
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BASE_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_DEDUPE_TTL = 7 * 24 * 3600.0
#: The error a dead letter carries when its workers kept dying.
ABANDONED = "lease expired without ack or retry (worker died?)"


class QueueOptions(TypedDict, total=False):
    """The keyword arguments every queue adapter passes on to :class:`QueueBase`."""

    max_attempts: int
    base_backoff: float
    max_backoff: float
    clock: Callable[[], float]
    rng: random.Random | None
    dedupe_ttl: float


class QueueBase:
    """The retry, dead-letter, lease and error-translation logic of every queue adapter.

    ``max_attempts`` leases fail before a job is dead-lettered. A failed attempt ``n`` is
    retried after a delay drawn uniformly from ``[b/2, b]`` where
    ``b = min(max_backoff, base_backoff * 2 ** (n - 1))`` ("equal jitter": the delay
    still doubles per attempt, and retries of jobs that failed together spread out).
    ``clock`` and ``rng`` are injectable so tests control time and jitter. Dedupe keys are
    remembered for ``dedupe_ttl`` seconds (a week by default).
    """

    #: The backend's name in error messages ("database", "SQS").
    backend = "backend"

    def __init__(self, **options: Unpack[QueueOptions]) -> None:
        max_attempts = options.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        base_backoff = options.get("base_backoff", DEFAULT_BASE_BACKOFF)
        max_backoff = options.get("max_backoff", DEFAULT_MAX_BACKOFF)
        rng = options.get("rng")
        dedupe_ttl = options.get("dedupe_ttl", DEFAULT_DEDUPE_TTL)
        self.retry_policy = queue_policy(max_attempts, base_backoff, max_backoff, rng, dedupe_ttl)
        self.max_attempts = max_attempts
        self.dedupe_ttl = dedupe_ttl
        self._clock = options.get("clock", time.time)

    # -- JobQueue -------------------------------------------------------------------

    def lease(self, visibility_timeout: float) -> Job | None:
        """Take the next due job for ``visibility_timeout`` seconds, or None if none is due.

        The job's ``attempts`` counts this lease. A job already leased ``max_attempts``
        times (its workers kept dying before ack or retry) is dead-lettered instead of
        handed out again, as SQS's redrive policy does, so a job that crashes its worker
        cannot loop forever; then the next one is taken.
        """
        for _ in range(MAX_BURIALS_PER_LEASE):
            job = self._receive(max(0.0, visibility_timeout))
            if job is None or job.attempts <= self.max_attempts:
                return job
            self.bury_abandoned(job)
        return None

    def ack(self, job: Job) -> None:
        """Delete the finished job; a lease no longer held is logged and ignored."""
        if not self._delete(job):
            self._stale(job, "ack")

    def retry(self, job: Job, error: str) -> bool:
        """Reschedule the job after a backoff, or dead-letter it after ``max_attempts``.

        Returns True if it will run again, False if it was dead-lettered. ``error`` is kept
        as the job's ``last_error``. A lease no longer held (it expired and the job was
        leased again, acked or retried) changes nothing, is logged, and gives True: this
        call dead-lettered nothing.
        """
        if self.retry_policy.exhausted(job.attempts):
            if self._bury(job, error, job.attempts):
                _count_dead_letter(job)
                return False
        elif self._reschedule(job, self.backoff(job.attempts), error):
            return True
        self._stale(job, "retry")
        return True

    def extend(self, job: Job, visibility_timeout: float) -> bool:
        """Heartbeat: push the held lease ``visibility_timeout`` seconds past now.

        False, and nothing changed, if ``job``'s lease is no longer the current one.
        """
        extended = self._set_visibility(job, max(0.0, visibility_timeout))
        if not extended:
            self._stale(job, "extend")
        return extended

    def release(self, job: Job, delay: float) -> bool:
        """Make the job due after ``delay`` seconds and give back the attempt it was leased with.

        A wait, not a failure (a rate limit until its reset). False, and nothing changed,
        if ``job``'s lease is no longer the current one.
        """
        released = self._put_back(job, max(0.0, delay))
        if not released:
            self._stale(job, "release")
        return released

    # -- beyond the port ------------------------------------------------------------

    def backoff(self, attempts: int) -> float:
        """The delay before retrying a job whose attempt ``attempts`` failed (see RetryPolicy)."""
        return self.retry_policy.backoff(attempts)

    def bury_abandoned(self, job: Job) -> None:
        """Dead-letter a job received more than ``max_attempts`` times (its workers died).

        The worker Lambda, which SQS feeds by itself, calls this and then the dead-letter
        hook, so the people waiting are told.
        """
        attempts = job.attempts - 1  # this receive was not handed to any worker
        if self._bury(job, ABANDONED, attempts):
            _count_dead_letter(job)
        log.error(
            "job %s (%s) dead-lettered: %d leases expired without ack or retry",
            job.job_id,
            job.kind,
            attempts,
            extra={"job_id": job.job_id, "job_kind": job.kind},
        )

    # -- for the adapters -----------------------------------------------------------

    def _is_backend_error(self, exc: BaseException) -> bool:
        """True for the backend's own exceptions (they become ``QueueUnavailable``)."""
        raise NotImplementedError

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn the backend's exceptions into the domain's :class:`QueueUnavailable`."""
        try:
            yield
        except QueueUnavailable:
            raise
        except Exception as exc:
            if self._is_backend_error(exc):
                raise QueueUnavailable(
                    f"job queue ({self.backend}) could not {action}: {exc}"
                ) from exc
            raise

    @staticmethod
    def _stale(job: Job, action: str) -> None:
        log.warning(
            "%s of job %s (%s) ignored: its lease is no longer held",
            action,
            job.job_id,
            job.kind,
            extra={"job_id": job.job_id, "job_kind": job.kind},
        )

    # -- the primitives (see the module docstring) ------------------------------------

    def _receive(self, visibility_timeout: float) -> Job | None:
        raise NotImplementedError

    def _delete(self, job: Job) -> bool:
        raise NotImplementedError

    def _reschedule(self, job: Job, delay: float, error: str) -> bool:
        raise NotImplementedError

    def _bury(self, job: Job, error: str, attempts: int) -> bool:
        raise NotImplementedError

    def _set_visibility(self, job: Job, visibility_timeout: float) -> bool:
        raise NotImplementedError

    def _put_back(self, job: Job, delay: float) -> bool:
        raise NotImplementedError


def _count_dead_letter(job: Job) -> None:
    """The dead-letter metric (the dead-letter alarms watch it), once per job buried."""
    from valine import metrics

    metrics.count("dead_letters", kind=job.kind)
