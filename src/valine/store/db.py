"""SQLite connection discipline shared by the SQLite store and the SQLite job queue.

One connection per thread (sqlite3 connections must not be shared across threads while in
use), WAL journal so readers never block the writer, ``synchronous=NORMAL`` (durable across
a process crash; a power loss may drop the last transactions), and a busy timeout so two
processes on the same file wait for each other instead of failing. Write transactions
start with ``BEGIN IMMEDIATE`` so the write lock is taken up front and a read-then-write
never deadlocks on a lock upgrade.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


def path_from_url(url: str) -> Path:
    """The file of a ``sqlite:///relative/or/absolute.db`` URL.

    ``sqlite:///.valine/valine.db`` is relative to the working directory and
    ``sqlite:////var/lib/valine.db`` is absolute, as in SQLAlchemy's URLs.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"not a sqlite URL with a path: {url!r} (want sqlite:///path/to.db)")
    return Path(url[len(prefix) :])


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Database:
    """A SQLite file with one connection per thread and explicit transactions."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _open(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on success, else rolled back."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back by itself (disk full, I/O error).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def executescript(self, script: str) -> None:
        """Run a schema script (idempotent ``CREATE ... IF NOT EXISTS`` statements)."""
        self.connection().executescript(script)

    def close(self) -> None:
        """Close every connection this object opened, in any thread."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
