"""The JobQueue contract: every adapter of :class:`valine.ports.JobQueue` passes these tests.

The tests touch a queue only through the port's methods, plus a harness that moves the
adapter's clock forward (``advance``) and opens a second client on the same storage
(``reopen``). To run the suite against another adapter, add a factory to ``FACTORIES``
below; nothing else changes. The SQS adapter runs on moto's server, whose clock its
harness moves forward (``tests/aws_local.py``), with its dedupe keys on DynamoDB Local.
The outbox queue writes jobs to a DynamoDB Local table whose stream is forwarded to that
SQS queue before each use (``_Forwarded``).
A harness lists in ``lacks`` the contract promises its backend does not make, each with
the reason; the few tests that need one of them skip with that reason.

At the end of the module, in their own section, are tests of the SQLite adapter's own
promises (schema, indexes, purge, the one-transaction dedupe), which are not part of the
contract.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from valine.infra.sqlite import Database
from valine.ports import Job, JobQueue
from valine.queue.sqlite import QueueUnavailable, SqliteJobQueue
from valine.testing.clock import ManualClock

START = 1_700_000_000.0
VT = 30.0  # visibility timeout used by most tests


@dataclass(frozen=True)
class QueueConfig:
    """The knobs a contract test may set on a fresh queue."""

    max_attempts: int = 3
    base_backoff: float = 10.0
    max_backoff: float = 1000.0
    dedupe_ttl: float = 1000.0
    seed: int = 1234


@dataclass
class QueueHarness:
    """A queue under test, with control over its clock and a way to reopen its storage."""

    queue: JobQueue
    advance: Callable[[float], None]
    reopen: Callable[[], JobQueue]
    close: Callable[[], None]
    #: Contract promises the backend does not make: ``{promise: why}`` (see ``require``).
    lacks: dict[str, str] = field(default_factory=dict)
    #: The adapter's clock (what ``advance`` moves).
    now: Callable[[], float] = lambda: START


def require(harness: QueueHarness, promise: str) -> None:
    """Skip the calling test, with the adapter's reason, if ``harness`` lacks ``promise``."""
    if promise in harness.lacks:
        pytest.skip(f"{promise}: {harness.lacks[promise]}")


QueueFactory = Callable[[Path, QueueConfig], QueueHarness]


def sqlite_factory(tmp_path: Path, config: QueueConfig) -> QueueHarness:
    """The SQLite queue on a real file, with a fake clock shared by every reopened client."""
    clock = ManualClock(START)
    path = tmp_path / "queue.db"
    databases: list[Database] = []

    def open_queue() -> JobQueue:
        db = Database(path)
        databases.append(db)
        return SqliteJobQueue(
            db,
            max_attempts=config.max_attempts,
            base_backoff=config.base_backoff,
            max_backoff=config.max_backoff,
            dedupe_ttl=config.dedupe_ttl,
            clock=clock,
            rng=random.Random(config.seed),
        )

    def close() -> None:
        for db in databases:
            db.close()

    return QueueHarness(open_queue(), clock.advance, open_queue, close, now=clock)


def _sqs_options(config: QueueConfig) -> dict[str, Any]:
    """The SQS queue's settings for a contract case's ``config``."""
    return {
        "max_attempts": config.max_attempts,
        "base_backoff": config.base_backoff,
        "max_backoff": config.max_backoff,
        "dedupe_ttl": config.dedupe_ttl,
        "rng": random.Random(config.seed),
    }


def sqs_factory(tmp_path: Path, config: QueueConfig) -> QueueHarness:
    """SQS on moto's server (``advance`` moves its clock), dedupe keys on DynamoDB Local."""
    from aws_local import SQS_LACKS, SqsQueues

    queues = SqsQueues.create()

    def open_queue() -> JobQueue:
        return queues.open(**_sqs_options(config))

    return QueueHarness(
        open_queue(), queues.advance, open_queue, queues.close, SQS_LACKS, queues.clock.now
    )


class _Forwarded:
    """The SQS queue behind an outbox, with the stream forwarded before every use.

    It stands in for the outbox table's stream and its forwarder Lambda: the records
    written since the last read (DynamoDB Local's real stream, read with the
    dynamodbstreams client) go through :func:`valine.queue.outbox.forward` to the SQS
    queue before the queue is touched, as if the forwarder had run in between (in AWS it
    runs within seconds of the write).
    """

    def __init__(self, queue: Any, pump: Callable[[], None]) -> None:
        self._queue = queue
        self._pump = pump

    def __getattr__(self, name: str) -> Any:
        self._pump()
        return getattr(self._queue, name)


