"""A worker process for the queue crash test (``tests/e2e/test_queue_crash.py``).

Runs a :class:`~valine.queue.worker.WorkerPool` of one thread on a SQLite queue file.
Its one handler, ``effect``, applies an idempotent effect: in one transaction it inserts
the job's idempotency key into ``effects`` (``INSERT OR IGNORE``) and bumps a counter only
if the key was new. Every lease is recorded in ``lease_log`` so the test can see attempts.

``--mode`` decides where the handler stops to be killed:
``block-before-effect`` writes the marker file and blocks before the effect;
``block-after-effect`` commits the effect, writes the marker and blocks before the ack;
``slow`` sleeps ``--slow-for`` seconds (longer than its lease) before the effect;
``normal`` completes. The process stops gracefully on SIGTERM (exit code 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from valine.infra.sqlite import Database
from valine.ports import Job
from valine.queue.sqlite import SqliteJobQueue
from valine.queue.worker import WorkerPool

EFFECTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS effect_counter (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT OR IGNORE INTO effect_counter (name, n) VALUES ('applied', 0);
CREATE TABLE IF NOT EXISTS lease_log (
    job_id TEXT NOT NULL, attempts INTEGER NOT NULL, pid INTEGER NOT NULL
);
"""

MODES = ("block-before-effect", "block-after-effect", "slow", "normal")


class RecordingQueue(SqliteJobQueue):
    """The SQLite queue, also writing every lease into ``lease_log``."""

    def lease(self, visibility_timeout: float) -> Job | None:
        """Lease as usual, then record the job id, its attempts and this process's pid."""
        job = super().lease(visibility_timeout)
        if job is not None:
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO lease_log (job_id, attempts, pid) VALUES (?, ?, ?)",
                    (job.job_id, job.attempts, os.getpid()),
                )
        return job


def apply_effect(db: Database, key: str) -> bool:
    """Apply the effect of ``key`` at most once; True if it was applied now."""
    with db.write() as conn:
        inserted = conn.execute(
            "INSERT OR IGNORE INTO effects (key, pid) VALUES (?, ?)", (key, os.getpid())
        ).rowcount
        if inserted:
            conn.execute("UPDATE effect_counter SET n = n + 1 WHERE name = 'applied'")
    return bool(inserted)


def block_forever() -> None:
    """Wait to be killed (an hour is forever for the test)."""
    threading.Event().wait(3600)


def main(argv: list[str] | None = None) -> int:
    """Run the worker until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--visibility-timeout", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--slow-for", type=float, default=3.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")

    db = Database(args.db)
    db.executescript(EFFECTS_SCHEMA)
    queue = RecordingQueue(db)

    def effect(payload: dict[str, Any]) -> None:
        if args.mode == "block-before-effect":
            args.marker.write_text("started")
            block_forever()
        if args.mode == "slow":
            args.marker.write_text("started")
            time.sleep(args.slow_for)
        apply_effect(db, payload["key"])
        if args.mode == "block-after-effect":
            args.marker.write_text("effect committed")
            block_forever()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    pool = WorkerPool(
        queue,
        {"effect": effect},
        threads=1,
        visibility_timeout=args.visibility_timeout,
        poll_interval=args.poll_interval,
    )
    pool.start()
    while not stop.wait(0.1):
        pass
    graceful = pool.stop(timeout=10)
    db.close()
    return 0 if graceful else 1


if __name__ == "__main__":
    sys.exit(main())
