"""What only the AWS adapters promise, beyond the RunStore and JobQueue contracts.

DynamoDB: the table layout the SAM template mirrors, errors translated to domain errors,
the lock items kept out of the run namespace, and reads that stay flat as runs
accumulate (counted in requests and items read, as the SQLite suite counts VM steps).
SQS: real (not time-travelled) visibility timeouts, the dedupe claim released when a send
fails, the 900-second delay clamp, Lambda event records, and dead letters that SQS's
redrive policy moved.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aws_local import SERVICES, SqsQueues, client, free_port, unique_prefix
from valine.core.errors import NotFound, QueueUnavailable, StoreUnavailable
from valine.core.models import Run, apply_run_event
from valine.core.states import RunEvent, RunState
from valine.infra.aws import TableNames, sortable
from valine.ports import AuditEntry
from valine.queue.sqs import DynamoDedupe, SqsJobQueue, job_from_sqs_record
from valine.runtime.aws_tables import (
    create_tables,
    delete_tables,
    table_definitions,
    time_to_live_definitions,
)
from valine.store.dynamodb import DynamoRunStore, lock_key

REPO = "octo/app"
T0 = 1_764_064_800.123456


@pytest.fixture
def dynamo(dynamodb_local: str) -> Iterator[DynamoRunStore]:
    """A DynamoRunStore on fresh tables of the session's DynamoDB Local."""
    prefix = unique_prefix()
    dynamodb = client("dynamodb", dynamodb_local)
    create_tables(dynamodb, prefix)
    names = TableNames.from_prefix(prefix)
    store = DynamoRunStore(
        dynamodb,
        runs_table=names.runs,
        audit_table=names.audit,
    )
    yield store
    delete_tables(dynamodb, prefix)
    store.close()


@pytest.fixture
def sqs_queues(moto_sqs: str, dynamodb_local: str) -> Iterator[SqsQueues]:
    """A fresh SQS queue, dead-letter queue and dedupe table."""
    queues = SqsQueues.create()
    yield queues
    queues.close()


def run(run_id: str, *, repo: str = REPO, created_at: float = T0, **changes: Any) -> Run:
    return Run(run_id=run_id, repo=repo, created_at=created_at, **changes)


# -- DynamoDB: layout -----------------------------------------------------------------------


def test_table_definitions_name_every_table_and_index() -> None:
    definitions = {d["TableName"]: d for d in table_definitions("valine-orchestrator-x")}
    assert sorted(definitions) == [
        "valine-orchestrator-x-audit",
        "valine-orchestrator-x-dedupe",
        "valine-orchestrator-x-outbox",
        "valine-orchestrator-x-runs",
    ]
    assert all(d["BillingMode"] == "PAY_PER_REQUEST" for d in definitions.values())
    indexes = {
        index["IndexName"]: index
        for index in definitions["valine-orchestrator-x-runs"]["GlobalSecondaryIndexes"]
    }
    assert sorted(indexes) == ["by_repo", "by_time"]
    assert all(i["Projection"] == {"ProjectionType": "KEYS_ONLY"} for i in indexes.values())
    ttl = {d["TableName"]: d["TimeToLiveSpecification"] for d in time_to_live_definitions("p")}
    assert ttl == {
        "p-dedupe": {"AttributeName": "ttl", "Enabled": True},
        "p-outbox": {"AttributeName": "ttl", "Enabled": True},
    }
    # The outbox's stream carries each new job's item to the forwarder.
    assert definitions["valine-orchestrator-x-outbox"]["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_IMAGE",
    }


def _dedupe_table(store: DynamoRunStore) -> str:
    """The dedupe table created beside ``store``'s tables (same prefix)."""
    return TableNames.from_prefix(store.runs_table.removesuffix("-runs")).dedupe