def outbox_factory(tmp_path: Path, config: QueueConfig) -> QueueHarness:
    """The outbox queue: jobs written to an outbox table on DynamoDB Local, its stream
    forwarded to SQS on moto (``_Forwarded``), leases from there. One stream reader for
    every reopened client: the forwarder is one per table, not one per client."""
    from aws_local import SERVICES, SQS_LACKS, OutboxStream, SqsQueues, client, unique_prefix
    from valine.queue.outbox import OutboxJobQueue, forward, table_definitions

    queues = SqsQueues.create()
    dynamodb = client("dynamodb", SERVICES.dynamodb_endpoint())
    streams = client("dynamodbstreams", SERVICES.dynamodb_endpoint())
    sqs = client("sqs", SERVICES.sqs_endpoint())
    (definition,) = table_definitions(unique_prefix())
    table = definition["TableName"]
    dynamodb.create_table(**definition)
    stream = OutboxStream(streams, table)
    forwarding = threading.Lock()  # one forwarder per shard: batches never overlap

    def pump() -> None:
        with forwarding:
            records = stream.records()
            assert forward(sqs, queues.queue_url, records, now=queues.clock.now) == []

    def open_queue() -> JobQueue:
        inner = queues.open(**_sqs_options(config))
        return OutboxJobQueue(
            client("dynamodb", SERVICES.dynamodb_endpoint()),
            table,
            dedupe=inner.dedupe,
            sqs_queue=lambda: _Forwarded(inner, pump),
            clock=queues.clock.now,
            dedupe_ttl=config.dedupe_ttl,
        )

    def close() -> None:
        dynamodb.delete_table(TableName=table)
        for aws in (dynamodb, streams, sqs):
            aws.close()
        queues.close()

    return QueueHarness(
        open_queue(), queues.advance, open_queue, close, SQS_LACKS, queues.clock.now
    )


def memory_factory(_tmp_path: Path, config: QueueConfig) -> QueueHarness:
    """The tests' in-memory queue (valine.testing.memory); reopening it is the same object."""
    from valine.testing.memory import MemoryJobQueue

    clock = ManualClock(START)
    queue = MemoryJobQueue(
        max_attempts=config.max_attempts,
        base_backoff=config.base_backoff,
        max_backoff=config.max_backoff,
        dedupe_ttl=config.dedupe_ttl,
        clock=clock,
        rng=random.Random(config.seed),
    )
    return QueueHarness(queue, clock.advance, lambda: queue, queue.close, now=clock)


# ---- Adapters under contract: add the factory of every new JobQueue adapter here. ----
FACTORIES: dict[str, QueueFactory] = {
    "sqlite": sqlite_factory,
    "sqs": sqs_factory,
    "outbox": outbox_factory,
    "memory": memory_factory,
}


@pytest.fixture(params=sorted(FACTORIES))
def make_queue(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., QueueHarness]]:
    """Build harnesses with some ``QueueConfig`` fields changed: ``make_queue(max_attempts=5)``."""
    factory = FACTORIES[request.param]
    harnesses: list[QueueHarness] = []

    def make(**changes: Any) -> QueueHarness:
        folder = tmp_path / f"q{len(harnesses)}"
        folder.mkdir()
        harness = factory(folder, QueueConfig(**changes))
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.close()


@pytest.fixture
def harness(make_queue: Callable[..., QueueHarness]) -> QueueHarness:
    """A harness with the default ``QueueConfig``."""
    return make_queue()


@pytest.fixture
def job_queue(harness: QueueHarness) -> JobQueue:
    """The queue of the default harness."""
    return harness.queue


def lease_or_fail(queue: JobQueue, vt: float = VT) -> Job:
    """Lease a job that must be due."""
    job = queue.lease(vt)
    assert job is not None, "expected a due job"
    return job


def drain(queue: JobQueue, vt: float = VT) -> list[Job]:
    """Lease every due job (each stays leased for ``vt``)."""
    jobs = []
    while (job := queue.lease(vt)) is not None:
        jobs.append(job)
    return jobs


def last_error(job: Job) -> str | None:
    """A dead letter's last error. The port's ``Job`` has no such field (see the report)."""
    return getattr(job, "last_error", None)


# ---- enqueue, lease, ack --------------------------------------------------------------


def test_enqueue_lease_ack(job_queue: JobQueue) -> None:
    assert job_queue.lease(VT) is None
    assert job_queue.enqueue("sync", {"run_id": "r1", "n": 3}) is True
    assert job_queue.depth() == 1

    job = lease_or_fail(job_queue)
    assert job.kind == "sync"
    assert job.payload == {"run_id": "r1", "n": 3}
    assert job.attempts == 1
    assert job.job_id
    assert job.lease_token
    assert job_queue.depth() == 1, "a leased job still counts"
    assert job_queue.lease(VT) is None, "a leased job is invisible"

    job_queue.ack(job)
    assert job_queue.depth() == 0
    assert job_queue.lease(VT) is None


def test_acked_job_never_comes_back(harness: QueueHarness) -> None:
    q = harness.queue
    q.enqueue("sync", {})
    q.ack(lease_or_fail(q))
    harness.advance(VT * 10)
    assert q.lease(VT) is None
    assert q.depth() == 0
    assert list(q.dead_letters()) == []


