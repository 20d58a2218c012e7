"""The job outbox: on AWS the Discord function enqueues a job as a DynamoDB item.

A deferred command used to need a second AWS client (SQS) and a second kind of call
(``SendMessage``) besides its DynamoDB writes, and no transaction spans both services:
a claimed dedupe key whose send failed left a window in which the job was lost.
:class:`OutboxJobQueue` writes the job instead as an item of the deployment's outbox
table, in the same transaction as its dedupe key -- and, inside an interaction's unit of
work (:mod:`valine.infra.unit_of_work`), in the same ``TransactWriteItems`` as the
interaction's other writes. The table's DynamoDB stream (``NEW_IMAGE``, filtered to
``INSERT`` events by the event source mapping) feeds a small forwarder Lambda
(``lambda_handlers.outbox_handler``) that sends each job to the SQS job queue with the
body and delay :class:`~valine.queue.sqs.SqsJobQueue` would have sent, so the workers,
their retries and the dead-letter queue are unchanged.

``{prefix}-outbox`` -- key ``job_id`` (S); ``body`` (S, the SQS message body, exactly
the one ``SqsJobQueue.enqueue`` sends), ``due_at`` (N, when the job may run: enqueued
at + delay), ``kind`` (S, for the console) and ``ttl`` (N): DynamoDB deletes a
forwarded item a day later by itself (its ``REMOVE`` event is filtered out).

Forwarding is **at least once**: a stream batch that fails (SQS not answering) is
retried, from the first record that was not sent, so a job may reach the queue twice;
jobs are idempotent by design (``valine.usecases``), and the plan job's second copy
finds its run and edits the same message. A batch that keeps failing is split
(``BisectBatchOnFunctionError``), retried ``MaximumRetryAttempts`` times, and then
reported to the dead-letter queue by the mapping's on-failure destination (a record of
the shard and sequence numbers that were not forwarded; the items are still in the
table for a day).

Every other queue operation (lease, ack, retry, claim...) is the SQS queue's; the SQS
queue and its client are built only when one is used, so the Discord function, which
only claims and enqueues, builds no SQS client. boto3 is never imported here.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

from valine.core.errors import QueueUnavailable
from valine.infra import unit_of_work
from valine.infra.aws import error_code, exact_number, is_botocore_error, string_attributes
from valine.logs import get_logger
from valine.queue.base import DEFAULT_DEDUPE_TTL
from valine.queue.delegate import LeaseDelegate
from valine.queue.sqs import MAX_DELAY, DynamoDedupe, SqsJobQueue

log = get_logger("valine.queue")

#: How long (seconds) a forwarded job's item stays in the outbox table.
OUTBOX_TTL = 86_400
#: What the table's stream carries (the forwarder reads the new item only).
STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}


def outbox_table(prefix: str) -> str:
    """The outbox table of deployment ``prefix``."""
    return f"{prefix}-outbox"


def table_definitions(prefix: str) -> list[dict[str, Any]]:
    """``CreateTable`` arguments of the outbox table of ``prefix`` (with its stream)."""
    return [
        {
            "TableName": outbox_table(prefix),
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": string_attributes("job_id"),
            "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
            "StreamSpecification": STREAM,
        }
    ]


def time_to_live_definitions(prefix: str) -> list[dict[str, Any]]:
    """``UpdateTimeToLive`` arguments: the ``ttl`` attribute of the outbox items."""
    return [
        {
            "TableName": outbox_table(prefix),
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
        }
    ]


def message_body(
    kind: str, payload: dict[str, Any], dedupe_key: str | None, enqueued_at: float
) -> str:
    """A new job's SQS message body, as :meth:`SqsJobQueue.enqueue` writes it."""
    message: dict[str, Any] = {
        "job_id": uuid.uuid4().hex,
        "kind": kind,
        "payload": payload,
        "enqueued_at": enqueued_at,
    }
    if dedupe_key is not None:
        message["dedupe_key"] = dedupe_key
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class OutboxJobQueue(LeaseDelegate):
    """A :class:`~valine.ports.JobQueue` whose ``enqueue`` writes to the outbox table.

    ``sqs_queue`` builds the SQS queue every other operation goes to (called on first
    use); ``dedupe`` is the same dedupe table the SQS queue uses, so a key claimed here
    blocks the same job enqueued there and the other way round.
    """

    backend = "DynamoDB outbox"

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        dedupe: DynamoDedupe,
        sqs_queue: Callable[[], SqsJobQueue],
        clock: Callable[[], float] = time.time,
        dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
    ) -> None:
        self._client = client
        self.table = table
        self.dedupe = dedupe
        self._sqs_queue = sqs_queue
        self._clock = clock
        self.dedupe_ttl = dedupe_ttl

    @cached_property
    def sqs(self) -> SqsJobQueue:
        """The SQS queue behind the outbox (built on first use)."""
        return self._sqs_queue()

    @property
    def inner(self) -> SqsJobQueue:
        """Where every job is leased from: the SQS queue the outbox is forwarded to
        (its depth leaves out jobs still in the outbox, forwarded within seconds)."""
        return self.sqs

    @property
    def max_attempts(self) -> int:
        """The SQS queue's attempts before a job is dead-lettered."""
        return self.sqs.max_attempts

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
    ) -> bool:
        """Write a job due after ``delay`` seconds into the outbox (one transaction with
        its dedupe key; inside a unit of work, the interaction's transaction).

        False, and nothing written, if ``dedupe_key`` was claimed within ``dedupe_ttl``.
        ``payload`` must be JSON-serialisable (``TypeError`` before anything is written).
        """
        now = self._clock()
        body = message_body(kind, payload, dedupe_key, now)
        writes = [self._job_write(body, kind, now + max(0.0, delay), now)]
        if dedupe_key is not None:
            token = {"claim": {"S": uuid.uuid4().hex}}
            claim = self.dedupe._claim_write(dedupe_key, now + self.dedupe_ttl, now, token)
            writes.insert(0, claim)
        unit = unit_of_work.current()
        if unit is not None and all(unit.add(w) for w in writes):
            return True
        return self._write(writes)

    def _job_write(self, body: str, kind: str, due_at: float, now: float) -> unit_of_work.Write:
        job_id = json.loads(body)["job_id"]
        item = {
            "job_id": {"S": job_id},
            "body": {"S": body},
            "kind": {"S": kind},
            "due_at": exact_number(due_at),
            "ttl": {"N": str(math.ceil(now) + OUTBOX_TTL)},
        }
        put = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(job_id)",
        }
        return unit_of_work.Write({"Put": put}, (self.table, job_id))

    def _write(self, writes: list[unit_of_work.Write]) -> bool:
        """The writes at once: one put, or one transaction of the dedupe key and the job."""
        try:
            if len(writes) == 1:
                self._client.put_item(**writes[0].action["Put"])
            else:
                self._client.transact_write_items(TransactItems=[w.action for w in writes])
        except Exception as exc:
            code = error_code(exc)
            if code == "TransactionCanceledException":
                reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    return False  # the dedupe key is held: the job is enqueued already
            if is_botocore_error(exc):
                raise QueueUnavailable(f"job queue (outbox) could not write a job: {exc}") from exc
            raise
        return True

    def claim(self, key: str, ttl: float, limit: int = 1) -> bool:
        """Count one use of ``key`` in the dedupe table (as :meth:`SqsJobQueue.claim`)."""
        now = self._clock()
        try:
            return self.dedupe.count(key, limit, now + ttl, now)
        except Exception as exc:
            if is_botocore_error(exc):
                raise QueueUnavailable(
                    f"job queue (outbox) could not count a claim: {exc}"
                ) from exc
            raise