def test_create_tables_enables_ttl(dynamo: DynamoRunStore) -> None:
    description = dynamo.client.describe_time_to_live(TableName=_dedupe_table(dynamo))
    assert description["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    assert description["TimeToLiveDescription"]["AttributeName"] == "ttl"


def test_sortable_keys_order_like_the_numbers() -> None:
    values = [-1e12, -2.5, -0.0, 0.0, 1e-9, 0.5, 1.0, T0, T0 + 1e-6, 1e300]
    assert sorted(values, key=sortable) == sorted(values)
    assert all(len(sortable(v)) == 16 for v in values)


def test_a_dedupe_claim_carries_a_whole_second_ttl(dynamo: DynamoRunStore) -> None:
    table = _dedupe_table(dynamo)
    dedupe = DynamoDedupe(dynamo.client, table)
    # A day ahead of the wall clock: DynamoDB Local's TTL sweeper deletes an item whose
    # ``ttl`` is already past (T0 is), at a moment of its own choosing.
    t0 = int(time.time()) + 86_400 + 0.123456
    token = dedupe.claim("d-1", expires_at=t0 + 10, now=t0)
    assert token is not None
    item = dynamo.client.get_item(TableName=table, Key={"dedupe_key": {"S": "d-1"}})["Item"]
    assert float(item["expires_at"]["N"]) == t0 + 10
    assert item["ttl"]["N"] == str(int(t0) + 11)  # rounded up: never deleted early
    assert item["claim"]["S"] == token
    assert dedupe.claim("d-1", expires_at=t0 + 3600, now=t0 + 9) is None
    # Expired (expires_at <= now) but not yet deleted by TTL: counts as absent.
    assert dedupe.claim("d-1", expires_at=t0 + 3600, now=t0 + 10) is not None


# -- DynamoDB: locks and ids ----------------------------------------------------------------


def test_the_lock_item_names_the_active_run_and_goes_with_it(dynamo: DynamoRunStore) -> None:
    created = dynamo.create_run(run("r1"))
    lock = dynamo.client.get_item(
        TableName=dynamo.runs_table, Key={"run_id": {"S": lock_key(REPO)}}, ConsistentRead=True
    )["Item"]
    assert lock["holder"]["S"] == "r1"
    with pytest.raises(NotFound):
        dynamo.get_run(lock_key(REPO))  # a lock is not a run
    dynamo.save_run(apply_run_event(created, RunEvent.CANCEL, T0 + 1))
    assert "Item" not in dynamo.client.get_item(
        TableName=dynamo.runs_table, Key={"run_id": {"S": lock_key(REPO)}}, ConsistentRead=True
    )
    assert dynamo.active_run(REPO) is None


def test_run_ids_may_not_look_like_locks(dynamo: DynamoRunStore) -> None:
    with pytest.raises(ValueError, match="lock#"):
        dynamo.create_run(run("lock#octo/app"))


def test_from_url_reads_the_prefix(dynamodb_local: str) -> None:
    store = DynamoRunStore.from_url("dynamodb://valine-orchestrator-dev", dynamodb_local)
    try:
        assert store.runs_table == "valine-orchestrator-dev-runs"
        assert store.audit_table == "valine-orchestrator-dev-audit"
    finally:
        store.close()
    for bad in ("sqlite:///x.db", "dynamodb://", "dynamodb://a/b"):
        with pytest.raises(ValueError, match="dynamodb"):
            DynamoRunStore.from_url(bad)


# -- DynamoDB: errors -----------------------------------------------------------------------


def test_an_unreachable_endpoint_is_store_unavailable() -> None:
    import boto3
    from botocore.config import Config

    dead = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="us-west-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 1}),
    )
    store = DynamoRunStore(dead, runs_table="a-runs", audit_table="a-a")
    with pytest.raises(StoreUnavailable):
        store.get_run("r1")
    with pytest.raises(StoreUnavailable):
        store.append_audit(AuditEntry(at=T0, actor="u1", action="plan", outcome="ok"))
    dead.close()


def test_a_missing_table_is_store_unavailable(dynamodb_local: str) -> None:
    store = DynamoRunStore.from_url(f"dynamodb://{unique_prefix()}", dynamodb_local)
    try:
        with pytest.raises(StoreUnavailable):
            store.create_run(run("r1"))
        with pytest.raises(StoreUnavailable):
            store.recent_runs()
    finally:
        store.close()