def test_payload_round_trips_json(job_queue: JobQueue) -> None:
    payload = {
        "text": 'héllo ✓ "quoted" \n newline',
        "int": 2**53,
        "float": 0.5,
        "bool": True,
        "none": None,
        "list": [1, "two", {"three": [3]}],
        "nested": {"a": {"b": {}}},
    }
    job_queue.enqueue("k", payload)
    assert lease_or_fail(job_queue).payload == payload


def test_job_ids_are_distinct(job_queue: JobQueue) -> None:
    for i in range(20):
        job_queue.enqueue("k", {"i": i})
    ids = [job.job_id for job in drain(job_queue)]
    assert len(ids) == len(set(ids)) == 20


def test_fifo_by_enqueue_order(job_queue: JobQueue) -> None:
    for i in range(5):
        job_queue.enqueue("k", {"i": i})
    assert [job.payload["i"] for job in drain(job_queue)] == [0, 1, 2, 3, 4]


def test_fifo_by_availability(harness: QueueHarness) -> None:
    require(harness, "order_by_availability")
    q = harness.queue
    q.enqueue("k", {"name": "late"}, delay=20)
    q.enqueue("k", {"name": "soon"}, delay=10)
    q.enqueue("k", {"name": "now"})
    assert [j.payload["name"] for j in drain(q)] == ["now"]
    harness.advance(25)
    assert [j.payload["name"] for j in drain(q)] == ["soon", "late"]


def test_delay(harness: QueueHarness) -> None:
    q = harness.queue
    assert q.enqueue("k", {}, delay=60) is True
    assert q.depth() == 1, "a delayed job counts as waiting"
    assert q.lease(VT) is None
    harness.advance(59)
    assert q.lease(VT) is None
    harness.advance(1)
    assert lease_or_fail(q).attempts == 1


# ---- visibility timeout and lease tokens ----------------------------------------------


def test_unacked_lease_expires_and_job_is_leased_again(harness: QueueHarness) -> None:
    q = harness.queue
    q.enqueue("k", {"x": 1})
    first = lease_or_fail(q, vt=30)
    harness.advance(29)
    assert q.lease(30) is None
    harness.advance(1)
    second = lease_or_fail(q, vt=30)
    assert second.job_id == first.job_id
    assert second.attempts == 2
    assert second.payload == {"x": 1}
    assert second.lease_token != first.lease_token
    assert q.depth() == 1


def test_ack_with_stale_lease_does_nothing(harness: QueueHarness) -> None:
    require(harness, "stale_ack_ignored")
    q = harness.queue
    q.enqueue("k", {})
    stale = lease_or_fail(q)
    harness.advance(VT)
    current = lease_or_fail(q)

    q.ack(stale)
    assert q.depth() == 1, "the stale ack must not delete the re-leased job"
    harness.advance(VT)
    again = lease_or_fail(q)
    assert again.attempts == 3

    q.ack(current)  # also stale now: the job was leased a third time
    assert q.depth() == 1
    q.ack(again)
    assert q.depth() == 0


def test_expired_but_not_yet_released_lease_can_still_ack(harness: QueueHarness) -> None:
    q = harness.queue
    q.enqueue("k", {})
    job = lease_or_fail(q)
    harness.advance(VT * 2)  # expired, but nobody leased it since
    q.ack(job)
    assert q.depth() == 0


def test_retry_with_stale_lease_does_nothing(harness: QueueHarness) -> None:
    q = harness.queue
    q.enqueue("k", {})
    stale = lease_or_fail(q)
    harness.advance(VT)
    current = lease_or_fail(q)

    assert q.retry(stale, "late failure") is True
    assert q.lease(VT) is None, "the current lease must stay in force"
    assert list(q.dead_letters()) == []
    q.ack(current)
    assert q.depth() == 0


def test_ack_after_retry_is_ignored(harness: QueueHarness) -> None:
    require(harness, "ack_after_retry_ignored")
    q = harness.queue
    q.enqueue("k", {})
    job = lease_or_fail(q)
    assert q.retry(job, "boom") is True
    q.ack(job)
    assert q.depth() == 1, "a retried lease is over; its ack must not drop the job"


# ---- retry, backoff, dead letters -----------------------------------------------------


def test_retry_backoff_doubles_within_jitter_bounds(
    make_queue: Callable[..., QueueHarness],
) -> None:
    h = make_queue(max_attempts=10, base_backoff=10.0, max_backoff=1000.0)
    q = h.queue
    q.enqueue("k", {})
    for attempt in range(1, 6):
        job = lease_or_fail(q)
        assert job.attempts == attempt
        assert q.retry(job, f"failure {attempt}") is True
        ceiling = 10.0 * 2 ** (attempt - 1)
        h.advance(ceiling / 2 - 0.01)
        assert q.lease(VT) is None, f"attempt {attempt}: retried before backoff/2"
        h.advance(ceiling / 2 + 0.01)
    assert lease_or_fail(q).attempts == 6


