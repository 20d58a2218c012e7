"""SQLite connection discipline shared by the SQLite store and the SQLite job queue.

One connection per thread (sqlite3 connections must not be shared across threads while in
use), WAL journal so readers never block the writer, ``synchronous=NORMAL`` (durable across
a process crash; a power loss may drop the last transactions), and a busy timeout so two
processes on the same file wait for each other instead of failing. Write transactions
start with ``BEGIN IMMEDIATE`` so the write lock is taken up front and a read-then-write
never deadlocks on a lock upgrade.

Two measures keep writes off the slow path (see docs/benchmarks.md):

* Writers of one process queue on a Python lock per file before asking SQLite for its
  write lock. SQLite's own busy handler *sleeps* (1, 2, 5 ... 100 ms) while another
  connection writes; a waiting thread instead wakes the moment the lock is released.
  Other processes on the same file still wait through the busy timeout.
* Automatic WAL checkpoints are off: whichever commit crossed the threshold used to run
  the checkpoint (milliseconds) inside a request. A background thread per file runs a
  ``PASSIVE`` checkpoint every second instead, when something was written.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_INTERVAL = 1.0

_file_locks: dict[Path, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _write_lock(path: Path) -> threading.Lock:
    """The process-wide writer lock of one database file."""
    with _file_locks_guard:
        return _file_locks.setdefault(path.resolve(), threading.Lock())


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
    conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
    return conn


class Database:
    """A SQLite file with one connection per thread and explicit transactions."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = _write_lock(self.path)
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._checkpointer: threading.Thread | None = None

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
        with self._writer:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back by itself (disk full, I/O error).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        self._wrote()

    def _wrote(self) -> None:
        self._dirty.set()
        if self._checkpointer is None:
            with self._lock:
                if self._checkpointer is None and not self._closed.is_set():
                    self._checkpointer = threading.Thread(
                        target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
                    )
                    self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn = _open(self.path)
        try:
            while not self._closed.wait(CHECKPOINT_INTERVAL):
                if self._dirty.is_set():
                    self._dirty.clear()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the file went away (tests) or is closing: nothing left to checkpoint
        finally:
            conn.close()

    def executescript(self, script: str) -> None:
        """Run a schema script (idempotent ``CREATE ... IF NOT EXISTS`` statements)."""
        self.connection().executescript(script)

    def close(self) -> None:
        """Stop the checkpointer and close every connection this object opened."""
        self._closed.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
