"""A durable job queue in a SQLite file: the local runtime's :class:`~valine.ports.JobQueue`.

The queue follows SQS's model so the same handlers run on both. A job is a row in
``queue_jobs``; leasing it pushes its ``available_at`` forward by the visibility timeout,
so a worker that dies without acking simply lets the job become due again. Every lease
hands out a fresh ``lease_token``, and ack/retry only act while that token is still the
job's, so a worker whose lease expired cannot finish or reschedule someone else's lease.

Dedupe keys live in their own table, ``queue_dedupe``, written in the same transaction as
the job: one commit makes both the "seen" mark and the job durable, and the mark outlives
the job being acked. A job that is dead-lettered releases its key (its work was not
done), so the same work can be enqueued again -- GitHub's *Redeliver* of a delivery
whose job died is processed. ``queue_claims`` counts uses of keys that have no job
(:meth:`SqliteJobQueue.claim`: replayed interactions, rate limits). Keys expire after
``dedupe_ttl`` seconds and are purged in bounded batches at most once a minute by
:meth:`SqliteJobQueue.enqueue` (or on demand with :meth:`SqliteJobQueue.purge_expired`).

Every table of the queue is prefixed ``queue_`` because the run store keeps its
``store_`` tables in the same database file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Unpack

from valine.core.errors import QueueUnavailable
from valine.infra.sequence import rising_ns
from valine.infra.sqlite import Database, path_from_url
from valine.logs import get_logger
from valine.ports import Job
from valine.queue.base import ABANDONED, QueueBase, QueueOptions

log = get_logger("valine.queue")
_T = TypeVar("_T")

#: How often (in seconds of the queue's clock) ``enqueue`` purges expired dedupe keys.
PURGE_INTERVAL = 60.0
#: At most this many expired dedupe keys are deleted by one opportunistic purge, so an
#: enqueue on the webhook path never pays for a large backlog at once.
PURGE_BATCH = 500


def new_job_id() -> str:
    """A job id: 16 hex digits of the nanosecond clock, then 16 random ones.

    As unique as ``uuid4().hex`` (64 random bits per nanosecond) and as long, but ids made
    one after another sort together, so a new job's entry lands at the end of the
    ``job_id`` index instead of on a random page of it: 57 against 60-79 us of CPU per
    job in batches of 6 over 120,000 jobs (docs/benchmarks.md).
    """
    return f"{rising_ns():016x}{os.urandom(8).hex()}"


SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_jobs (
    seq          INTEGER PRIMARY KEY,
    job_id       TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'ready',
    available_at REAL    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_token  TEXT,
    last_error   TEXT,
    enqueued_at  REAL    NOT NULL,
    died_at      REAL,
    dedupe_key   TEXT
);
CREATE INDEX IF NOT EXISTS queue_jobs_due ON queue_jobs (state, available_at);
CREATE INDEX IF NOT EXISTS queue_jobs_dead ON queue_jobs (state, died_at)
    WHERE state = 'dead';
CREATE TABLE IF NOT EXISTS queue_dedupe (
    key        TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_dedupe_expiry ON queue_dedupe (expires_at);
CREATE TABLE IF NOT EXISTS queue_claims (
    key        TEXT PRIMARY KEY,
    uses       INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_claims_expiry ON queue_claims (expires_at);
"""
#: Added after the first release: a database made by it gets the column on open.
_MIGRATIONS = ("ALTER TABLE queue_jobs ADD COLUMN dedupe_key TEXT",)

# The oldest due job. ``queue_jobs_due`` ends (implicitly) with the rowid ``seq``, so the
# ORDER BY is read straight off the index: no scan, no sort.
_NEXT_DUE = (
    "SELECT seq FROM queue_jobs WHERE state = 'ready' AND available_at <= ? "
    "ORDER BY available_at, seq LIMIT 1"
)


#: Rows per multi-row INSERT of :meth:`SqliteJobQueue.enqueue_many` (6 values a job row:
#: far below SQLite's limit of 32,766 bound values).
_ROWS_PER_STATEMENT = 200