def test_retry_backoff_is_capped(make_queue: Callable[..., QueueHarness]) -> None:
    h = make_queue(max_attempts=10, base_backoff=10.0, max_backoff=25.0)
    q = h.queue
    q.enqueue("k", {})
    for _ in range(5):
        job = lease_or_fail(q)
        assert q.retry(job, "boom") is True
        h.advance(25.0)  # never more than max_backoff, however many attempts
    assert lease_or_fail(q).attempts == 6


def test_retry_jitter_spreads_jobs_that_failed_together(
    make_queue: Callable[..., QueueHarness],
) -> None:
    h = make_queue(max_attempts=10, base_backoff=10.0)
    q = h.queue
    for i in range(30):
        q.enqueue("k", {"i": i})
    for job in drain(q, vt=10_000):
        assert q.retry(job, "boom") is True

    due_at: list[float] = []
    elapsed = 0.0
    while elapsed < 10.0:
        h.advance(0.25)
        elapsed += 0.25
        due_at += [elapsed] * len(drain(q, vt=10_000))
    assert len(due_at) == 30, "every retry is due within its backoff"
    assert min(due_at) >= 5.0, "no retry before backoff/2"
    assert len(set(due_at)) >= 5, f"retries are not spread out: {sorted(set(due_at))}"


def test_dead_letter_after_max_attempts(make_queue: Callable[..., QueueHarness]) -> None:
    h = make_queue(max_attempts=3, base_backoff=1.0)
    q = h.queue
    q.enqueue("deploy", {"run_id": "r9"})
    for attempt in (1, 2):
        job = lease_or_fail(q)
        assert job.attempts == attempt
        assert q.retry(job, f"RuntimeError('attempt {attempt}')") is True
        h.advance(2.0**attempt)
    job = lease_or_fail(q)
    assert job.attempts == 3
    assert q.retry(job, "RuntimeError('attempt 3')") is False

    assert q.depth() == 0
    h.advance(10_000)
    assert q.lease(VT) is None
    (dead,) = q.dead_letters()
    assert dead.job_id == job.job_id
    assert dead.kind == "deploy"
    assert dead.payload == {"run_id": "r9"}
    assert dead.attempts == 3
    assert last_error(dead) == "RuntimeError('attempt 3')"


def test_expired_leases_count_as_attempts(make_queue: Callable[..., QueueHarness]) -> None:
    h = make_queue(max_attempts=2)
    q = h.queue
    q.enqueue("k", {})
    lease_or_fail(q)  # the worker died
    h.advance(VT)
    job = lease_or_fail(q)
    assert job.attempts == 2
    assert q.retry(job, "boom") is False
    assert [d.job_id for d in q.dead_letters()] == [job.job_id]


def test_job_whose_worker_keeps_dying_is_dead_lettered(
    make_queue: Callable[..., QueueHarness],
) -> None:
    h = make_queue(max_attempts=2)
    q = h.queue
    q.enqueue("poison", {"n": 1})
    q.enqueue("fine", {"n": 2}, delay=VT * 2)
    for attempt in (1, 2):
        assert lease_or_fail(q).attempts == attempt  # ... and the worker crashes
        h.advance(VT)
    job = lease_or_fail(q)
    assert job.kind == "fine", "the poison job is not handed out a third time"
    assert job.attempts == 1
    (dead,) = q.dead_letters()
    assert dead.kind == "poison"
    assert dead.attempts == 2
    assert q.depth() == 1


def test_dead_letters_newest_first_with_limit(make_queue: Callable[..., QueueHarness]) -> None:
    h = make_queue(max_attempts=1)
    q = h.queue
    for i in range(4):
        q.enqueue("k", {"i": i})
    for job in drain(q):
        assert q.retry(job, f"e{job.payload['i']}") is False
        h.advance(1)
    assert [d.payload["i"] for d in q.dead_letters()] == [3, 2, 1, 0]
    assert [d.payload["i"] for d in q.dead_letters(limit=2)] == [3, 2]
    assert [last_error(d) for d in q.dead_letters(limit=1)] == ["e3"]


def test_ack_of_dead_job_is_ignored(make_queue: Callable[..., QueueHarness]) -> None:
    q = make_queue(max_attempts=1).queue
    q.enqueue("k", {})
    job = lease_or_fail(q)
    assert q.retry(job, "boom") is False
    q.ack(job)
    assert len(q.dead_letters()) == 1


# ---- heartbeat (extend) and release (a wait, not a failure) -----------------------------


