"""The AWS :class:`~valine.ports.JobQueue`: an SQS standard queue, its dead-letter queue, and
dedupe keys in DynamoDB.

boto3 is imported only when a client is built (:func:`sqs_client`), never at import.

Messages
========

A job is one message whose body is the JSON ``{"job_id", "kind", "payload"}``; a dead
letter is a message of the dead-letter queue whose body adds ``attempts``, ``error``
(the last failure) and ``died_at``. :func:`job_from_sqs_record` turns a record of a
Lambda SQS event into the same :class:`~valine.ports.Job` that :meth:`SqsJobQueue.lease`
returns, so the worker Lambda (fed batches by the event source mapping) and a polling
worker run the same handlers and call the same :meth:`~SqsJobQueue.ack` /
:meth:`~SqsJobQueue.retry`.

How the port's semantics map onto SQS
=====================================

* **Attempts** are SQS's ``ApproximateReceiveCount``; the lease token is the receipt
  handle. A lease is a receive with ``VisibilityTimeout`` = the lease, rounded *up* to
  whole seconds (SQS takes integers, at most 43,200).
* **Delay.** ``enqueue(delay=...)`` sends with ``DelaySeconds`` = ``ceil(delay)``,
  clamped to SQS's maximum of **900 s**: a longer delay makes the job due after 15
  minutes, early. (The product's delays are notification windows of seconds.)
* **Retry** changes the message's visibility to the backoff — the SQLite queue's
  formula, ``b = min(max_backoff, base_backoff * 2**(n-1))`` drawn uniformly from
  ``[b/2, b]`` — rounded up to whole seconds and capped at 43,200 (SQS also refuses to
  keep one receive of a message invisible for more than 12 hours in total). At
  ``max_attempts`` the job is sent to the dead-letter queue with its error and deleted
  from the queue (sent first, so a crash in between duplicates the dead letter rather than
  losing the job).
* **Release** (a wait, not a failure: a rate limit until its reset) cannot un-count a
  receive, so the job is sent again as a new message whose body carries
  ``prior_attempts`` (added to its own receive count) and ``not_before`` (the worker
  releases a job handed out before it, again without spending an attempt), with
  ``DelaySeconds`` up to 900; then the leased message is deleted.
* **Heartbeat.** :meth:`SqsJobQueue.extend` changes the leased message's visibility, so
  a job that runs longer than its lease is not received by a second worker.
* **A worker that keeps dying** (no ack, no retry) makes ``ApproximateReceiveCount``
  grow past ``max_attempts``: :meth:`SqsJobQueue.lease` dead-letters such a message
  instead of handing it out, as the SQLite queue does. Under Lambda's event source
  mapping, which receives by itself, the queue's redrive policy does it: set its
  ``maxReceiveCount`` to ``max_attempts + 1`` so that :meth:`~SqsJobQueue.retry` (which
  records the error) dead-letters first; a message SQS redrove has the plain job body,
  and :meth:`~SqsJobQueue.dead_letters` reports it with no error.
* **Dedupe.** ``enqueue(dedupe_key=...)`` first claims the key in a DynamoDB table (a
  conditional put, ``attribute_not_exists OR expires_at <= :now``, with a TTL), then
  sends. If the send fails the claim is deleted and ``QueueUnavailable`` raised. *Crash
  window:* a process that dies between the claim and the send leaves the key claimed with
  no job sent, so that job is lost until the key expires (``dedupe_ttl``); SQS and
  DynamoDB have no transaction spanning both. The SQLite queue writes both in one
  transaction and has no such window. The key travels in the message body; a job that
  :meth:`~SqsJobQueue.retry` dead-letters deletes it, so the same work may be enqueued
  again (a message SQS's redrive policy moves keeps its key until it expires).
  :meth:`SqsJobQueue.claim` counts uses of job-less keys in the same table
  (``claim#<key>``: replayed interactions, rate limits).

What SQS does not promise (and the SQLite queue does)
=====================================================

* **Stale leases.** ``DeleteMessage`` with an older receipt handle "succeeds, but the
  message might not be deleted" (SQS API reference) — or might be; and a receipt handle
  stays valid after ``ChangeMessageVisibility``, so an ack after a retry deletes the job.
  The adapter cannot tell a stale handle from a current one; it logs a warning only when
  SQS rejects a handle. Handlers are idempotent (docs/reliability.md), which makes this safe.
* **Order.** A standard queue delivers in no guaranteed order, and a message may be
  delivered twice.
* **Dead letters are peeked**, not listed: :meth:`SqsJobQueue.dead_letters` receives up to
  10 messages from the dead-letter queue with ``VisibilityTimeout=0`` (they stay there,
  visible) and orders them by ``died_at``. SQS short polling samples a subset of its
  servers, so a peek may miss some dead letters and never sees more than 10; each peek
  counts as a receive of those messages. The AWS console or a redrive task are the tools
  for a large dead-letter queue.
* **Depth** adds SQS's ``ApproximateNumberOfMessages``, ``...NotVisible`` and
  ``...Delayed``: approximate, and eventually consistent (about a minute behind).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Unpack

from valine.core.errors import QueueUnavailable
from valine.infra import unit_of_work
from valine.infra.aws import (
    TableNames,
    claim_key,
    client_config,
    error_code,
    exact_number,
    expiring_item,
    is_botocore_error,
    string_attributes,
)
from valine.logs import get_logger
from valine.ports import Job
from valine.queue.base import QueueBase, QueueOptions

log = get_logger("valine.queue")

#: SQS's largest ``DelaySeconds``.
MAX_DELAY = 900
#: SQS's largest visibility timeout (12 hours).
MAX_VISIBILITY = 43_200
_STALE_HANDLE_CODES = ("ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidReceiptHandle")


def sqs_client(endpoint_url: str | None = None, region_name: str | None = None) -> Any:
    """A low-level SQS client with the modest timeouts and ``standard`` retries of the
    DynamoDB store (boto3 is imported here, on first use)."""
    import boto3

    return boto3.client(
        "sqs", endpoint_url=endpoint_url, region_name=region_name, config=client_config()
    )


def _is_stale_handle(exc: BaseException) -> bool:
    """True if SQS refused a receipt handle (expired, unknown, or the message not in flight)."""
    code = error_code(exc) or ""
    if any(code.endswith(stale) for stale in _STALE_HANDLE_CODES):
        return True
    # e.g. "Value ... for parameter ReceiptHandle is invalid. Reason: The receipt handle
    # has expired." (an expired handle, as real SQS words it)
    message = str(exc).lower().replace(" ", "")
    return code.endswith("InvalidParameterValue") and "receipthandle" in message


def _body_object(body: str) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict) or not isinstance(value.get("payload"), dict):
        raise QueueUnavailable("an SQS message body is not a valine job")
    return value


def _job_of(body: Mapping[str, Any], receive_count: Any, receipt_handle: str) -> Job:
    """A job from its message body; attempts = those carried over + this message's receives."""
    return Job(
        job_id=str(body["job_id"]),
        kind=str(body["kind"]),
        payload=body["payload"],
        attempts=int(body.get("prior_attempts") or 0) + int(receive_count),
        lease_token=receipt_handle,
        not_before=float(body.get("not_before") or 0.0),
        dedupe_key=_dedupe_key(body),
        enqueued_at=float(body.get("enqueued_at") or 0.0),
    )


