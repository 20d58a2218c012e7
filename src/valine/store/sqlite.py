"""The embedded :class:`~valine.ports.RunStore`: runs and audit in one SQLite file.

Each run is one JSON document (``Run.to_dict()``, tasks included) in ``store_runs.doc``,
beside the few columns the queries need: ``repo``, ``state``, ``active``, ``version``,
``created_at`` and ``updated_at``. The file is shared with the local job queue, so every
table and index of this module is prefixed ``store_`` (the queue's are ``queue_``).

Guarantees, enforced by the database rather than by checks in Python:

* **Optimistic concurrency.** :meth:`SqliteRunStore.save_run` is one conditional
  ``UPDATE ... WHERE run_id = ? AND version = ?`` inside a ``BEGIN IMMEDIATE``
  transaction, so of two writers that read the same version exactly one wins, whether
  they are threads of one process or separate processes on the same file.
* **One active run per repository.** A partial unique index on ``store_runs(repo) WHERE
  active = 1`` refuses a second active run; the ``active`` column is written from
  ``Run.active`` in the same statement as the state, so a run that leaves the active
  states releases its repository in the same write.
* **No scans on the hot reads.** ``active_run``, ``recent_runs``, ``get_run`` and
  ``audit_trail`` are answered from indexes, so ``/status`` stays flat as runs accumulate.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NoReturn, ParamSpec, TypeVar

from valine.core.errors import ActiveRunExists, NotFound, RunConflict, StoreUnavailable
from valine.core.models import Run
from valine.infra.sqlite import Database, path_from_url
from valine.ports import AuditEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_runs (
    run_id     TEXT PRIMARY KEY,
    repo       TEXT NOT NULL,
    state      TEXT NOT NULL,
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    version    INTEGER NOT NULL CHECK (version >= 1),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    doc        TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS store_runs_one_active
    ON store_runs (repo) WHERE active = 1;
CREATE INDEX IF NOT EXISTS store_runs_repo_created
    ON store_runs (repo, created_at, run_id);
CREATE INDEX IF NOT EXISTS store_runs_created
    ON store_runs (created_at, run_id);

CREATE TABLE IF NOT EXISTS store_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    run_id  TEXT,
    detail  TEXT
);
CREATE INDEX IF NOT EXISTS store_audit_run_at
    ON store_audit (run_id, at);
CREATE INDEX IF NOT EXISTS store_audit_at
    ON store_audit (at);
"""

# Every index above ends, implicitly, with the rowid (``store_audit.id``), and the run
# indexes end with ``run_id`` explicitly, so these ORDER BY clauses are index order and
# SQLite never sorts: a LIMIT stops after ``limit`` index entries.
_SELECT_RUN = "SELECT version, doc FROM store_runs WHERE run_id = ?"
_SELECT_ACTIVE = "SELECT version, doc FROM store_runs WHERE repo = ? AND active = 1"
_SELECT_RECENT = "SELECT version, doc FROM store_runs ORDER BY created_at DESC, run_id DESC LIMIT ?"
_SELECT_RECENT_OF_REPO = (
    "SELECT version, doc FROM store_runs WHERE repo = ?"
    " ORDER BY created_at DESC, run_id DESC LIMIT ?"
)
_SELECT_RECENT_IDS = "SELECT run_id FROM store_runs ORDER BY created_at DESC, run_id DESC LIMIT ?"
_SELECT_RECENT_IDS_OF_REPO = (
    "SELECT run_id FROM store_runs WHERE repo = ? ORDER BY created_at DESC, run_id DESC LIMIT ?"
)
_SELECT_AUDIT = (
    "SELECT at, actor, action, outcome, run_id, detail FROM store_audit"
    " ORDER BY at DESC, id DESC LIMIT ?"
)
_SELECT_AUDIT_OF_RUN = (
    "SELECT at, actor, action, outcome, run_id, detail FROM store_audit"
    " WHERE run_id = ? ORDER BY at DESC, id DESC LIMIT ?"
)