def test_extend_keeps_a_running_job_from_a_second_worker(harness: QueueHarness) -> None:
    q = harness.queue
    q.enqueue("long", {})
    job = lease_or_fail(q)
    for _ in range(5):  # five beats: the job runs for 4.5 leases
        harness.advance(VT * 0.9)
        assert q.extend(job, VT) is True
        assert q.lease(VT) is None, "a second worker took a job whose lease was extended"
    q.ack(job)
    harness.advance(VT * 2)
    assert q.lease(VT) is None
    assert q.depth() == 0


def test_a_job_whose_heartbeat_stops_is_leased_again(harness: QueueHarness) -> None:
    q = harness.queue
    q.enqueue("long", {})
    job = lease_or_fail(q)
    harness.advance(VT * 0.9)
    q.extend(job, VT)
    harness.advance(VT + 1)  # the worker died: no more beats
    again = lease_or_fail(q)
    assert again.job_id == job.job_id
    assert again.attempts == 2


def test_extend_of_a_lost_lease_is_refused(harness: QueueHarness) -> None:
    require(harness, "stale_ack_ignored")
    q = harness.queue
    q.enqueue("k", {})
    first = lease_or_fail(q)
    harness.advance(VT + 1)
    second = lease_or_fail(q)
    assert q.extend(first, VT * 10) is False
    harness.advance(VT + 1)
    assert lease_or_fail(q).job_id == second.job_id, "the stale heartbeat changed nothing"


def test_release_puts_the_job_back_without_spending_an_attempt(
    make_queue: Callable[..., QueueHarness],
) -> None:
    h = make_queue(max_attempts=2)
    q = h.queue
    q.enqueue("limited", {"run_id": "r1"})
    for _ in range(6):  # far more waits than attempts
        job = lease_or_fail(q)
        assert job.attempts == 1
        assert job.payload == {"run_id": "r1"}
        assert q.release(job, 60) is True
        assert q.lease(VT) is None, "a released job is not due before its delay"
        h.advance(61)
    job = lease_or_fail(q)
    assert job.attempts == 1
    assert q.retry(job, "boom") is True  # the attempts are all still there
    h.advance(10_000)
    job = lease_or_fail(q)
    assert job.attempts == 2
    assert q.retry(job, "boom") is False
    assert [d.job_id for d in q.dead_letters()] == [job.job_id]


def test_a_released_job_does_not_run_before_its_delay(harness: QueueHarness) -> None:
    q = harness.queue
    q.enqueue("limited", {})
    job = lease_or_fail(q)
    due = harness.now() + 2000  # longer than SQS's 900 s delays
    q.release(job, 2000)
    harness.advance(1000)
    early = q.lease(VT)
    # Handed out early (SQS), it says when it may run, and the worker releases it again.
    assert early is None or early.not_before >= due - 1
    if early is not None:
        assert early.attempts == 1
        q.release(early, early.not_before - harness.now())
    harness.advance(1001)
    late = lease_or_fail(q)
    assert late.job_id == job.job_id
    assert late.not_before <= harness.now()
    assert late.attempts == 1


# ---- dedupe -----------------------------------------------------------------------------


def test_dedupe_key_adds_once(job_queue: JobQueue) -> None:
    assert job_queue.enqueue("webhook", {"n": 1}, dedupe_key="delivery-1") is True
    assert job_queue.enqueue("webhook", {"n": 2}, dedupe_key="delivery-1") is False
    assert job_queue.enqueue("webhook", {"n": 3}, dedupe_key="delivery-2") is True
    assert job_queue.enqueue("webhook", {"n": 4}) is True
    assert job_queue.enqueue("webhook", {"n": 5}) is True, "no key, no dedupe"
    assert job_queue.depth() == 4
    assert sorted(j.payload["n"] for j in drain(job_queue)) == [1, 3, 4, 5]


def test_dedupe_key_outlives_the_acked_job(harness: QueueHarness) -> None:
    q = harness.queue
    assert q.enqueue("webhook", {}, dedupe_key="d") is True
    q.ack(lease_or_fail(q))
    harness.advance(500)
    assert q.enqueue("webhook", {}, dedupe_key="d") is False
    assert q.depth() == 0


def test_a_dead_job_releases_its_dedupe_key(make_queue: Callable[..., QueueHarness]) -> None:
    """Its work was not done: the same work (GitHub's Redeliver) may be enqueued again."""
    q = make_queue(max_attempts=1).queue
    q.enqueue("webhook", {"n": 1}, dedupe_key="d")
    q.enqueue("webhook", {"n": 2}, dedupe_key="other")
    first = lease_or_fail(q)
    assert q.retry(first, "boom") is False
    dead_key = "d" if first.payload == {"n": 1} else "other"
    live_key = "other" if dead_key == "d" else "d"
    assert q.enqueue("webhook", {"n": 3}, dedupe_key=dead_key) is True
    assert q.enqueue("webhook", {"n": 4}, dedupe_key=live_key) is False  # still pending
    assert q.depth() == 2


