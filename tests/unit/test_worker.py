"""The worker pool: handlers run and are acked, failures are retried then dead-lettered."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from valine.infra.sqlite import Database
from valine.ports import Job
from valine.queue.sqlite import QueueUnavailable, SqliteJobQueue
from valine.queue.worker import WorkerPool
from valine.testing.clock import ManualClock

DEADLINE = 20.0


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SqliteJobQueue]:
    """A real-time SQLite queue whose retries are due at once (zero backoff)."""
    q = SqliteJobQueue(Database(tmp_path / "q.db"), max_attempts=3, base_backoff=0.0)
    yield q
    q.close()


@pytest.fixture
def fake_time_queue(tmp_path: Path) -> Iterator[SqliteJobQueue]:
    """A SQLite queue on a frozen clock with zero backoff, for driving ``run_one`` by hand."""
    q = SqliteJobQueue(
        Database(tmp_path / "q.db"),
        max_attempts=3,
        base_backoff=0.0,
        clock=ManualClock(1_700_000_000.0),
    )
    yield q
    q.close()


def test_run_one_on_empty_queue(fake_time_queue: SqliteJobQueue) -> None:
    pool = WorkerPool(fake_time_queue, {})
    assert pool.run_one() is False


def test_run_one_runs_the_handler_and_acks(fake_time_queue: SqliteJobQueue) -> None:
    seen: list[dict[str, Any]] = []
    pool = WorkerPool(fake_time_queue, {"sync": seen.append})
    fake_time_queue.enqueue("sync", {"run_id": "r1"})
    assert pool.run_one() is True
    assert seen == [{"run_id": "r1"}]
    assert fake_time_queue.depth() == 0
    assert pool.run_one() is False


def test_failing_handler_is_retried_then_dead_lettered(
    fake_time_queue: SqliteJobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[dict[str, Any]] = []

    def boom(payload: dict[str, Any]) -> None:
        calls.append(payload)
        raise RuntimeError("boom")

    pool = WorkerPool(fake_time_queue, {"deploy": boom})
    fake_time_queue.enqueue("deploy", {"token": "s3cret-payload"})
    with caplog.at_level(logging.DEBUG, logger="valine.worker"):
        assert [pool.run_one() for _ in range(4)] == [True, True, True, False]

    assert len(calls) == 3
    assert fake_time_queue.depth() == 0
    (dead,) = fake_time_queue.dead_letters()
    assert dead.attempts == 3
    assert dead.last_error == "RuntimeError('boom')"

    records = [r for r in caplog.records if r.name == "valine.worker"]
    failures = [r for r in records if r.levelno == logging.WARNING]
    assert len(failures) == 3
    assert all(getattr(r, "job_id", None) == dead.job_id for r in records)
    assert all(getattr(r, "job_kind", None) == "deploy" for r in records)
    assert [r.levelno for r in records if r.levelno >= logging.ERROR] == [logging.ERROR]
    assert "dead-lettered" in records[-1].getMessage()
    assert "s3cret-payload" not in caplog.text, "payloads must not be logged"


def test_handler_that_recovers_is_acked(fake_time_queue: SqliteJobQueue) -> None:
    attempts: list[int] = []

    def flaky(payload: dict[str, Any]) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 2:
            raise ConnectionError("transient")

    pool = WorkerPool(fake_time_queue, {"k": flaky})
    fake_time_queue.enqueue("k", {})
    while pool.run_one():
        pass
    assert attempts == [1, 2]
    assert fake_time_queue.depth() == 0
    assert list(fake_time_queue.dead_letters()) == []


def test_unknown_kind_is_dead_lettered(
    fake_time_queue: SqliteJobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    pool = WorkerPool(fake_time_queue, {"known": lambda payload: None})
    fake_time_queue.enqueue("mystery", {"x": 1})
    with caplog.at_level(logging.ERROR, logger="valine.worker"):
        while pool.run_one():
            pass
    (dead,) = fake_time_queue.dead_letters()
    assert dead.kind == "mystery"
    assert dead.last_error is not None
    assert "mystery" in dead.last_error
    errors = [r for r in caplog.records if r.name == "valine.worker"]
    assert any("no handler" in r.getMessage() for r in errors)
    assert all(getattr(r, "job_kind", None) == "mystery" for r in errors)


def test_pool_threads_drain_the_queue(queue: SqliteJobQueue) -> None:
    done: list[int] = []
    lock = threading.Lock()

    def handle(payload: dict[str, Any]) -> None:
        with lock:
            done.append(payload["i"])

    for i in range(50):
        queue.enqueue("k", {"i": i})
    pool = WorkerPool(queue, {"k": handle}, threads=3, poll_interval=0.01)
    pool.start()
    try:
        assert wait_for(lambda: queue.depth() == 0)
    finally:
        assert pool.stop(timeout=DEADLINE) is True
    assert sorted(done) == list(range(50)), "each job handled exactly once"
    assert not pool.running


def test_pool_picks_up_jobs_enqueued_while_idle(queue: SqliteJobQueue) -> None:
    done = threading.Event()
    pool = WorkerPool(queue, {"k": lambda payload: done.set()}, poll_interval=0.01)
    pool.start()
    try:
        assert wait_for(lambda: pool.running)
        queue.enqueue("k", {})
        assert done.wait(DEADLINE)
        assert wait_for(lambda: queue.depth() == 0)
    finally:
        assert pool.stop(timeout=DEADLINE)


def test_stop_is_graceful(queue: SqliteJobQueue) -> None:
    started = threading.Event()
    finished: list[str] = []
    pool: WorkerPool

    def slow(payload: dict[str, Any]) -> None:
        started.set()
        # Keep working until the pool is asked to stop, then finish normally.
        assert wait_for(lambda: pool.stopping)
        finished.append(payload["name"])

    pool = WorkerPool(queue, {"slow": slow}, threads=1, poll_interval=0.01)
    queue.enqueue("slow", {"name": "first"})
    pool.start()
    try:
        assert started.wait(DEADLINE)
        queue.enqueue("slow", {"name": "second"})
    finally:
        assert pool.stop(timeout=DEADLINE) is True
    assert finished == ["first"], "the running job finished; no new job was started"
    assert queue.depth() == 1, "the first job was acked, the second is still waiting"
    assert queue.lease(60) is not None


def test_stop_times_out_on_a_stuck_handler(queue: SqliteJobQueue) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(payload: dict[str, Any]) -> None:
        started.set()
        release.wait(DEADLINE)

    pool = WorkerPool(queue, {"k": stuck}, threads=1, poll_interval=0.01)
    queue.enqueue("k", {})
    pool.start()
    try:
        assert started.wait(DEADLINE)
        assert pool.stop(timeout=0.05) is False
        assert pool.running
    finally:
        release.set()
        assert pool.stop(timeout=DEADLINE) is True
    assert queue.depth() == 0


def test_start_twice_is_an_error(queue: SqliteJobQueue) -> None:
    pool = WorkerPool(queue, {}, poll_interval=0.01)
    pool.start()
    try:
        with pytest.raises(RuntimeError):
            pool.start()
    finally:
        assert pool.stop(timeout=DEADLINE)


class FlakyQueue:
    """A queue whose first ``lease`` fails the way a locked database does."""

    def __init__(self, inner: SqliteJobQueue) -> None:
        self.inner = inner
        self.failures = 0

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
    ) -> bool:
        return self.inner.enqueue(kind, payload, dedupe_key=dedupe_key, delay=delay)

    def lease(self, visibility_timeout: float) -> Job | None:
        if self.failures == 0:
            self.failures += 1
            raise QueueUnavailable("database is locked")
        return self.inner.lease(visibility_timeout)

    def ack(self, job: Job) -> None:
        self.inner.ack(job)

    def retry(self, job: Job, error: str) -> bool:
        return self.inner.retry(job, error)

    def dead_letters(self, limit: int = 50) -> list[Job]:
        return list(self.inner.dead_letters(limit))

    def depth(self) -> int:
        return self.inner.depth()


def test_worker_thread_survives_queue_errors(
    queue: SqliteJobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyQueue(queue)
    done = threading.Event()
    flaky.enqueue("k", {})
    pool = WorkerPool(flaky, {"k": lambda payload: done.set()}, threads=1, poll_interval=0.01)
    with caplog.at_level(logging.ERROR, logger="valine.worker"):
        pool.start()
        try:
            assert done.wait(DEADLINE)
            assert wait_for(lambda: queue.depth() == 0)
        finally:
            assert pool.stop(timeout=DEADLINE)
    assert flaky.failures == 1
    assert any("could not take" in r.getMessage() for r in caplog.records)


def test_periodic_jobs_enqueue_once_per_period(tmp_path: Path) -> None:
    from valine.queue.worker import PeriodicJobs

    now = [1_000.0]
    queue = SqliteJobQueue(Database(tmp_path / "p.db"), clock=lambda: now[0])
    periodic = PeriodicJobs(queue, {"reconcile": 300.0}, clock=lambda: now[0])
    assert periodic.tick() == ["reconcile"]
    now[0] += 100  # same period: nothing new, even from another process on the file
    assert PeriodicJobs(queue, {"reconcile": 300.0}, clock=lambda: now[0]).tick() == []
    now[0] += 300  # the next period
    assert periodic.tick() == ["reconcile"]
    assert queue.depth() == 2


def test_workers_let_requests_go_first(queue: SqliteJobQueue) -> None:
    done: list[dict[str, Any]] = []
    busy = threading.Event()
    busy.set()  # a request is being answered the whole time
    pool = WorkerPool(
        queue,
        {"sync": done.append},
        threads=1,
        poll_interval=0.01,
        busy=busy.is_set,
        yield_interval=30.0,
    )
    for n in range(3):
        queue.enqueue("sync", {"n": n})
    pool.start()
    try:
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(done) == 1  # one job, then it yields to the requests
    finally:
        assert pool.stop(timeout=5)  # stop() wakes it at once: nothing waits 30 s
    assert queue.depth() == 2  # the rest is still queued, durably


def test_workers_resume_as_soon_as_the_requests_are_answered(queue: SqliteJobQueue) -> None:
    done: list[dict[str, Any]] = []
    busy = threading.Event()
    busy.set()
    pool = WorkerPool(
        queue, {"sync": done.append}, threads=1, poll_interval=0.01, busy=busy.is_set,
        yield_interval=30.0,
    )  # fmt: skip
    for n in range(3):
        queue.enqueue("sync", {"n": n})
    pool.start()
    try:
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(done) == 1  # it yields to the requests in flight ...
        busy.clear()  # ... and once they are answered takes the next jobs, not in 30 s
        while len(done) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [job["n"] for job in done] == [0, 1, 2]
    finally:
        assert pool.stop(timeout=5)


# -- leases that hold, rate limits that wait ------------------------------------------------


def test_a_job_running_past_its_lease_runs_once(queue: SqliteJobQueue) -> None:
    runs: list[str] = []
    started = threading.Event()

    def slow(payload: dict[str, Any]) -> None:
        runs.append(threading.current_thread().name)
        started.set()
        time.sleep(1.5)  # five leases of 0.3 s

    pool = WorkerPool(queue, {"slow": slow}, threads=3, visibility_timeout=0.3, poll_interval=0.02)
    queue.enqueue("slow", {})
    pool.start()
    try:
        assert started.wait(DEADLINE)
        assert wait_for(lambda: queue.depth() == 0)
        time.sleep(0.5)  # a second worker, had it taken the job, would have started it
    finally:
        pool.stop()
    assert len(runs) == 1, f"the job ran {len(runs)} times: {runs}"
    assert queue.dead_letters() == []


def test_the_heartbeat_extends_only_the_jobs_it_holds(fake_time_queue: SqliteJobQueue) -> None:
    from valine.queue.worker import Heartbeat

    clock = fake_time_queue._clock
    assert isinstance(clock, ManualClock)
    fake_time_queue.enqueue("a", {})
    fake_time_queue.enqueue("b", {})
    held, other = fake_time_queue.lease(10), fake_time_queue.lease(10)
    assert held is not None and other is not None
    beat = Heartbeat(fake_time_queue, 10)
    with beat.holding(held):
        clock.t += 9
        assert beat.beat() == 1
        clock.t += 9
    assert beat.beat() == 0  # dropped when the block ended
    leased = fake_time_queue.lease(10)
    assert leased is not None and leased.job_id == other.job_id  # only the unheld lease ran out
    assert fake_time_queue.lease(10) is None


def test_a_rate_limited_job_waits_for_the_reset_without_spending_attempts(
    fake_time_queue: SqliteJobQueue,
) -> None:
    from valine.core.errors import RateLimited
    from valine.queue.worker import RESET_MARGIN

    clock = fake_time_queue._clock
    assert isinstance(clock, ManualClock)
    calls: list[float] = []

    def limited(payload: dict[str, Any]) -> None:
        calls.append(clock.t)
        if len(calls) <= 5:  # more waits than the queue's 3 attempts
            raise RateLimited("GitHub rate limit exceeded", reset_at=clock.t + 100)

    pool = WorkerPool(fake_time_queue, {"k": limited}, clock=clock)
    fake_time_queue.enqueue("k", {})
    for _ in range(5):
        assert pool.run_one() is True
        assert pool.run_one() is False, "due before the reset"
        clock.t += 100 + RESET_MARGIN
    assert pool.run_one() is True
    assert len(calls) == 6
    assert fake_time_queue.depth() == 0
    assert fake_time_queue.dead_letters() == []


def test_a_job_meeting_a_held_claim_waits_for_it_without_spending_attempts(
    fake_time_queue: SqliteJobQueue,
) -> None:
    """A claim left by an attempt killed mid-step is a wait, however many leases it takes."""
    from valine.core.errors import ClaimHeld
    from valine.queue.worker import RESET_MARGIN

    clock = fake_time_queue._clock
    assert isinstance(clock, ManualClock)
    expires = clock.t + 120
    calls: list[float] = []

    def claimed(payload: dict[str, Any]) -> None:
        calls.append(clock.t)
        if clock.t < expires:
            raise ClaimHeld("another attempt holds the claim", until=expires)

    pool = WorkerPool(fake_time_queue, {"k": claimed}, clock=clock)
    fake_time_queue.enqueue("k", {})
    assert pool.run_one() is True
    for _ in range(6):  # more than the queue's 3 attempts, each before the claim expires
        clock.t += 20
        assert pool.run_one() is False, "due before the claim expires"
    clock.t = expires + RESET_MARGIN
    assert pool.run_one() is True
    assert calls == [expires - 120, expires + RESET_MARGIN]
    assert fake_time_queue.depth() == 0
    assert fake_time_queue.dead_letters() == []