# -- DynamoDB: flat reads -------------------------------------------------------------------


class _ReadMeter:
    """Counts DynamoDB requests and the items they read, per operation."""

    def __init__(self, dynamodb: Any) -> None:
        self.requests = 0
        self.items = 0
        dynamodb.meta.events.register("after-call.dynamodb", self._count)

    def _count(self, parsed: dict[str, Any], **_: Any) -> None:
        self.requests += 1
        self.items += int(parsed.get("ScannedCount", 0))
        self.items += sum(len(items) for items in parsed.get("Responses", {}).values())
        self.items += 1 if "Item" in parsed else 0

    def measure(self, read: Any) -> tuple[int, int]:
        self.requests = self.items = 0
        read()
        return self.requests, self.items


def test_status_reads_stay_flat_as_runs_accumulate(dynamo: DynamoRunStore) -> None:
    """/status is flat from few to many runs, in requests and items read."""
    meter = _ReadMeter(dynamo.client)
    reads = {
        "get_run": lambda: dynamo.get_run("app-0005"),
        "active_run": lambda: dynamo.active_run(REPO),
        "recent_runs": lambda: dynamo.recent_runs(limit=10),
        "recent_runs_of_repo": lambda: dynamo.recent_runs(REPO, limit=10),
        "audit_trail": lambda: dynamo.audit_trail(limit=10),
        "audit_trail_of_run": lambda: dynamo.audit_trail("app-0005", limit=10),
    }

    def add_runs(prefix: str, repo: str, count: int, start: float) -> None:
        for i in range(count):
            run_id = f"{prefix}-{i:04d}"
            dynamo.create_run(run(run_id, repo=repo, created_at=start + i, state=RunState.SHIPPED))
            dynamo.append_audit(
                AuditEntry(at=start + i, actor="a", action="plan", outcome="ok", run_id=run_id)
            )

    add_runs("app", REPO, 20, T0)
    dynamo.create_run(run("app-active", created_at=T0 + 50))
    small = {name: meter.measure(read) for name, read in reads.items()}
    for n in range(3):
        add_runs(f"lib{n}", f"octo/lib{n}", 40, T0 - 10_000 + n * 100)
    add_runs("app2", REPO, 100, T0 - 20_000)
    large = {name: meter.measure(read) for name, read in reads.items()}
    assert large == small
    assert all(requests <= 2 for requests, _ in small.values()), small


# -- SQS --------------------------------------------------------------------------------


def _queue(queues: SqsQueues, **options: Any) -> SqsJobQueue:
    queue: SqsJobQueue = queues.open(**options)
    return queue


def test_visibility_timeouts_are_real_seconds(sqs_queues: SqsQueues) -> None:
    """No time travel here: a 1 s lease comes back after about a second."""
    queue = _queue(sqs_queues)
    queue.enqueue("k", {"n": 1})
    first = queue.lease(0.2)  # rounded up to 1 s: SQS takes whole seconds
    assert first is not None
    assert queue.lease(1) is None
    started = time.monotonic()
    again = None
    while again is None and time.monotonic() - started < 2.0:
        time.sleep(0.1)
        again = queue.lease(1)
    assert again is not None, "the job did not come back within 2 s"
    assert time.monotonic() - started >= 0.8
    assert again.job_id == first.job_id
    assert again.attempts == 2
    queue.ack(again)
    assert queue.depth() == 0


def test_a_failed_send_releases_the_dedupe_claim(sqs_queues: SqsQueues) -> None:
    good = _queue(sqs_queues)
    broken = SqsJobQueue(
        client("sqs", SERVICES.sqs_endpoint()),
        sqs_queues.queue_url + "-missing",
        dead_letter_url=sqs_queues.dead_letter_url,
        dedupe=DynamoDedupe(
            client("dynamodb", SERVICES.dynamodb_endpoint()), sqs_queues.dedupe_table
        ),
        clock=sqs_queues.clock.now,
    )
    with pytest.raises(QueueUnavailable):
        broken.enqueue("webhook", {}, dedupe_key="delivery-1")
    assert good.enqueue("webhook", {}, dedupe_key="delivery-1") is True
    assert good.enqueue("webhook", {}, dedupe_key="delivery-1") is False
    assert good.depth() == 1