def test_a_done_job_keeps_its_dedupe_key(make_queue: Callable[..., QueueHarness]) -> None:
    q = make_queue(max_attempts=1).queue
    q.enqueue("webhook", {}, dedupe_key="d")
    q.ack(lease_or_fail(q))
    assert q.enqueue("webhook", {}, dedupe_key="d") is False


def test_claim_remembers_a_key_until_it_expires(make_queue: Callable[..., QueueHarness]) -> None:
    h = make_queue()
    q = h.queue
    assert q.claim("seen:1", 100.0) is True
    assert q.claim("seen:1", 100.0) is False
    assert q.claim("seen:2", 100.0) is True
    h.advance(101)
    assert q.claim("seen:1", 100.0) is True
    assert q.depth() == 0  # a claim is no job


def test_claim_counts_up_to_its_limit_per_window(make_queue: Callable[..., QueueHarness]) -> None:
    h = make_queue()
    q = h.queue
    assert [q.claim("rate:42", 60.0, 3) for _ in range(5)] == [True, True, True, False, False]
    assert q.claim("rate:43", 60.0, 3) is True  # another user has their own count
    h.advance(30)
    assert q.claim("rate:42", 60.0, 3) is False  # the window started at the first use
    h.advance(31)
    assert [q.claim("rate:42", 60.0, 3) for _ in range(4)] == [True, True, True, False]


def test_claims_and_dedupe_keys_are_apart(make_queue: Callable[..., QueueHarness]) -> None:
    q = make_queue().queue
    assert q.claim("k", 100.0) is True
    assert q.enqueue("webhook", {}, dedupe_key="k") is True


def test_dedupe_key_expires(make_queue: Callable[..., QueueHarness]) -> None:
    h = make_queue(dedupe_ttl=1000.0)
    q = h.queue
    assert q.enqueue("webhook", {"n": 1}, dedupe_key="d") is True
    h.advance(999)
    assert q.enqueue("webhook", {"n": 2}, dedupe_key="d") is False
    h.advance(2)
    assert q.enqueue("webhook", {"n": 3}, dedupe_key="d") is True
    assert q.enqueue("webhook", {"n": 4}, dedupe_key="d") is False, "re-armed for a new ttl"
    assert sorted(j.payload["n"] for j in drain(q)) == [1, 3]


# ---- depth --------------------------------------------------------------------------------


def test_depth_counts_waiting_and_leased_only(make_queue: Callable[..., QueueHarness]) -> None:
    q = make_queue(max_attempts=1).queue
    assert q.depth() == 0
    for i in range(4):
        q.enqueue("k", {"i": i})
    q.enqueue("k", {"i": 99}, delay=3600)
    assert q.depth() == 5
    a, b, _c, _d = drain(q)
    assert q.depth() == 5, "leased jobs count"
    q.ack(a)
    assert q.depth() == 4
    assert q.retry(b, "boom") is False
    assert q.depth() == 3, "dead jobs do not count"


# ---- concurrency and durability -----------------------------------------------------------


def test_concurrent_leases_never_share_a_job(harness: QueueHarness) -> None:
    """Four workers drain 200 jobs: each job leased once (at least once on SQS)."""
    job_queue = harness.queue
    total, workers = 200, 4
    for i in range(total):
        job_queue.enqueue("k", {"i": i})
    leased: list[list[Job]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def work(mine: list[Job]) -> None:
        try:
            barrier.wait(timeout=10)
            while (job := job_queue.lease(3600)) is not None:
                mine.append(job)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(mine,)) for mine in leased]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    jobs = [job for mine in leased for job in mine]
    latest = {job.job_id: job for job in jobs}
    assert len(latest) == total, "every job leased"
    assert sorted(job.payload["i"] for job in latest.values()) == list(range(total))
    if "exclusive_leases" not in harness.lacks:
        assert len(jobs) == total, "no job leased twice"
        assert all(job.attempts == 1 for job in jobs)

    # The acks run one after another: moto's SQS stand-in rebuilds its message list on
    # each delete without a lock, so two concurrent deletes can bring one message back
    # (seen under load: depth 1 or 2 after every ack succeeded). Real SQS has no such
    # race; what this test is about, concurrent leases, is asserted above.
    for job in latest.values():
        job_queue.ack(job)
    assert job_queue.depth() == 0


def test_state_survives_reopening(make_queue: Callable[..., QueueHarness]) -> None:
    h = make_queue(max_attempts=1)
    q = h.queue
    q.enqueue("k", {"name": "leased"}, dedupe_key="d1")
    q.enqueue("k", {"name": "doomed"})
    q.enqueue("k", {"name": "waiting"}, delay=1)
    leased = lease_or_fail(q)
    assert leased.payload == {"name": "leased"}
    doomed = lease_or_fail(q)
    assert doomed.payload == {"name": "doomed"}
    assert q.retry(doomed, "boom") is False

    q2 = h.reopen()
    assert q2.depth() == 2
    assert q2.enqueue("k", {}, dedupe_key="d1") is False
    assert [d.payload for d in q2.dead_letters()] == [{"name": "doomed"}]
    assert [last_error(d) for d in q2.dead_letters()] == ["boom"]
    h.advance(1)
    waiting = lease_or_fail(q2)
    assert waiting.payload == {"name": "waiting"}
    q.ack(waiting)  # a lease taken by one client can be settled by another
    assert q2.depth() == 1
    q2.ack(leased)
    assert q2.depth() == 0