def forward(
    sqs_client: Any,
    queue_url: str,
    records: Sequence[Mapping[str, Any]],
    now: Callable[[], float] = time.time,
) -> list[dict[str, str]]:
    """Send the jobs of a DynamoDB stream batch to the SQS queue; the batch item failures.

    Each ``INSERT`` record's new image is one job: its ``body`` is sent as is, with
    ``DelaySeconds`` the time left until ``due_at`` (rounded up, at most 900, as
    ``SqsJobQueue.enqueue``). Other events (a TTL's ``REMOVE``) are skipped. At the
    first record that cannot be sent the rest are left for the retry: the answer names
    that record's sequence number (``ReportBatchItemFailures``; Lambda retries a stream
    batch from the lowest one reported).
    """
    for record in records:
        if record.get("eventName") != "INSERT":
            continue
        stream = record.get("dynamodb") or {}
        sequence = str(stream.get("SequenceNumber", ""))
        try:
            image = stream["NewImage"]
            body = image["body"]["S"]
            due_at = float(image["due_at"]["N"])
        except (KeyError, TypeError, ValueError):
            log.error("outbox record %s is not a job; skipped", sequence)
            continue
        delay = min(MAX_DELAY, max(0, math.ceil(due_at - now())))
        try:
            sqs_client.send_message(QueueUrl=queue_url, MessageBody=body, DelaySeconds=delay)
        except Exception:
            log.warning("could not forward outbox record %s; retried", sequence, exc_info=True)
            return [{"itemIdentifier": sequence}]
    return []