def test_a_delay_beyond_fifteen_minutes_is_clamped(sqs_queues: SqsQueues) -> None:
    queue = _queue(sqs_queues)
    queue.enqueue("k", {}, delay=5000)
    sqs_queues.advance(899)
    assert queue.lease(30) is None
    sqs_queues.advance(1)
    assert queue.lease(30) is not None


def test_a_lambda_record_becomes_the_same_job(sqs_queues: SqsQueues) -> None:
    queue = _queue(sqs_queues)
    queue.enqueue("notify", {"run_id": "r1"})
    sqs = client("sqs", SERVICES.sqs_endpoint())
    (message,) = sqs.receive_message(
        QueueUrl=sqs_queues.queue_url,
        VisibilityTimeout=30,
        MessageSystemAttributeNames=["All"],
    )["Messages"]
    sqs.close()
    record = {  # the shape of one record of a Lambda SQS event
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }
    job = job_from_sqs_record(record)
    assert (job.kind, job.payload, job.attempts) == ("notify", {"run_id": "r1"}, 1)
    assert job.lease_token == message["ReceiptHandle"]
    assert json.loads(message["Body"])["job_id"] == job.job_id
    assert queue.retry(job, "boom") is True  # the worker Lambda settles it like any lease
    assert queue.depth() == 1


def test_a_message_redriven_by_sqs_is_a_dead_letter_without_error(
    sqs_queues: SqsQueues,
) -> None:
    queue = _queue(sqs_queues)
    body = {"job_id": "j1", "kind": "k", "payload": {"a": 1}}
    sqs = client("sqs", SERVICES.sqs_endpoint())
    sqs.send_message(QueueUrl=sqs_queues.dead_letter_url, MessageBody=json.dumps(body))
    sqs.close()
    (dead,) = queue.dead_letters()
    assert (dead.job_id, dead.kind, dead.payload, dead.last_error) == ("j1", "k", {"a": 1}, None)
    assert len(queue.dead_letters()) == 1, "a peek leaves dead letters in place"


def test_a_receipt_handle_sqs_refuses_is_only_logged(
    sqs_queues: SqsQueues, caplog: pytest.LogCaptureFixture
) -> None:
    queue = _queue(sqs_queues)
    queue.enqueue("k", {"secret": "s3cret"})
    job = queue.lease(30)
    assert job is not None
    forged = type(job)(job.job_id, job.kind, job.payload, job.attempts, lease_token="bogus")
    with caplog.at_level(logging.WARNING, logger="valine.queue"):
        queue.ack(forged)
        assert queue.retry(forged, "boom") is True
    records = [r for r in caplog.records if r.name == "valine.queue"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING]
    assert all(getattr(r, "job_id", None) == job.job_id for r in records)
    assert "s3cret" not in caplog.text
    assert queue.depth() == 1


def test_an_unreachable_queue_is_queue_unavailable(sqs_queues: SqsQueues) -> None:
    import boto3
    from botocore.config import Config

    dead = boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="us-west-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 1}),
    )
    queue = SqsJobQueue(
        dead,
        "http://127.0.0.1:1/000000000000/nowhere",
        dead_letter_url="http://127.0.0.1:1/000000000000/nowhere-dlq",
        dedupe=DynamoDedupe(
            client("dynamodb", SERVICES.dynamodb_endpoint()), sqs_queues.dedupe_table
        ),
    )
    for call in (lambda: queue.enqueue("k", {}), lambda: queue.lease(30), queue.depth):
        with pytest.raises(QueueUnavailable):
            call()
    dead.close()