# ==== SQLite adapter specifics (not part of the JobQueue contract) =========================


@pytest.fixture
def sqlite_queue(tmp_path: Path) -> Iterator[tuple[SqliteJobQueue, ManualClock]]:
    """A SQLite queue on a file, with its fake clock."""
    clock = ManualClock(START)
    queue = SqliteJobQueue(
        Database(tmp_path / "valine.db"), clock=clock, rng=random.Random(7), dedupe_ttl=100
    )
    yield queue, clock
    queue.close()


def test_sqlite_from_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    queue = SqliteJobQueue.from_url("sqlite:///.valine/valine.db", max_attempts=2)
    try:
        assert queue.max_attempts == 2
        assert queue.enqueue("k", {}) is True
        assert (tmp_path / ".valine" / "valine.db").exists()
    finally:
        queue.close()
    with pytest.raises(ValueError, match="sqlite"):
        SqliteJobQueue.from_url("postgres://nope")


def test_sqlite_schema_is_idempotent_and_prefixed(
    sqlite_queue: tuple[SqliteJobQueue, ManualClock],
) -> None:
    queue, clock = sqlite_queue
    queue.enqueue("k", {"a": 1}, dedupe_key="d")
    again = SqliteJobQueue(queue.db, clock=clock)
    assert again.depth() == 1
    names = [
        name
        for (name,) in queue.db.connection().execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') "
            "AND name NOT LIKE 'sqlite_%'"
        )
    ]
    assert names
    assert all(name.startswith("queue_") for name in names), names


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        (
            "UPDATE queue_jobs SET attempts = attempts + 1 WHERE seq = (SELECT seq FROM "
            "queue_jobs WHERE state = 'ready' AND available_at <= ? "
            "ORDER BY available_at, seq LIMIT 1)",
            (START,),
        ),
        ("SELECT count(*) FROM queue_jobs WHERE state = 'ready'", ()),
        (
            "SELECT job_id FROM queue_jobs WHERE state = 'dead' "
            "ORDER BY died_at DESC, seq DESC LIMIT ?",
            (50,),
        ),
        (
            "DELETE FROM queue_dedupe WHERE key IN "
            "(SELECT key FROM queue_dedupe WHERE expires_at <= ? LIMIT ?)",
            (START, 500),
        ),
    ],
)
def test_sqlite_queries_use_indexes(
    sqlite_queue: tuple[SqliteJobQueue, ManualClock], sql: str, params: tuple[Any, ...]
) -> None:
    queue, _ = sqlite_queue
    plan = " | ".join(
        row[3] for row in queue.db.connection().execute(f"EXPLAIN QUERY PLAN {sql}", params)
    )
    assert "SCAN" not in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_sqlite_dedupe_and_job_are_one_transaction(
    sqlite_queue: tuple[SqliteJobQueue, ManualClock],
) -> None:
    queue, _ = sqlite_queue
    conn = queue.db.connection()
    conn.execute(
        "CREATE TEMP TRIGGER fail_insert BEFORE INSERT ON queue_jobs "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(QueueUnavailable, match="disk full"):
        queue.enqueue("webhook", {}, dedupe_key="delivery-1")
    conn.execute("DROP TRIGGER fail_insert")
    assert queue.enqueue("webhook", {}, dedupe_key="delivery-1") is True, (
        "a failed enqueue must not leave its dedupe key behind"
    )
    assert queue.depth() == 1


def test_sqlite_database_errors_become_domain_errors(
    sqlite_queue: tuple[SqliteJobQueue, ManualClock],
) -> None:
    queue, _ = sqlite_queue
    queue.db.connection().execute("DROP TABLE queue_jobs")
    with pytest.raises(QueueUnavailable):
        queue.depth()
    with pytest.raises(QueueUnavailable):
        queue.lease(VT)


def _dedupe_rows(queue: SqliteJobQueue) -> int:
    return int(queue.db.connection().execute("SELECT count(*) FROM queue_dedupe").fetchone()[0])


def test_sqlite_purge_expired(sqlite_queue: tuple[SqliteJobQueue, ManualClock]) -> None:
    queue, clock = sqlite_queue  # dedupe_ttl = 100
    for i in range(5):
        queue.enqueue("k", {}, dedupe_key=f"old{i}")
    clock.advance(50)
    queue.enqueue("k", {}, dedupe_key="young")
    clock.advance(50)
    assert queue.purge_expired(limit=2) == 2
    assert queue.purge_expired() == 3
    assert queue.purge_expired() == 0
    assert _dedupe_rows(queue) == 1
    assert queue.enqueue("k", {}, dedupe_key="young") is False


def test_sqlite_enqueue_purges_at_most_once_a_minute(
    sqlite_queue: tuple[SqliteJobQueue, ManualClock],
) -> None:
    queue, clock = sqlite_queue  # dedupe_ttl = 100
    queue.enqueue("k", {}, dedupe_key="a")  # the first enqueue purges (nothing yet)
    clock.advance(101)
    queue.enqueue("k", {}, dedupe_key="b")  # "a" expired; purged here (>= 60 s since)
    assert _dedupe_rows(queue) == 1
    clock.advance(30)
    queue.enqueue("k", {}, dedupe_key="c")
    clock.advance(101)
    queue.enqueue("k", {}, dedupe_key="d")  # "b" and "c" expired, purge due again
    assert _dedupe_rows(queue) == 1
    clock.advance(101)
    queue.enqueue("k", {}, dedupe_key="e")  # purge due: removes "d"
    clock.advance(30)
    queue.enqueue("k", {})  # "e" has not expired; purge not due anyway
    assert _dedupe_rows(queue) == 1


def test_sqlite_backoff_is_seeded_and_bounded(tmp_path: Path) -> None:
    def delays(seed: int) -> list[float]:
        queue = SqliteJobQueue(
            Database(tmp_path / f"{seed}.db"),
            base_backoff=2.0,
            max_backoff=60.0,
            rng=random.Random(seed),
        )
        try:
            return [queue.backoff(attempt) for attempt in range(1, 11)]
        finally:
            queue.close()

    first = delays(42)
    assert first == delays(42), "a seeded rng gives reproducible backoffs"
    for attempt, delay in enumerate(first, start=1):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert first != delays(43)


def test_sqlite_stale_ack_logs_a_warning(
    sqlite_queue: tuple[SqliteJobQueue, ManualClock], caplog: pytest.LogCaptureFixture
) -> None:
    queue, clock = sqlite_queue
    queue.enqueue("k", {"secret": "s3cret"})
    stale = lease_or_fail(queue)
    clock.advance(VT)
    lease_or_fail(queue)
    with caplog.at_level(logging.WARNING, logger="valine.queue"):
        queue.ack(stale)
        queue.retry(stale, "boom")
    records = [r for r in caplog.records if r.name == "valine.queue"]
    assert len(records) == 2
    assert all(r.levelno == logging.WARNING for r in records)
    assert all(getattr(r, "job_id", None) == stale.job_id for r in records)
    assert "s3cret" not in caplog.text


def test_sqlite_second_process_view_sees_committed_jobs(
    sqlite_queue: tuple[SqliteJobQueue, ManualClock], tmp_path: Path
) -> None:
    queue, _ = sqlite_queue
    queue.enqueue("k", {"i": 1})
    # A plain sqlite3 connection stands for another process reading the same file.
    other = sqlite3.connect(queue.db.path)
    try:
        assert other.execute("SELECT count(*) FROM queue_jobs").fetchone()[0] == 1
    finally:
        other.close()


def test_a_queue_file_from_before_dedupe_release_is_migrated(tmp_path: Path) -> None:
    """A database made before jobs kept their dedupe key gets the column, and works."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE queue_jobs (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL UNIQUE, "
            "kind TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'ready', "
            "available_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, lease_token TEXT, "
            "last_error TEXT, enqueued_at REAL NOT NULL, died_at REAL);"
        )
    db = Database(path)
    try:
        q = SqliteJobQueue(db, max_attempts=1)
        SqliteJobQueue(db, max_attempts=1)  # opening again (another process) is harmless
        assert q.enqueue("webhook", {}, dedupe_key="d") is True
        job = q.lease(VT)
        assert job is not None
        assert q.retry(job, "boom") is False
        assert q.enqueue("webhook", {}, dedupe_key="d") is True  # released with the dead job
    finally:
        db.close()


def test_sqlite_job_ids_of_a_batch_sort_in_the_order_made(
    sqlite_queue: tuple[SqliteJobQueue, ManualClock],
) -> None:
    """New ids go to the end of the ``job_id`` index, not to random pages of it (the
    queue's clock is frozen here: the order comes from the ids alone)."""
    queue, _ = sqlite_queue
    answers = queue.enqueue_many([("k", {"i": i}, f"d-{i}") for i in range(50)])
    queue.enqueue("k", {"i": 50})
    assert answers == [True] * 50
    jobs = drain(queue)
    ids = [job.job_id for job in jobs]
    assert [job.payload["i"] for job in jobs] == list(range(51))
    assert ids == sorted(ids) and len(set(ids)) == 51
    assert all(len(job_id) == 32 and int(job_id, 16) >= 0 for job_id in ids)
