"""The small interfaces between the use cases and the outside world.

Each port has one adapter per runtime (SQLite or DynamoDB for ``RunStore``; the SQLite
queue or SQS for ``JobQueue``; real HTTP clients or the tests' stand-ins for ``GitHub``
and ``Discord``). Adapters raise the domain errors of :mod:`valine.core.errors`, never
their library's exceptions. Contract test suites in ``tests/contract`` run unchanged
against every adapter of a port.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from valine.core.models import Run


class Clock(Protocol):
    """Wall-clock time, passed in so the core and the tests control it."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One attempted action: who, what, on which run, the outcome, and when."""

    at: float
    actor: str
    action: str
    outcome: str
    run_id: str | None = None
    detail: str | None = None


class RunStore(Protocol):
    """Durable state: runs (with their tasks), processed deliveries, and the audit trail.

    Writes are optimistic: :meth:`save_run` succeeds only if the stored version still is
    the one the caller read, and raises :class:`~valine.core.errors.RunConflict` if not.
    """

    def create_run(self, run: Run) -> Run:
        """Store a new run; returns it with ``version`` 1.

        Raises ``ActiveRunExists`` if ``run`` is active and its repository already has an
        active run, and ``RunConflict`` if ``run.run_id`` is taken.
        """
        ...

    def get_run(self, run_id: str) -> Run:
        """The stored run; raises ``NotFound``."""
        ...

    def save_run(self, run: Run) -> Run:
        """Replace the stored run if its version is still ``run.version``.

        Returns the run with ``version + 1``. Raises ``RunConflict`` when the stored
        version differs, and ``NotFound`` when there is no such run. A run that leaves
        the active states releases its repository's lock in the same write.
        """
        ...

    def active_run(self, repo: str) -> Run | None:
        """The repository's one active (non-terminal) run, if any. Uses an index."""
        ...

    def recent_runs(self, repo: str | None = None, limit: int = 10) -> Sequence[Run]:
        """Runs by most recent creation first, optionally of one repository. Uses an index."""
        ...

    def record_delivery(self, delivery_id: str, expires_at: float) -> bool:
        """Mark a delivery as processed; False if it already was (and not yet expired)."""
        ...

    def purge_expired(self, now: float) -> int:
        """Delete delivery records that expired before ``now``; returns how many."""
        ...

    def append_audit(self, entry: AuditEntry) -> None:
        """Add one entry to the audit trail."""
        ...

    def audit_trail(self, run_id: str | None = None, limit: int = 50) -> Sequence[AuditEntry]:
        """Audit entries, newest first, optionally of one run."""
        ...


@dataclass(frozen=True, slots=True)
class Job:
    """A unit of background work taken from a :class:`JobQueue`."""

    job_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_token: str = field(repr=False)


class JobQueue(Protocol):
    """At-least-once background work: enqueue, lease, then ack or retry.

    A leased job is invisible to other workers until its visibility timeout passes; a
    worker that dies without acking lets the job run again after that. Handlers must be
    idempotent. After ``max_attempts`` failed attempts a job is dead-lettered.
    """

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
    ) -> bool:
        """Add a job; False (and nothing added) if ``dedupe_key`` was already enqueued."""
        ...

    def lease(self, visibility_timeout: float) -> Job | None:
        """Take the next due job for ``visibility_timeout`` seconds, or None if none is due."""
        ...

    def ack(self, job: Job) -> None:
        """The job is done: remove it for good."""
        ...

    def retry(self, job: Job, error: str) -> bool:
        """The attempt failed: run it again after a backoff, or dead-letter it.

        Returns True if it will be retried, False if it was dead-lettered.
        """
        ...

    def dead_letters(self, limit: int = 50) -> Sequence[Job]:
        """Jobs that failed ``max_attempts`` times, newest first."""
        ...

    def depth(self) -> int:
        """How many jobs are waiting or leased (not done, not dead)."""
        ...


@dataclass(frozen=True, slots=True)
class Issue:
    """What the planner needs to know about one GitHub issue."""

    number: int
    title: str
    labels: tuple[str, ...]
    created_at: str
    milestone_due_on: str | None = None
    url: str = ""


class GitHub(Protocol):
    """The GitHub operations the workflow needs (filled in by the workflow issue)."""

    def list_ready_issues(self, repo: str, label: str) -> Sequence[Issue]:
        """Open issues (pull requests excluded) carrying ``label``."""
        ...


class Discord(Protocol):
    """The Discord operations the workflow needs (filled in by the workflow issue)."""

    def edit_original(self, application_id: str, token: str, message: dict[str, Any]) -> None:
        """Replace the original interaction response with ``message``."""
        ...