#: The read queries whose plans must use an index (checked by the contract tests).
INDEXED_QUERIES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "get_run": (_SELECT_RUN, ("r1",)),
    "active_run": (_SELECT_ACTIVE, ("o/r",)),
    "recent_runs": (_SELECT_RECENT, (10,)),
    "recent_runs_of_repo": (_SELECT_RECENT_OF_REPO, ("o/r", 10)),
    "recent_run_ids": (_SELECT_RECENT_IDS, (25,)),
    "recent_run_ids_of_repo": (_SELECT_RECENT_IDS_OF_REPO, ("o/r", 25)),
    "audit_trail": (_SELECT_AUDIT, (50,)),
    "audit_trail_of_run": (_SELECT_AUDIT_OF_RUN, ("r1", 50)),
}


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Let no sqlite3 exception past the adapter: they become ``StoreUnavailable``."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"state store database error: {exc}") from exc

    return wrapper


def _encode(run: Run, version: int) -> str:
    """The JSON document stored for ``run`` at ``version``."""
    doc = run.to_dict()
    doc["version"] = version
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


#: The row of a new run (:func:`run_row`) and of an audit entry (:func:`audit_row`).
INSERT_RUN = (
    "INSERT INTO store_runs (run_id, repo, state, active, version, created_at, updated_at, doc)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_AUDIT = (
    "INSERT INTO store_audit (at, actor, action, outcome, run_id, detail) VALUES (?, ?, ?, ?, ?, ?)"
)


def run_row(run: Run, version: int) -> tuple[Any, ...]:
    """The ``INSERT_RUN`` parameters of ``run`` stored at ``version`` (the benchmark's fill
    writes these rows too, in one ``executemany``)."""
    return (
        run.run_id,
        run.repo,
        run.state.value,
        int(run.active),
        version,
        run.created_at,
        run.updated_at,
        _encode(run, version),
    )


def audit_row(entry: AuditEntry) -> tuple[Any, ...]:
    """The ``INSERT_AUDIT`` parameters of ``entry``."""
    return (entry.at, entry.actor, entry.action, entry.outcome, entry.run_id, entry.detail)


def _decode(version: int, doc: str) -> Run:
    """The run a stored row describes; the ``version`` column is authoritative."""
    data = json.loads(doc)
    data["version"] = version
    return Run.from_dict(data)