def _dedupe_key(body: Mapping[str, Any]) -> str | None:
    key = body.get("dedupe_key")
    return key if isinstance(key, str) else None


def job_from_sqs_record(record: Mapping[str, Any]) -> Job:
    """The :class:`Job` of one record of a Lambda SQS event (``event["Records"][i]``).

    ``attempts`` is the record's ``ApproximateReceiveCount`` (plus the attempts a
    released job carried over) and the lease token its receipt handle, exactly as
    :meth:`SqsJobQueue.lease` would give them.
    """
    body = _body_object(str(record["body"]))
    attributes = record.get("attributes") or {}
    receives = attributes.get("ApproximateReceiveCount", 1)
    return _job_of(body, receives, str(record["receiptHandle"]))


class Dedupe(Protocol):
    """Where enqueue remembers dedupe keys: claim once, release a failed claim."""

    def claim(self, key: str, expires_at: float, now: float) -> str | None:
        """A claim token if ``key`` was free (or expired) and is now held; else None."""
        ...

    def release(self, key: str, token: str) -> None:
        """Forget ``key`` if the claim ``token`` still holds it."""
        ...

    def forget(self, key: str) -> None:
        """Forget ``key`` whoever holds it (its job was dead-lettered)."""
        ...

    def count(self, key: str, limit: int, expires_at: float, now: float) -> bool:
        """Count one use of ``key``; False once ``limit`` uses are counted before expiry."""
        ...


