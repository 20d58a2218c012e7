"""A worker process SIGKILLed mid-job: the job runs again elsewhere, its effect lands once.

Each test enqueues one job on a real SQLite file, starts a worker process
(``queue_worker_script.py``) whose handler blocks at a chosen point, kills it with SIGKILL
once it got there, then starts a second worker that completes the job after the first
lease's visibility timeout (1 s). The handler's effect is idempotent (keyed by the
job's idempotency key), so whether the first worker died before or after committing
its effect, the effect is applied exactly once and the job took exactly two attempts.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from valine.infra.sqlite import Database
from valine.queue.sqlite import SqliteJobQueue

SCRIPT = Path(__file__).with_name("queue_worker_script.py")
DEADLINE = 20.0
VISIBILITY_TIMEOUT = 1.0


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@contextmanager
def worker(tmp_path: Path, name: str, mode: str) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process on ``tmp_path/valine.db``; always killed and reaped on exit."""
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "--db",
                str(tmp_path / "valine.db"),
                "--marker",
                str(tmp_path / f"{name}.marker"),
                "--mode",
                mode,
                "--visibility-timeout",
                str(VISIBILITY_TIMEOUT),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(DEADLINE)


def output(tmp_path: Path, name: str) -> str:
    """What a worker process printed, for failure messages."""
    path = tmp_path / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def query(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the database file the way another process would."""
    with closing(sqlite3.connect(db_path)) as conn:
        return conn.execute(sql).fetchall()


def applied(db_path: Path) -> int:
    """How many times the effect was applied (the handler's counter)."""
    ((n,),) = query(db_path, "SELECT n FROM effect_counter WHERE name = 'applied'")
    assert isinstance(n, int)
    return n


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "applied_before_restart"),
    [("block-before-effect", 0), ("block-after-effect", 1)],
)
def test_sigkilled_worker_job_completes_once(
    tmp_path: Path, mode: str, applied_before_restart: int
) -> None:
    db_path = tmp_path / "valine.db"
    queue = SqliteJobQueue(Database(db_path))
    try:
        assert queue.enqueue("effect", {"key": "effect-of-job-1"}, dedupe_key="delivery-1")

        with worker(tmp_path, "first", mode) as first:
            marker = tmp_path / "first.marker"
            assert wait_for(lambda: marker.exists() or first.poll() is not None)
            assert marker.exists(), (
                f"first worker never started the job:\n{output(tmp_path, 'first')}"
            )
            first.kill()  # SIGKILL: no cleanup, no ack, the lease just stays
            assert first.wait(DEADLINE) == -signal.SIGKILL
        first_pid = first.pid

        assert queue.depth() == 1, "the killed worker's job is still in the queue"
        assert applied(db_path) == applied_before_restart

        with worker(tmp_path, "second", "normal") as second:
            assert wait_for(lambda: queue.depth() == 0 or second.poll() is not None), (
                f"second worker did not finish the job:\n{output(tmp_path, 'second')}"
            )
            assert queue.depth() == 0, output(tmp_path, "second")
            second.terminate()  # SIGTERM: the script stops its pool gracefully
            assert second.wait(DEADLINE) == 0, output(tmp_path, "second")
        second_pid = second.pid

        assert applied(db_path) == 1, "the effect was applied exactly once"
        effects = query(db_path, "SELECT key, pid FROM effects")
        effect_pid = first_pid if applied_before_restart else second_pid
        assert effects == [("effect-of-job-1", effect_pid)]
        leases = query(db_path, "SELECT attempts, pid FROM lease_log ORDER BY rowid")
        assert leases == [(1, first_pid), (2, second_pid)], "two attempts, one per worker"
        assert list(queue.dead_letters()) == []
        assert queue.enqueue("effect", {"key": "effect-of-job-1"}, dedupe_key="delivery-1") is False
    finally:
        queue.close()


@pytest.mark.slow
def test_a_job_sleeping_past_its_lease_runs_once_with_two_workers(tmp_path: Path) -> None:
    db_path = tmp_path / "valine.db"
    queue = SqliteJobQueue(Database(db_path))
    try:
        assert queue.enqueue("effect", {"key": "slow-job"})
        # The job sleeps 3 s; its lease is 1 s: only the heartbeat keeps it from "idle".
        with worker(tmp_path, "slow", "slow") as slow:
            marker = tmp_path / "slow.marker"
            assert wait_for(lambda: marker.exists() or slow.poll() is not None), output(
                tmp_path, "slow"
            )
            with worker(tmp_path, "idle", "normal") as idle:
                assert wait_for(lambda: queue.depth() == 0), output(tmp_path, "slow")
                idle.terminate()
                assert idle.wait(DEADLINE) == 0, output(tmp_path, "idle")
            slow.terminate()
            assert slow.wait(DEADLINE) == 0, output(tmp_path, "slow")
        leases = query(db_path, "SELECT attempts, pid FROM lease_log ORDER BY rowid")
        assert leases == [(1, slow.pid)], f"leased again while it ran: {leases}"
        assert applied(db_path) == 1
        assert list(queue.dead_letters()) == []
    finally:
        queue.close()