class SqliteRunStore:
    """:class:`~valine.ports.RunStore` on a SQLite file (WAL, one connection per thread).

    Safe to share between threads, and between processes that open the same file: every
    write is a single ``BEGIN IMMEDIATE`` transaction and every conditional write is
    decided by the database.
    """

    def __init__(self, db: Database) -> None:
        """Use ``db``, creating this store's tables and indexes if they do not exist."""
        self._db = db
        db.executescript(SCHEMA)

    @classmethod
    def from_url(cls, url: str) -> SqliteRunStore:
        """A store on the file of a ``sqlite:///path/to.db`` URL (created if missing)."""
        return cls(Database(path_from_url(url)))

    @property
    def db(self) -> Database:
        """The database this store writes to (shared with the local queue, if any)."""
        return self._db

    def close(self) -> None:
        """Close the underlying database's connections, in every thread."""
        self._db.close()

    # -- runs ---------------------------------------------------------------------------

    @_translated
    def create_run(self, run: Run) -> Run:
        """Store a new run; returns it with ``version`` 1.

        Raises ``RunConflict`` if ``run.run_id`` is taken, else ``ActiveRunExists`` if
        ``run`` is active and its repository already has an active run.
        """
        stored = replace(run, version=1)
        with self._db.write() as conn:
            try:
                conn.execute(INSERT_RUN, run_row(run, 1))
            except sqlite3.IntegrityError as exc:
                # The failed statement is undone; the transaction (and its write lock)
                # is still ours, so these reads see exactly what refused the insert.
                if conn.execute(_SELECT_RUN, (run.run_id,)).fetchone() is not None:
                    raise RunConflict(f"run id {run.run_id} is already taken") from None
                self._raise_active_exists(conn, run.repo, exc)
        return stored

    @_translated
    def get_run(self, run_id: str) -> Run:
        """The stored run; raises ``NotFound``."""
        row = self._db.connection().execute(_SELECT_RUN, (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id}")
        return _decode(row[0], row[1])

    @_translated
    def save_run(self, run: Run) -> Run:
        """Replace the stored run if its version is still ``run.version``.

        Returns the run with ``version + 1``. Raises ``RunConflict`` when the stored
        version differs, ``NotFound`` when there is no such run, and ``ActiveRunExists``
        when ``run`` is active but another run of its repository already is. The
        ``active`` column follows ``run.active`` in the same statement, so a run that
        leaves the active states releases its repository's lock in the same write.
        """
        new_version = run.version + 1
        with self._db.write() as conn:
            try:
                cursor = conn.execute(
                    "UPDATE store_runs SET repo = ?, state = ?, active = ?, version = ?,"
                    " created_at = ?, updated_at = ?, doc = ?"
                    " WHERE run_id = ? AND version = ?",
                    (
                        run.repo,
                        run.state.value,
                        int(run.active),
                        new_version,
                        run.created_at,
                        run.updated_at,
                        _encode(run, new_version),
                        run.run_id,
                        run.version,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                self._raise_active_exists(conn, run.repo, exc)
            if cursor.rowcount != 1:
                row = conn.execute(
                    "SELECT version FROM store_runs WHERE run_id = ?", (run.run_id,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"no run {run.run_id}")
                raise RunConflict(
                    f"run {run.run_id} is at version {row[0]}, not {run.version}: "
                    "it changed since it was read"
                )
        return replace(run, version=new_version)

    @_translated
    def active_run(self, repo: str, *, likely_none: bool = False) -> Run | None:
        """The repository's one active (non-terminal) run, if any. Uses the partial index.

        ``likely_none`` changes nothing here: SQLite reads are local and cheap.
        """
        row = self._db.connection().execute(_SELECT_ACTIVE, (repo,)).fetchone()
        return None if row is None else _decode(row[0], row[1])

    @_translated
    def recent_runs(self, repo: str | None = None, limit: int = 10) -> Sequence[Run]:
        """Up to ``limit`` runs, newest ``created_at`` first (ties: higher ``run_id`` first).

        Optionally only those of ``repo``. Read in index order, so the cost depends on
        ``limit``, not on how many runs are stored. A ``limit`` below 1 gives no runs.
        """
        if limit < 1:
            return []
        conn = self._db.connection()
        if repo is None:
            rows = conn.execute(_SELECT_RECENT, (limit,)).fetchall()
        else:
            rows = conn.execute(_SELECT_RECENT_OF_REPO, (repo, limit)).fetchall()
        return [_decode(version, doc) for version, doc in rows]

    @_translated
    def recent_run_ids(self, repo: str | None = None, limit: int = 10) -> Sequence[str]:
        """The ids of :meth:`recent_runs`, in its order, from the covering index alone.

        ``store_runs_repo_created`` and ``store_runs_created`` end with ``run_id``, so no
        run document is read or decoded (the run-id autocomplete lists 25 of them).
        """
        if limit < 1:
            return []
        conn = self._db.connection()
        if repo is None:
            rows = conn.execute(_SELECT_RECENT_IDS, (limit,)).fetchall()
        else:
            rows = conn.execute(_SELECT_RECENT_IDS_OF_REPO, (repo, limit)).fetchall()
        return [run_id for (run_id,) in rows]

    @staticmethod
    def _raise_active_exists(
        conn: sqlite3.Connection, repo: str, exc: sqlite3.IntegrityError
    ) -> NoReturn:
        """Raise ``ActiveRunExists`` naming ``repo``'s active run, or re-raise ``exc``.

        Called inside the write transaction whose statement ``exc`` refused; if no
        active run explains the refusal, the error is unexpected and propagates.
        """
        row = conn.execute(
            "SELECT run_id FROM store_runs WHERE repo = ? AND active = 1", (repo,)
        ).fetchone()
        if row is None:
            raise exc
        raise ActiveRunExists(repo, row[0]) from None

    # -- audit --------------------------------------------------------------------------

    @_translated
    def append_audit(self, entry: AuditEntry) -> None:
        """Add one entry to the audit trail."""
        with self._db.write() as conn:
            conn.execute(INSERT_AUDIT, audit_row(entry))

    @_translated
    def audit_trail(self, run_id: str | None = None, limit: int = 50) -> Sequence[AuditEntry]:
        """Up to ``limit`` audit entries, newest first, optionally of one run.

        Entries with the same ``at`` come newest-appended first. A ``limit`` below 1
        gives no entries.
        """
        if limit < 1:
            return []
        conn = self._db.connection()
        if run_id is None:
            rows = conn.execute(_SELECT_AUDIT, (limit,)).fetchall()
        else:
            rows = conn.execute(_SELECT_AUDIT_OF_RUN, (run_id, limit)).fetchall()
        return [
            AuditEntry(at=at, actor=actor, action=action, outcome=outcome, run_id=rid, detail=d)
            for at, actor, action, outcome, rid, d in rows
        ]
