"""In-memory :class:`~valine.ports.RunStore` and :class:`~valine.ports.JobQueue`, for tests.

They keep the ports' whole contract (tests/contract/test_run_store.py and
test_job_queue.py run against them as against SQLite, DynamoDB and SQS): optimistic
versions, one active run a repository, audit newest first; leases with fresh tokens,
stale acks ignored, retries, dead letters that release their dedupe key and abandoned
leases (the queue base's rules, :mod:`valine.queue.base`, the real adapters' too), claims.
So a use case can be tested without a database file or HTTP, in one process. Runs are
stored as their JSON documents (as the real stores do), so a caller's object is never
shared with the store. One lock guards each; nothing survives the process.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Unpack

from valine.core.errors import ActiveRunExists, NotFound, RunConflict
from valine.core.models import Run
from valine.ports import AuditEntry, Job
from valine.queue.base import ABANDONED, QueueBase, QueueOptions


class MemoryRunStore:
    """A :class:`~valine.ports.RunStore` in a dict (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: run id -> (version, the run's JSON document)
        self._runs: dict[str, tuple[int, str]] = {}
        self._audit: list[AuditEntry] = []

    def close(self) -> None:
        """Nothing to close (the stores' common interface)."""

    def create_run(self, run: Run) -> Run:
        """Store a new run at version 1 (``RunConflict`` first, then ``ActiveRunExists``)."""
        stored = replace(run, version=1)
        with self._lock:
            if run.run_id in self._runs:
                raise RunConflict(f"run id {run.run_id} is already taken")
            self._refuse_second_active(run)
            self._runs[run.run_id] = (1, _encode(stored))
        return stored

    def get_run(self, run_id: str) -> Run:
        """The stored run; raises ``NotFound``."""
        with self._lock:
            return self._get(run_id)

    def save_run(self, run: Run) -> Run:
        """Replace the stored run if its version is still ``run.version``; version + 1."""
        saved = replace(run, version=run.version + 1)
        with self._lock:
            if run.run_id not in self._runs:
                raise NotFound(f"no run {run.run_id}")
            version = self._runs[run.run_id][0]
            if version != run.version:
                raise RunConflict(
                    f"run {run.run_id} is at version {version}, not {run.version}: "
                    "it changed since it was read"
                )
            self._refuse_second_active(run)
            self._runs[run.run_id] = (saved.version, _encode(saved))
        return saved

    def active_run(self, repo: str, *, likely_none: bool = False) -> Run | None:
        """The repository's one active run, if any (``likely_none`` changes nothing)."""
        with self._lock:
            return next((r for r in self._all() if r.repo == repo and r.active), None)

    def recent_runs(self, repo: str | None = None, limit: int = 10) -> Sequence[Run]:
        """Up to ``limit`` runs, newest ``created_at`` first (ties: higher ``run_id``)."""
        if limit < 1:
            return []
        with self._lock:
            runs = [r for r in self._all() if repo is None or r.repo == repo]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return runs[:limit]

    def recent_run_ids(self, repo: str | None = None, limit: int = 10) -> Sequence[str]:
        """The ids of :meth:`recent_runs`, in its order."""
        return [run.run_id for run in self.recent_runs(repo, limit)]

    def append_audit(self, entry: AuditEntry) -> None:
        """Add one entry to the audit trail."""
        with self._lock:
            self._audit.append(entry)

    def audit_trail(self, run_id: str | None = None, limit: int = 50) -> Sequence[AuditEntry]:
        """Up to ``limit`` entries, newest ``at`` first (ties: newest appended first)."""
        if limit < 1:
            return []
        with self._lock:
            numbered = [
                (entry.at, i, entry)
                for i, entry in enumerate(self._audit)
                if run_id is None or entry.run_id == run_id
            ]
        numbered.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [entry for _, _, entry in numbered[:limit]]

    def _get(self, run_id: str) -> Run:
        if run_id not in self._runs:
            raise NotFound(f"no run {run_id}")
        return _decode(*self._runs[run_id])

    def _all(self) -> list[Run]:
        return [_decode(version, doc) for version, doc in self._runs.values()]

    def _refuse_second_active(self, run: Run) -> None:
        """``ActiveRunExists`` if ``run`` is active and another run of its repository is."""
        if not run.active:
            return
        for other in self._all():
            if other.repo == run.repo and other.active and other.run_id != run.run_id:
                raise ActiveRunExists(run.repo, other.run_id)


def _encode(run: Run) -> str:
    return json.dumps(run.to_dict(), separators=(",", ":"), allow_nan=False)


def _decode(version: int, doc: str) -> Run:
    data = json.loads(doc)
    data["version"] = version
    return Run.from_dict(data)


@dataclass
class _Entry:
    """One job as the queue holds it."""

    seq: int
    job_id: str
    kind: str
    payload: str
    available_at: float
    dedupe_key: str | None
    attempts: int = 0
    lease_token: str | None = None
    last_error: str | None = None
    dead: bool = False
    died_at: float | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter(Job):
    """A dead-lettered job, with when it died (``last_error`` says why)."""

    died_at: float | None = None


class MemoryJobQueue(QueueBase):
    """A :class:`~valine.ports.JobQueue` in memory: :class:`~valine.queue.base.QueueBase`'s
    semantics (retries, dead letters, leases, abandoned jobs) on dicts.

    Takes the options of every queue adapter (``max_attempts``, ``base_backoff``,
    ``max_backoff``, ``clock``, ``rng``, ``dedupe_ttl``).
    """

    backend = "memory"

    def __init__(self, **options: Unpack[QueueOptions]) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()
        self._jobs: dict[str, _Entry] = {}
        self._seq = 0
        #: dedupe key -> when it expires
        self._dedupe: dict[str, float] = {}
        #: claim key -> (uses, when the count expires)
        self._claims: dict[str, tuple[int, float]] = {}

    def close(self) -> None:
        """Nothing to close (the queues' common interface)."""

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
    ) -> bool:
        """Add a job due after ``delay``; False (nothing added) for a seen ``dedupe_key``."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        now = self._clock()
        with self._lock:
            if dedupe_key is not None:
                if self._dedupe.get(dedupe_key, now) > now:
                    return False
                self._dedupe[dedupe_key] = now + self.dedupe_ttl
            self._seq += 1
            job_id = uuid.uuid4().hex
            self._jobs[job_id] = _Entry(
                self._seq, job_id, kind, body, now + max(0.0, delay), dedupe_key
            )
        return True

    def claim(self, key: str, ttl: float, limit: int = 1) -> bool:
        """Count one use of ``key``; False once ``limit`` uses are counted in its window."""
        now = self._clock()
        with self._lock:
            uses, expires = self._claims.get(key, (0, now))
            if expires <= now:
                uses, expires = 0, now + ttl
            if uses >= limit:
                return False
            self._claims[key] = (uses + 1, expires)
            return True

    def dead_letters(self, limit: int = 50) -> Sequence[Job]:
        """Dead-lettered jobs, most recently dead first, with their last error."""
        with self._lock:
            dead = [e for e in self._jobs.values() if e.dead]
        dead.sort(key=lambda e: (e.died_at or 0.0, e.seq), reverse=True)
        return [
            DeadLetter(
                e.job_id,
                e.kind,
                json.loads(e.payload),
                e.attempts,
                "",
                e.last_error,
                died_at=e.died_at,
            )
            for e in dead[: max(0, limit)]
        ]

    def depth(self) -> int:
        """How many jobs are waiting or leased."""
        with self._lock:
            return sum(1 for e in self._jobs.values() if not e.dead)

    # -- the primitives of QueueBase -------------------------------------------------

    def _is_backend_error(self, exc: BaseException) -> bool:
        return False  # dicts do not fail

    def _receive(self, visibility_timeout: float) -> Job | None:
        now = self._clock()
        with self._lock:
            due = [e for e in self._jobs.values() if not e.dead and e.available_at <= now]
            entry = min(due, key=lambda e: (e.available_at, e.seq), default=None)
            if entry is None:
                return None
            entry.attempts += 1
            entry.available_at = now + visibility_timeout
            entry.lease_token = uuid.uuid4().hex
            return Job(
                entry.job_id,
                entry.kind,
                json.loads(entry.payload),
                entry.attempts,
                lease_token=entry.lease_token,
            )

    def _delete(self, job: Job) -> bool:
        with self._lock:
            if self._held(job) is None:
                return False
            del self._jobs[job.job_id]
            return True

    def _reschedule(self, job: Job, delay: float, error: str) -> bool:
        with self._lock:
            entry = self._held(job)
            if entry is None:
                return False
            entry.available_at = self._clock() + delay
            entry.last_error, entry.lease_token = error, None
            return True

    def _bury(self, job: Job, error: str, attempts: int) -> bool:
        """Dead-letter the held job; an abandoned one keeps the error it last failed with."""
        with self._lock:
            entry = self._held(job)
            if entry is None:
                return False
            if error == ABANDONED and entry.last_error:
                error = f"{entry.last_error}; {error}"
            entry.dead, entry.died_at, entry.lease_token = True, self._clock(), None
            entry.attempts, entry.last_error = attempts, error
            if entry.dedupe_key is not None:
                self._dedupe.pop(entry.dedupe_key, None)  # its work was not done
            return True

    def _set_visibility(self, job: Job, visibility_timeout: float) -> bool:
        with self._lock:
            entry = self._held(job)
            if entry is None:
                return False
            entry.available_at = self._clock() + visibility_timeout
            return True

    def _put_back(self, job: Job, delay: float) -> bool:
        with self._lock:
            entry = self._held(job)
            if entry is None:
                return False
            entry.available_at = self._clock() + delay
            entry.attempts = max(0, entry.attempts - 1)
            entry.lease_token = None
            return True

    def _held(self, job: Job) -> _Entry | None:
        """The job's entry if ``job`` holds its current lease."""
        entry = self._jobs.get(job.job_id)
        if entry is None or entry.dead or entry.lease_token != job.lease_token:
            return None
        return entry