def table_definitions(prefix: str) -> list[dict[str, Any]]:
    """``CreateTable`` arguments of the queue's table of deployment ``prefix``: the dedupe keys.

    ``{prefix}-dedupe`` — key ``dedupe_key`` (S); ``expires_at`` (N, exact), ``ttl`` (N,
    whole seconds, ``ceil(expires_at)``), the table's TTL attribute, and ``claim`` (a token,
    so that a failed enqueue releases only its own claim). Written by
    :func:`valine.infra.aws.claim_key`: DynamoDB deletes expired items lazily, so an
    expired record still present counts as absent. TTL: :func:`time_to_live_definitions`.
    """
    return [
        {
            "TableName": TableNames.from_prefix(prefix).dedupe,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": string_attributes("dedupe_key"),
            "KeySchema": [{"AttributeName": "dedupe_key", "KeyType": "HASH"}],
        }
    ]


def time_to_live_definitions(prefix: str) -> list[dict[str, Any]]:
    """``UpdateTimeToLive`` arguments: the ``ttl`` attribute of the dedupe keys."""
    return [
        {
            "TableName": TableNames.from_prefix(prefix).dedupe,
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
        }
    ]


class DynamoDedupe:
    """Dedupe keys in a DynamoDB table (``{prefix}-dedupe``, see :func:`table_definitions`).

    Key ``dedupe_key``; ``expires_at`` (exact) decides, ``ttl`` (whole seconds) lets
    DynamoDB delete expired keys by itself; ``claim`` is a random token.
    """

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self.table = table

    def claim(self, key: str, expires_at: float, now: float) -> str | None:
        """A claim token if ``key`` was free or expired (one conditional put); else None.

        Inside a unit of work the put is collected into its transaction instead, and the
        token given provisionally (a key already held cancels the transaction).
        """
        token = uuid.uuid4().hex
        extra = {"claim": {"S": token}}
        unit = unit_of_work.current()
        if unit is not None and unit.add(self._claim_write(key, expires_at, now, extra)):
            return token
        if claim_key(
            self._client, self.table, "dedupe_key", key, expires_at=expires_at, now=now, extra=extra
        ):
            return token
        return None

    def _claim_write(
        self, key: str, expires_at: float, now: float, extra: dict[str, Any]
    ) -> unit_of_work.Write:
        """The transaction item of :meth:`claim` (the put :func:`claim_key` makes)."""
        item = {**expiring_item("dedupe_key", key, expires_at), **extra}
        put = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(dedupe_key) OR expires_at <= :now",
            "ExpressionAttributeValues": {":now": exact_number(now)},
        }
        return unit_of_work.Write({"Put": put}, (self.table, key))

    def release(self, key: str, token: str) -> None:
        """Delete ``key`` if ``token`` still holds it (a later claim is left alone)."""
        try:
            self._client.delete_item(
                TableName=self.table,
                Key={"dedupe_key": {"S": key}},
                ConditionExpression="claim = :token",
                ExpressionAttributeValues={":token": {"S": token}},
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def forget(self, key: str) -> None:
        """Delete ``key`` (one unconditional delete)."""
        self._client.delete_item(TableName=self.table, Key={"dedupe_key": {"S": key}})

    def count(self, key: str, limit: int, expires_at: float, now: float) -> bool:
        """One conditional update counts a use; a second one restarts an expired count.

        Inside a unit of work the update is collected into its transaction and the use
        counted provisionally; if its condition fails on an expired count, the
        transaction is retried with the restart instead (the write's alternative).
        """
        item_key = {"dedupe_key": {"S": "claim#" + key}}
        unit = unit_of_work.current()
        if unit is not None and unit.add(self._count_write(item_key, limit, expires_at, now)):
            return True
        values = {
            ":one": {"N": "1"},
            ":zero": {"N": "0"},
            ":limit": {"N": str(limit)},
            ":now": {"N": repr(now)},
            ":exp": {"N": repr(expires_at)},
            ":ttl": {"N": str(math.ceil(expires_at))},
        }
        try:
            self._client.update_item(
                TableName=self.table,
                Key=item_key,
                UpdateExpression="SET uses = if_not_exists(uses, :zero) + :one, "
                "expires_at = if_not_exists(expires_at, :exp), #ttl = if_not_exists(#ttl, :ttl)",
                ConditionExpression="attribute_not_exists(dedupe_key) OR "
                "(expires_at > :now AND uses < :limit)",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues=values,
            )
            return True
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        try:
            self._client.update_item(
                TableName=self.table,
                Key=item_key,
                UpdateExpression="SET uses = :one, expires_at = :exp, #ttl = :ttl",
                ConditionExpression="expires_at <= :now",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    k: v for k, v in values.items() if k in (":one", ":now", ":exp", ":ttl")
                },
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _count_write(
        self, item_key: dict[str, Any], limit: int, expires_at: float, now: float
    ) -> unit_of_work.Write:
        """The transaction item of :meth:`count`, and the restart of an expired count."""
        update = {
            "TableName": self.table,
            "Key": item_key,
            "UpdateExpression": "SET uses = if_not_exists(uses, :zero) + :one, "
            "expires_at = if_not_exists(expires_at, :exp), #ttl = if_not_exists(#ttl, :ttl)",
            "ConditionExpression": "attribute_not_exists(dedupe_key) OR "
            "(expires_at > :now AND uses < :limit)",
            "ExpressionAttributeNames": {"#ttl": "ttl"},
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":zero": {"N": "0"},
                ":limit": {"N": str(limit)},
                ":now": exact_number(now),
                ":exp": exact_number(expires_at),
                ":ttl": {"N": str(math.ceil(expires_at))},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

        def restart(old: dict[str, Any] | None) -> dict[str, Any] | None:
            """The restarted count if the refusal was an expired one; None if over the limit."""
            if old is None or float(old.get("expires_at", {}).get("N", "0")) > now:
                return None
            item = {**expiring_item("dedupe_key", "", expires_at), **item_key}
            item["uses"] = {"N": "1"}
            put = {
                "TableName": self.table,
                "Item": item,
                "ConditionExpression": "expires_at <= :now",
                "ExpressionAttributeValues": {":now": exact_number(now)},
            }
            return {"Put": put}

        return unit_of_work.Write(
            {"Update": update}, (self.table, item_key["dedupe_key"]["S"]), restart
        )


class SqsJobQueue(QueueBase):
    """A :class:`~valine.ports.JobQueue` on an SQS standard queue (see the module docstring).

    ``dead_letter_url`` is the queue dead letters go to; ``dedupe`` remembers dedupe keys
    for ``dedupe_ttl`` seconds (a week, as the SQLite queue). The retry, dead-letter and
    lease rules are :class:`~valine.queue.base.QueueBase`'s; this class supplies its
    primitives, each one SQS request (a dead letter: a send, then a delete). Safe to share
    between threads (boto3 clients are).
    """

    backend = "SQS"

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        *,
        dead_letter_url: str,
        dedupe: Dedupe,
        **options: Unpack[QueueOptions],
    ) -> None:
        super().__init__(**options)
        self._sqs = sqs_client
        self.queue_url = queue_url
        self.dead_letter_url = dead_letter_url
        self.dedupe = dedupe

    # -- JobQueue -------------------------------------------------------------------

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
    ) -> bool:
        """Send a job due after ``delay`` seconds (rounded up, at most 900).

        False, and nothing sent, if ``dedupe_key`` was claimed within ``dedupe_ttl``.
        ``payload`` must be JSON-serialisable (``TypeError`` if not, before anything is
        written). See the module docstring for the window between claim and send.
        """
        message: dict[str, Any] = {
            "job_id": uuid.uuid4().hex,
            "kind": kind,
            "payload": payload,
            "enqueued_at": self._clock(),
        }
        if dedupe_key is not None:
            message["dedupe_key"] = dedupe_key
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        token: str | None = None
        unit = unit_of_work.current()
        if dedupe_key is not None:
            now = self._clock()
            with self._translated("record a dedupe key"):
                token = self.dedupe.claim(dedupe_key, now + self.dedupe_ttl, now)
            if token is None:
                return False
        if unit is not None:
            # The dedupe key is in the interaction's transaction: send once it commits.
            unit.after_commit.append(lambda: self._send(body, delay, dedupe_key, token))
            return True
        self._send(body, delay, dedupe_key, token)
        return True

    def _send(self, body: str, delay: float, dedupe_key: str | None, token: str | None) -> None:
        """Send one job message; if that fails, release its dedupe key and raise."""
        try:
            with self._translated("send a job"):
                self._sqs.send_message(
                    QueueUrl=self.queue_url,
                    MessageBody=body,
                    DelaySeconds=min(MAX_DELAY, max(0, math.ceil(delay))),
                )
        except QueueUnavailable:
            if dedupe_key is not None and token is not None:
                self._release(dedupe_key, token)
            raise

    def dead_letters(self, limit: int = 50) -> Sequence[Job]:
        """A peek at the dead-letter queue: at most 10 dead letters, most recently dead first.

        Read with ``VisibilityTimeout=0``, so they stay in the queue and visible; see the
        module docstring for what a peek can miss. ``last_error`` is the error the last
        attempt failed with (None for a message SQS's redrive policy moved there).
        """
        if limit < 1:
            return []
        with self._translated("peek at the dead letters"):
            messages = self._sqs.receive_message(
                QueueUrl=self.dead_letter_url,
                MaxNumberOfMessages=10,  # all a peek can see, then sorted and cut
                WaitTimeSeconds=0,
                VisibilityTimeout=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            ).get("Messages", [])
        dead: list[tuple[float, Job]] = []
        for message in messages:
            try:
                body = _body_object(message["Body"])
            except (ValueError, QueueUnavailable):
                # Not a job: e.g. the outbox stream's on-failure record of a batch that
                # could not be forwarded (its alarm says so; the items stay a day).
                log.error("a dead letter that is not a job: %.300s", message["Body"])
                continue
            attributes = message.get("Attributes", {})
            died_at = body.get("died_at")
            if died_at is None:  # moved by the redrive policy: no error, no death time
                died_at = int(attributes.get("SentTimestamp", 0)) / 1000
            job = Job(
                job_id=str(body["job_id"]),
                kind=str(body["kind"]),
                payload=body["payload"],
                attempts=int(body.get("attempts") or attributes.get("ApproximateReceiveCount", 0)),
                lease_token="",
                last_error=body.get("error"),
            )
            dead.append((float(died_at), job))
        dead.sort(key=lambda pair: pair[0], reverse=True)
        return [job for _, job in dead[:limit]]

    def claim(self, key: str, ttl: float, limit: int = 1) -> bool:
        """Count one use of ``key`` in the dedupe table; False once ``limit`` are counted."""
        now = self._clock()
        with self._translated("count a claim"):
            return self.dedupe.count(key, limit, now + ttl, now)

    def depth(self) -> int:
        """Jobs waiting, delayed or leased, by SQS's approximate counts."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        with self._translated("count the jobs"):
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=names
            ).get("Attributes", {})
        return sum(int(attributes.get(name, 0)) for name in names)

    # -- helpers --------------------------------------------------------------------

    def _job(self, message: Mapping[str, Any]) -> Job:
        body = _body_object(str(message["Body"]))
        attributes = message.get("Attributes") or {}
        receives = attributes.get("ApproximateReceiveCount", 1)
        return _job_of(body, receives, str(message["ReceiptHandle"]))

    def _release(self, key: str, token: str) -> None:
        try:
            self.dedupe.release(key, token)
        except Exception as exc:
            if not is_botocore_error(exc):
                raise
            log.warning(
                "dedupe key %s stays claimed after a failed enqueue: %s",
                key,
                exc,
                extra={"dedupe_key": key},
            )

    # -- the primitives of QueueBase --------------------------------------------------

    def _is_backend_error(self, exc: BaseException) -> bool:
        return is_botocore_error(exc)

    def _receive(self, visibility_timeout: float) -> Job | None:
        """One short poll (``WaitTimeSeconds=0``); the timeout is rounded up to seconds."""
        with self._translated("receive a job"):
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=0,
                VisibilityTimeout=_seconds(visibility_timeout),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
        return self._job(messages[0]) if messages else None

    def _delete(self, job: Job) -> bool:
        return self._held(
            "delete a job",
            lambda: self._sqs.delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=job.lease_token
            ),
        )

    def _reschedule(self, job: Job, delay: float, error: str) -> bool:
        """The backoff is the message's new visibility (the error is not kept: SQS cannot)."""
        return self._set_visibility(job, delay, "reschedule a job")

    def _bury(self, job: Job, error: str, attempts: int) -> bool:
        """Send the dead letter first (a crash duplicates it, never loses the job), then
        forget the dedupe key and delete the message; a refused handle is only logged."""
        body = {
            "job_id": job.job_id,
            "kind": job.kind,
            "payload": job.payload,
            "attempts": attempts,
            "error": error,
            "died_at": self._clock(),
        }
        with self._translated("dead-letter a job"):
            self._sqs.send_message(
                QueueUrl=self.dead_letter_url,
                MessageBody=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            )
        if job.dedupe_key is not None:  # the work was not done: it may be enqueued again
            with self._translated("release a dead job's dedupe key"):
                self.dedupe.forget(job.dedupe_key)
        if not self._delete(job):
            self._stale(job, "dead-letter")
        return True

    def _set_visibility(
        self, job: Job, visibility_timeout: float, action: str = "extend a lease"
    ) -> bool:
        return self._held(
            action,
            lambda: self._sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=job.lease_token,
                VisibilityTimeout=_seconds(visibility_timeout),
            ),
        )

    def _put_back(self, job: Job, delay: float) -> bool:
        """SQS counts every receive, so the job is sent again as a new message carrying the
        attempts it had before this one (``prior_attempts``) and when it may run
        (``not_before``; SQS delays stop at 900 s, so a job handed out earlier is
        released again by the worker), then the leased message is deleted (sent first:
        a crash in between runs the job twice, never loses it; jobs are idempotent)."""
        body = {
            "job_id": job.job_id,
            "kind": job.kind,
            "payload": job.payload,
            "prior_attempts": max(0, job.attempts - 1),
            "not_before": self._clock() + delay,
            "enqueued_at": job.enqueued_at,
        }
        if job.dedupe_key is not None:
            body["dedupe_key"] = job.dedupe_key
        with self._translated("release a job"):
            self._sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                DelaySeconds=min(MAX_DELAY, math.ceil(delay)),
            )
        if not self._delete(job):
            self._stale(job, "release")
        return True

    def _held(self, action: str, call: Callable[[], Any]) -> bool:
        """Run one call on a receipt handle; False if SQS refuses the handle (lease over)."""
        try:
            with self._translated(action):
                call()
        except QueueUnavailable as exc:
            if not _is_stale_handle(exc.__cause__ or exc):
                raise
            return False
        return True


def _seconds(timeout: float) -> int:
    """A visibility timeout as SQS takes it: whole seconds, rounded up, at most 12 hours."""
    return min(MAX_VISIBILITY, max(0, math.ceil(timeout)))