def _chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _placeholders(width: int, rows: int) -> str:
    """``(?, ?),(?, ?)``: the VALUES of a multi-row INSERT (never any value itself)."""
    return ",".join(["(" + ", ".join("?" * width) + ")"] * rows)


@dataclass(frozen=True, slots=True)
class DeadLetter(Job):
    """A dead-lettered job, with when its last attempt failed (``last_error`` says why)."""

    died_at: float | None = None


def _migrate(db: Database) -> None:
    for statement in _MIGRATIONS:
        try:
            db.executescript(statement)
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process migrated first
                raise


def _decode(payload: str) -> dict[str, Any]:
    value = json.loads(payload)
    if not isinstance(value, dict):  # only ever written by enqueue, which takes a dict
        raise QueueUnavailable("job payload in the database is not a JSON object")
    return value


class SqliteJobQueue(QueueBase):
    """A :class:`~valine.ports.JobQueue` on a SQLite database file.

    The retry, dead-letter and lease rules are :class:`~valine.queue.base.QueueBase`'s
    (its arguments: ``max_attempts``, ``base_backoff``, ``max_backoff``, ``clock``,
    ``rng``, ``dedupe_ttl``); this class supplies its primitives, each one transaction.

    Safe to share between threads (each thread gets its own connection from ``db``) and
    between processes on the same file (every change is one ``BEGIN IMMEDIATE``
    transaction).
    """

    backend = "database"

    def __init__(self, db: Database, **options: Unpack[QueueOptions]) -> None:
        super().__init__(**options)
        self.db = db
        self._last_purge: float | None = None
        with self._translated("open"):
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.connection().execute("PRAGMA table_info(queue_jobs)")}
            if "dedupe_key" not in columns:
                _migrate(db)

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> SqliteJobQueue:
        """A queue on the file of a ``sqlite:///path/to.db`` URL; ``kw`` go to the constructor."""
        return cls(Database(path_from_url(url)), **kw)

    def close(self) -> None:
        """Close the database connections (of every thread) this queue's ``db`` opened."""
        self.db.close()

    # -- JobQueue -------------------------------------------------------------------

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
    ) -> bool:
        """Add a job due after ``delay`` seconds; False (nothing added) for a seen ``dedupe_key``.

        The dedupe mark and the job are written in one transaction: when this returns
        True both are durable, when it raises neither is. A dedupe key counts as seen
        until ``dedupe_ttl`` seconds after it was first enqueued, even once its job is
        done or dead. ``payload`` must be JSON-serialisable (``TypeError`` if not).
        """
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        now = self._clock()
        with self._translated("add a job"), self.db.write() as conn:
            if self._purge_due(now):
                self._purge(conn, now, PURGE_BATCH)
            if dedupe_key is not None:
                added = conn.execute(
                    "INSERT INTO queue_dedupe (key, expires_at) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                    "WHERE queue_dedupe.expires_at <= ?",
                    (dedupe_key, now + self.dedupe_ttl, now),
                ).rowcount
                if not added:
                    return False
            conn.execute(
                "INSERT INTO queue_jobs "
                "(job_id, kind, payload, available_at, enqueued_at, dedupe_key) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (new_job_id(), kind, body, now + max(0.0, delay), now, dedupe_key),
            )
        return True

    def enqueue_many(self, jobs: Sequence[tuple[str, dict[str, Any], str]]) -> list[bool]:
        """Add several ``(kind, payload, dedupe_key)`` jobs in one transaction (group commit).

        The answer per job is :meth:`enqueue`'s: False for a dedupe key already seen,
        including one that appears earlier in ``jobs``. One multi-row statement writes
        the keys (``RETURNING`` the ones that were new) and one the jobs, so a batch costs
        one commit and four statements whatever its size. When this returns, every job
        it answered True for is durable; when it raises, none is.
        """
        if not jobs:
            return []
        now = self._clock()
        expires = now + self.dedupe_ttl
        with self._translated("add jobs"), self.db.write() as conn:
            if self._purge_due(now):
                self._purge(conn, now, PURGE_BATCH)
            added: set[str] = set()
            for chunk in _chunks([key for _, _, key in jobs], _ROWS_PER_STATEMENT):
                rows = conn.execute(
                    "INSERT INTO queue_dedupe (key, expires_at) VALUES "  # noqa: S608 (only ?s joined)
                    + _placeholders(2, len(chunk))
                    + " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                    "WHERE queue_dedupe.expires_at <= ? RETURNING key",
                    [*(v for key in chunk for v in (key, expires)), now],
                ).fetchall()
                added.update(row[0] for row in rows)
            answers, values = [], []
            for kind, payload, key in jobs:
                new = key in added
                added.discard(key)  # a second job with the same key is a duplicate
                answers.append(new)
                if new:
                    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
                    values.append((new_job_id(), kind, body, now, now, key))
            for rows_of in _chunks(values, _ROWS_PER_STATEMENT):
                conn.execute(
                    "INSERT INTO queue_jobs "  # noqa: S608 (only ?s joined)
                    "(job_id, kind, payload, available_at, enqueued_at, dedupe_key) VALUES "
                    + _placeholders(6, len(rows_of)),
                    [v for row in rows_of for v in row],
                )
        return answers

    def claim(self, key: str, ttl: float, limit: int = 1) -> bool:
        """Count one use of ``key`` (one upsert); False once ``limit`` uses are counted."""
        now = self._clock()
        with self._translated("count a claim"), self.db.write() as conn:
            return bool(
                conn.execute(
                    "INSERT INTO queue_claims (key, uses, expires_at) VALUES (?, 1, ?) "
                    "ON CONFLICT (key) DO UPDATE SET "
                    "uses = CASE WHEN queue_claims.expires_at <= ? THEN 1 "
                    "ELSE queue_claims.uses + 1 END, "
                    "expires_at = CASE WHEN queue_claims.expires_at <= ? "
                    "THEN excluded.expires_at ELSE queue_claims.expires_at END "
                    "WHERE queue_claims.expires_at <= ? OR queue_claims.uses < ?",
                    (key, now + ttl, now, now, now, limit),
                ).rowcount
            )

    def dead_letters(self, limit: int = 50) -> Sequence[DeadLetter]:
        """Dead-lettered jobs, most recently dead first, with their last error."""
        with self._translated("read the dead letters"):
            rows = (
                self.db.connection()
                .execute(
                    "SELECT job_id, kind, payload, attempts, last_error, died_at FROM queue_jobs "
                    "WHERE state = 'dead' ORDER BY died_at DESC, seq DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [
            DeadLetter(job_id, kind, _decode(payload), attempts, "", last_error, died_at=died_at)
            for job_id, kind, payload, attempts, last_error, died_at in rows
        ]

    def depth(self) -> int:
        """How many jobs are waiting or leased (neither acked nor dead-lettered)."""
        with self._translated("count the jobs"):
            row = (
                self.db.connection()
                .execute("SELECT count(*) FROM queue_jobs WHERE state = 'ready'")
                .fetchall()
            )
        return int(row[0][0])

    # -- beyond the port ------------------------------------------------------------

    def purge_expired(self, limit: int | None = None) -> int:
        """Delete dedupe keys that have expired (at most ``limit`` of them); returns how many."""
        now = self._clock()
        with self._translated("purge dedupe keys"), self.db.write() as conn:
            return self._purge(conn, now, limit)

    # -- helpers --------------------------------------------------------------------

    def _purge_due(self, now: float) -> bool:
        """True at most once per ``PURGE_INTERVAL`` (a benign race may purge twice)."""
        if self._last_purge is not None and now - self._last_purge < PURGE_INTERVAL:
            return False
        self._last_purge = now
        return True

    @staticmethod
    def _purge(conn: sqlite3.Connection, now: float, limit: int | None) -> int:
        batch = -1 if limit is None else limit
        conn.execute(
            "DELETE FROM queue_claims WHERE key IN "
            "(SELECT key FROM queue_claims WHERE expires_at <= ? LIMIT ?)",
            (now, batch),
        )
        return conn.execute(
            "DELETE FROM queue_dedupe WHERE key IN "
            "(SELECT key FROM queue_dedupe WHERE expires_at <= ? LIMIT ?)",
            (now, batch),
        ).rowcount

    @staticmethod
    def _release_dedupe(conn: sqlite3.Connection, job_id: str) -> None:
        """Forget the dedupe key of a job that died: its work was not done."""
        conn.execute(
            "DELETE FROM queue_dedupe WHERE key = "
            "(SELECT dedupe_key FROM queue_jobs WHERE job_id = ?)",
            (job_id,),
        )

    # -- the primitives of QueueBase --------------------------------------------------

    def _is_backend_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)

    def _receive(self, visibility_timeout: float) -> Job | None:
        """The oldest due job, its attempt counted, for ``visibility_timeout`` seconds.

        An empty queue costs one indexed read and no write lock, so idle workers do not
        contend with enqueues.
        """
        now = self._clock()
        with self._translated("take a job"):
            # fetchall, not fetchone: it finishes the statement, so no read stays open.
            if not self.db.connection().execute(_NEXT_DUE, (now,)).fetchall():
                return None
            token = uuid.uuid4().hex
            with self.db.write() as conn:
                # Picked again under the write lock: another worker may have won the race.
                due = conn.execute(_NEXT_DUE, (now,)).fetchall()
                if not due:
                    return None
                ((job_id, kind, payload, attempts, enqueued_at),) = conn.execute(
                    "UPDATE queue_jobs SET available_at = ?, attempts = attempts + 1, "
                    "lease_token = ? WHERE seq = ? "
                    "RETURNING job_id, kind, payload, attempts, enqueued_at",
                    (now + visibility_timeout, token, due[0][0]),
                ).fetchall()
        return Job(
            job_id,
            kind,
            _decode(payload),
            attempts,
            lease_token=token,
            enqueued_at=float(enqueued_at),
        )

    def _delete(self, job: Job) -> bool:
        return self._change_held(job, "delete a job", "DELETE FROM queue_jobs")

    def _reschedule(self, job: Job, delay: float, error: str) -> bool:
        return self._change_held(
            job,
            "reschedule a job",
            "UPDATE queue_jobs SET available_at = ?, last_error = ?, lease_token = NULL",
            self._clock() + delay,
            error,
        )

    def _bury(self, job: Job, error: str, attempts: int) -> bool:
        """Dead-letter the held job; an abandoned one keeps the error it last failed with."""
        return self._change_held(
            job,
            "dead-letter a job",
            "UPDATE queue_jobs SET state = 'dead', died_at = ?, lease_token = NULL, "
            "attempts = ?, last_error = CASE WHEN ? THEN "
            "coalesce(last_error || '; ', '') || ? ELSE ? END",
            self._clock(),
            attempts,
            error == ABANDONED,
            error,
            error,
            dies=True,
        )

    def _set_visibility(self, job: Job, visibility_timeout: float) -> bool:
        return self._change_held(
            job,
            "extend a lease",
            "UPDATE queue_jobs SET available_at = ?",
            self._clock() + visibility_timeout,
        )

    def _put_back(self, job: Job, delay: float) -> bool:
        return self._change_held(
            job,
            "release a job",
            "UPDATE queue_jobs SET available_at = ?, attempts = max(0, attempts - 1), "
            "lease_token = NULL",
            self._clock() + delay,
        )

    def _change_held(
        self, job: Job, action: str, change: str, *values: Any, dies: bool = False
    ) -> bool:
        """Run ``change`` (a statement of this module) on ``job`` if its lease is still the
        current one, in one transaction; a job that ``dies`` also releases its dedupe key."""
        statement = change + " WHERE job_id = ? AND lease_token = ? AND state = 'ready'"
        with self._translated(action), self.db.write() as conn:
            held = bool(conn.execute(statement, (*values, job.job_id, job.lease_token)).rowcount)
            if held and dies:
                self._release_dedupe(conn, job.job_id)
        return held
