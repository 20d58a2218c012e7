"""The Lambda handlers, driven with events shaped like the real ones, on local AWS stand-ins.

State lives in DynamoDB Local (AWS's own implementation), jobs in moto's SQS server and the
secret in moto's Secrets Manager: every client is pointed at loopback with
``AWS_ENDPOINT_URL_<SERVICE>`` and dummy credentials (``tests/aws_local.py``). The events
are API Gateway REST (v1) proxy events and SQS events as AWS documents them, including
``multiValueHeaders``, mixed-case header names and base64 bodies.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from aws_local import (  # noqa: F401 - aws_test_environment: a session fixture, registered here
    REGION,
    SERVICES,
    OutboxStream,
    aws_test_environment,
    client,
    unique_prefix,
)
from helpers import discord_headers, github_headers, interaction
from valine import metrics
from valine.core.models import Run, Task
from valine.core.states import RunState, TaskState
from valine.github.webhooks import dedupe_key
from valine.http import Response
from valine.infra.aws import TableNames
from valine.runtime import lambda_handlers
from valine.runtime.aws_tables import create_tables, delete_tables
from valine.runtime.lambda_handlers import LambdaRuntime, proxy_response, request_from_event
from valine.testing.github import GitHubStandIn

ROOT = Path(__file__).resolve().parents[2]
REPO = "octo/widgets"
APPLICATION_ID = "1100000000000000000"


# --------------------------------------------------------------------------- events


def api_event(
    path: str, body: bytes, headers: dict[str, str], *, base64_body: bool = False
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as Lambda receives it for ``POST path``.

    Header names keep the case the client sent (API Gateway passes them as received);
    ``headers`` holds the last value of each, ``multiValueHeaders`` every value.
    """
    sent = {
        "Host": "abc123.execute-api.us-west-2.amazonaws.com",
        "User-Agent": "Discord-Interactions/1.0 (+https://discord.com)",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        **{_mixed_case(k): v for k, v in headers.items()},
    }
    text = base64.b64encode(body).decode() if base64_body else body.decode()
    return {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": sent,
        "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": path,
            "httpMethod": "POST",
            "extendedRequestId": "Xyz=",
            "requestTime": "25/Nov/2026:16:00:00 +0000",
            "path": f"/test{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "test",
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1795622400000,
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.7", "userAgent": sent["User-Agent"]},
            "domainName": "abc123.execute-api.us-west-2.amazonaws.com",
            "apiId": "abc123",
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


def _mixed_case(name: str) -> str:
    """``x-signature-ed25519`` -> ``X-Signature-Ed25519`` (as clients often send them)."""
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


@dataclass
class Context:
    """The parts of Lambda's context object the handlers read."""

    aws_request_id: str = "req-1"
    function_name: str = "valine-orchestrator-test"


def sqs_event(queue_url: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A Lambda SQS event of ``messages`` received from moto (``AttributeNames=All``)."""
    name = queue_url.rsplit("/", 1)[1]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                    "SentTimestamp": m["Attributes"]["SentTimestamp"],
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": m["Attributes"].get(
                        "ApproximateFirstReceiveTimestamp", m["Attributes"]["SentTimestamp"]
                    ),
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:{name}",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


# --------------------------------------------------------------------------- the deployment


@dataclass
class Deployment:
    """One test's AWS resources (on the local stand-ins) and its Lambda container."""

    runtime: LambdaRuntime
    key: SigningKey
    webhook_secret: str
    names: TableNames
    queue_url: str
    dead_letter_url: str
    secret_id: str
    sqs: Any
    secretsmanager: Any
    github: GitHubStandIn
    streams: Any
    stream: OutboxStream | None = None

    def forward(self) -> dict[str, Any]:
        """Read the outbox table's stream (DynamoDB Local's dynamodbstreams API) from where
        the last read stopped, and hand the records, as Lambda's stream event, to the
        forwarder's handler: the jobs written since reach the SQS queue."""
        if self.stream is None:
            self.stream = OutboxStream(self.streams, self.names.outbox)
        event = self.stream.event()
        if not event["Records"]:
            return {"batchItemFailures": []}
        return lambda_handlers.outbox_handler(event, Context())

    def receive(self, url: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """Messages waiting in the queue (received, so invisible for 30 s), after the
        outbox's new jobs were forwarded (as its stream's Lambda would)."""
        if url is None:
            assert self.forward() == {"batchItemFailures": []}
        return list(
            self.sqs.receive_message(
                QueueUrl=url or self.queue_url,
                MaxNumberOfMessages=limit,
                WaitTimeSeconds=0,
                VisibilityTimeout=30,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
        )


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """Tables, queues and a secret like the template's, and the environment it sets."""
    dynamodb_local = SERVICES.dynamodb_endpoint()
    moto_sqs = SERVICES.sqs_endpoint()  # moto's server: SQS and Secrets Manager
    prefix = unique_prefix()
    dynamodb = client("dynamodb", dynamodb_local)
    create_tables(dynamodb, prefix)
    names = TableNames.from_prefix(prefix)
    sqs = client("sqs", moto_sqs)
    dead_letter_url = sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
    queue_url = sqs.create_queue(QueueName=f"{prefix}-jobs")["QueueUrl"]
    secretsmanager = client("secretsmanager", moto_sqs)
    github = GitHubStandIn().start()
    github.add_repo(REPO)
    key = SigningKey.generate()
    webhook_secret = "whsec-" + uuid.uuid4().hex
    secret_id = secretsmanager.create_secret(
        Name=f"{prefix}/secret",
        SecretString=json.dumps(
            {
                "DISCORD_BOT_TOKEN": "bot-" + uuid.uuid4().hex,
                "GITHUB_TOKEN": github.token,
                "GITHUB_WEBHOOK_SECRET": webhook_secret,
                "GITHUB_APP_PRIVATE_KEY": "",
            }
        ),
    )["ARN"]
    config = tmp_path / "valine.toml"
    config.write_text('[discord]\nguild_ids = ["4"]\n\n[permissions.plan]\nusers = ["42"]\n')
    environ = {
        # What the template sets (names from a different prefix: the explicit ones win).
        "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
        "DISCORD_APPLICATION_ID": APPLICATION_ID,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_APP_ID": "",
        "GITHUB_APP_INSTALLATION_ID": "",
        "VALINE_SECRETS_ARN": secret_id,
        "VALINE_SECRETS_TTL": "0",  # every invocation re-reads it: rotation is testable
        "VALINE_LOG_LEVEL": "INFO",
        "VALINE_STORE": "dynamodb://valine-orchestrator-not-this-prefix",
        "VALINE_RUNS_TABLE": names.runs,
        "VALINE_AUDIT_TABLE": names.audit,
        "VALINE_DEDUPE_TABLE": names.dedupe,
        # The Discord function's: jobs go to the outbox (the others' would go to SQS; the
        # tests' one container plays every function, and Deployment.receive forwards).
        "VALINE_OUTBOX_TABLE": names.outbox,
        "VALINE_QUEUE_URL": queue_url,
        "VALINE_DEAD_LETTER_URL": dead_letter_url,
        # What only the tests set: loopback endpoints, the stand-in, the rules file.
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_local,
        "AWS_ENDPOINT_URL_SQS": moto_sqs,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_sqs,
        # Any other service would go to a closed loopback port, never to AWS.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "GITHUB_API_URL": github.url,
        "VALINE_CONFIG": str(config),
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    runtime = LambdaRuntime(configure_logs=False)
    monkeypatch.setattr(lambda_handlers, "_runtime", runtime)
    try:
        yield Deployment(
            runtime,
            key,
            webhook_secret,
            names,
            queue_url,
            dead_letter_url,
            secret_id,
            sqs,
            secretsmanager,
            github,
            client("dynamodbstreams", dynamodb_local),
        )
    finally:
        github.stop()
        for url in (queue_url, dead_letter_url):
            sqs.delete_queue(QueueUrl=url)
        secretsmanager.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
        delete_tables(dynamodb, prefix)
        for aws in (dynamodb, sqs, secretsmanager):  # (the streams client closes with it)
            aws.close()


def answer(result: dict[str, Any]) -> tuple[int, Any]:
    """(status, decoded JSON body) of a proxy result, checking its shape."""
    assert set(result) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert result["isBase64Encoded"] is False
    assert result["headers"]["content-type"] == "application/json"
    return result["statusCode"], json.loads(result["body"])


def discord_event(key: SigningKey, body: bytes, *, base64_body: bool = False) -> dict[str, Any]:
    return api_event("/discord", body, discord_headers(key, body), base64_body=base64_body)


# --------------------------------------------------------------------------- Discord


def test_signed_ping_gets_pong_without_touching_aws(deployment: Deployment) -> None:
    body = interaction(kind=1)
    result = lambda_handlers.discord_handler(discord_event(deployment.key, body), Context())
    assert answer(result) == (200, {"type": 1})
    services = deployment.runtime.services
    assert services._aws_clients == {}, "a PING must build no AWS client"
    assert "store" not in vars(services) and "queue" not in vars(services)


def test_base64_body_is_decoded_before_verification(deployment: Deployment) -> None:
    body = interaction(kind=1)
    event = discord_event(deployment.key, body, base64_body=True)
    assert answer(lambda_handlers.discord_handler(event, Context())) == (200, {"type": 1})


def test_wrong_signature_gets_401(deployment: Deployment) -> None:
    body = interaction(kind=1)
    event = api_event("/discord", body, discord_headers(SigningKey.generate(), body))
    status, document = answer(lambda_handlers.discord_handler(event, Context()))
    assert status == 401
    assert "signature" in document["error"]


def test_body_marked_base64_but_not_is_400(deployment: Deployment) -> None:
    event = discord_event(deployment.key, interaction(kind=1))
    event["isBase64Encoded"] = True
    event["body"] = "%%% not base64 %%%"
    assert answer(lambda_handlers.discord_handler(event, Context()))[0] == 400


def test_plan_is_deferred_and_enqueued(deployment: Deployment) -> None:
    body = interaction(name="plan")
    result = lambda_handlers.discord_handler(discord_event(deployment.key, body), Context())
    assert answer(result) == (200, {"type": 5})
    messages = deployment.receive()
    assert [json.loads(m["Body"])["kind"] for m in messages] == ["plan"]
    job = json.loads(messages[0]["Body"])["payload"]
    assert job["interaction"]["id"] == json.loads(body)["id"]
    audit = deployment.runtime.services.store.audit_trail()
    assert [(e.action, e.outcome) for e in audit] == [("plan", "accepted")]


def test_a_deferred_command_imports_neither_boto3_nor_s3transfer(deployment: Deployment) -> None:
    """Its clients come from botocore's session, so a cold start never pays for boto3's
    own import and s3transfer's (docs/benchmarks.md: the deferred command's cold start)."""
    body = interaction(name="plan")
    code = (
        "import json, sys\n"
        "from valine.runtime.lambda_handlers import discord_handler\n"
        "result = discord_handler(json.load(sys.stdin), None)\n"
        "sdk = {'boto3', 's3transfer', 'botocore'} & {m.split('.')[0] for m in sys.modules}\n"
        "print(json.dumps({'answer': json.loads(result['body']), 'sdk': sorted(sdk)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(discord_event(deployment.key, body)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"answer": {"type": 5}, "sdk": ["botocore"]}
    assert [json.loads(m["Body"])["kind"] for m in deployment.receive()] == ["plan"]


# --------------------------------------------------------------------------- GitHub


def test_webhook_accepted_then_duplicate_and_processed_once(
    deployment: Deployment, webhook_examples: dict[str, list[dict[str, Any]]]
) -> None:
    payload = dict(webhook_examples["issues"][0])
    payload["repository"] = {**payload["repository"], "full_name": REPO}  # a served one
    body = json.dumps(payload).encode()
    headers = github_headers(body, "issues", "delivery-1", secret=deployment.webhook_secret)
    event = api_event("/github/webhook", body, headers)
    status, document = answer(lambda_handlers.github_handler(event, Context()))
    assert (status, document["status"]) == (202, "accepted")
    status, document = answer(lambda_handlers.github_handler(event, Context()))
    assert (status, document["status"]) == (200, "duplicate")

    messages = deployment.receive()
    assert len(messages) == 1, "the duplicate must not be enqueued"
    job = json.loads(messages[0]["Body"])
    assert (job["kind"], job["payload"]["delivery_id"]) == ("github_event", "delivery-1")
    result = lambda_handlers.worker_handler(sqs_event(deployment.queue_url, messages), Context())
    assert result == {"batchItemFailures": []}
    # The delivery id stays claimed: no later copy of it can be enqueued again.
    queue = deployment.runtime.services.queue
    assert not queue.enqueue("github_event", {}, dedupe_key=dedupe_key("delivery-1"))


def test_webhook_with_the_wrong_secret_gets_401(deployment: Deployment) -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    headers = github_headers(body, "ping", secret="not-the-secret")
    event = api_event("/github/webhook", body, headers)
    assert answer(lambda_handlers.github_handler(event, Context()))[0] == 401


def test_a_rotated_webhook_secret_is_used_without_a_redeploy(deployment: Deployment) -> None:
    body = b'{"zen": "Design for failure."}'

    def ping(secret: str) -> int:
        headers = github_headers(body, "ping", secret=secret)
        event = api_event("/github/webhook", body, headers)
        return answer(lambda_handlers.github_handler(event, Context()))[0]

    assert ping(deployment.webhook_secret) == 200
    rotated = "whsec-rotated-" + uuid.uuid4().hex
    secret = json.loads(
        deployment.secretsmanager.get_secret_value(SecretId=deployment.secret_id)["SecretString"]
    )
    secret["GITHUB_WEBHOOK_SECRET"] = rotated
    deployment.secretsmanager.put_secret_value(
        SecretId=deployment.secret_id, SecretString=json.dumps(secret)
    )
    assert ping(rotated) == 200  # VALINE_SECRETS_TTL=0: read again on this invocation
    assert ping(deployment.webhook_secret) == 401


def test_an_unreadable_secret_gives_503(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        lambda_handlers,
        "_runtime",
        LambdaRuntime({**os.environ, "VALINE_SECRETS_ARN": "no-such-secret"}, configure_logs=False),
    )
    body = b'{"zen": "Half measures are as bad as nothing at all."}'
    headers = github_headers(body, "ping", secret=deployment.webhook_secret)
    event = api_event("/github/webhook", body, headers)
    assert answer(lambda_handlers.github_handler(event, Context()))[0] == 503


# --------------------------------------------------------------------------- worker


def test_worker_reports_exactly_the_failed_record(deployment: Deployment) -> None:
    queue = deployment.runtime.services.queue
    other_repo = {"action": "opened", "repository": {"full_name": "someone/else"}}
    for n in range(2):
        queue.enqueue(
            "github_event", {"event": "issues", "delivery_id": f"d{n}", "payload": other_repo}
        )
    queue.enqueue("no_such_kind", {"x": 1})
    messages = deployment.receive()
    assert len(messages) == 3
    failing = next(m for m in messages if json.loads(m["Body"])["kind"] == "no_such_kind")
    result = lambda_handlers.worker_handler(sqs_event(deployment.queue_url, messages), Context())
    assert result == {"batchItemFailures": [{"itemIdentifier": failing["MessageId"]}]}
    assert deployment.receive(deployment.dead_letter_url) == []


def test_worker_dead_letters_on_the_last_attempt(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = deployment.runtime.services
    told: list[tuple[str, dict[str, Any], str]] = []
    monkeypatch.setattr(services.orchestrator, "on_dead_letter", lambda *args: told.append(args))
    services.queue.enqueue("no_such_kind", {"n": 7})
    messages = deployment.receive()
    event = sqs_event(deployment.queue_url, messages)
    max_attempts = services.queue.max_attempts  # type: ignore[attr-defined]
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = str(max_attempts)
    result = lambda_handlers.worker_handler(event, Context())
    assert result == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    assert [(kind, payload) for kind, payload, _ in told] == [("no_such_kind", {"n": 7})]
    assert "no handler" in told[0][2]
    dead = deployment.receive(deployment.dead_letter_url)
    assert len(dead) == 1
    assert "no handler" in json.loads(dead[0]["Body"])["error"]


def test_a_job_whose_workers_kept_dying_reaches_the_dead_letter_hook(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = deployment.runtime.services
    told: list[tuple[str, dict[str, Any], str]] = []
    monkeypatch.setattr(services.orchestrator, "on_dead_letter", lambda *args: told.append(args))
    services.queue.enqueue("dispatch", {"run_id": "r1", "issue": 3})
    messages = deployment.receive()
    event = sqs_event(deployment.queue_url, messages)
    max_attempts = services.queue.max_attempts  # type: ignore[attr-defined]
    # one receive more than the attempts: every earlier worker died mid-job
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = str(max_attempts + 1)

    result = lambda_handlers.worker_handler(event, Context())

    assert result == {"batchItemFailures": []}
    assert [(kind, payload) for kind, payload, _ in told] == [
        ("dispatch", {"run_id": "r1", "issue": 3})
    ]
    assert "workers stopped" in told[0][2]
    (dead,) = deployment.receive(deployment.dead_letter_url)
    assert json.loads(dead["Body"])["kind"] == "dispatch"


@dataclass
class ShortContext(Context):
    """A Lambda context with little time left in the invocation."""

    left_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        """What Lambda's context says."""
        return self.left_ms


def test_a_record_that_might_not_finish_in_time_is_put_back_without_an_attempt(
    deployment: Deployment,
) -> None:
    services = deployment.runtime.services
    services.queue.enqueue("no_such_kind", {"n": 1})
    messages = deployment.receive()

    result = lambda_handlers.worker_handler(
        sqs_event(deployment.queue_url, messages), ShortContext()
    )

    assert result == {"batchItemFailures": []}  # not failed: put back as a new message
    job = services.queue.lease(30)
    assert job is not None and job.payload == {"n": 1}
    assert job.attempts == 1, "the put-back cost an attempt"


def test_an_unreadable_message_fails_alone(deployment: Deployment) -> None:
    deployment.sqs.send_message(QueueUrl=deployment.queue_url, MessageBody="not a job")
    messages = deployment.receive()
    result = lambda_handlers.worker_handler(sqs_event(deployment.queue_url, messages), Context())
    assert result == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}


# --------------------------------------------------------------------------- reconcile


def test_reconcile_finds_a_merge_whose_webhook_was_lost(deployment: Deployment) -> None:
    github = deployment.github
    number = github.add_issue(REPO, "Fix the gauge", ["in-progress"])
    pr, sha = github.open_pull(REPO, f"valine/r1/{number}", f"Fixes #{number}")
    store = deployment.runtime.services.store
    task = Task(
        issue_number=number,
        title="Fix the gauge",
        state=TaskState.CHECKS_PASSED,
        pr_number=pr,
        head_sha=sha,
        checks_sha=sha,
    )
    run = store.create_run(
        Run(run_id="r1", repo=REPO, created_at=1.0, state=RunState.EXECUTING, tasks=(task,))
    )
    pushed = github.push(REPO, pr)  # a push whose pull_request.synchronize was lost
    result = lambda_handlers.reconcile_handler({"source": "aws.events"}, Context())
    assert result == {"pulls_read": 1}
    moved = store.get_run(run.run_id).tasks[0]
    assert (moved.state, moved.head_sha, moved.checks_sha) == (
        TaskState.CHECKS_PENDING,
        pushed,
        None,
    )
    # Nothing changed since: a second reconcile reads the PR and writes nothing.
    version = store.get_run(run.run_id).version
    assert lambda_handlers.reconcile_handler({}, Context()) == {"pulls_read": 1}
    assert store.get_run(run.run_id).version == version


class FixedClock:
    """A clock standing at one moment."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        """The moment."""
        return self.at


def test_the_schedule_tick_enqueues_the_due_slot_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EventBridge's every-minute ``{"valine": "schedule"}``: the same tick as serve's."""
    config = Path(os.environ["VALINE_CONFIG"])
    config.write_text(
        config.read_text()
        + '\n[schedule]\ntimezone = "UTC"\nplan = "0 9 1 1 *"\nchannel_id = "5"\n'
    )
    slot = datetime(datetime.now(UTC).year + 1, 1, 1, 9, 0, tzinfo=UTC).timestamp()
    runtime = LambdaRuntime(configure_logs=False)
    runtime.services.clock = FixedClock(slot + 30)  # the use cases' clock, which it reads
    monkeypatch.setattr(lambda_handlers, "_runtime", runtime)

    first = lambda_handlers.reconcile_handler({"valine": "schedule"}, Context())
    again = lambda_handlers.reconcile_handler({"valine": "schedule"}, Context())

    assert first == {"enqueued": [f"plan:{int(slot)}"]}
    assert again == {"enqueued": []}
    messages = deployment.receive()
    assert [json.loads(m["Body"])["kind"] for m in messages] == ["schedule"]
    assert json.loads(messages[0]["Body"])["payload"] == {"what": "plan", "slot": slot}


# --------------------------------------------------------------------------- adapters


def test_request_from_event_joins_repeated_headers_and_lowercases_names() -> None:
    event = api_event("/github/webhook", b"{}", {"content-type": "application/json"})
    event["multiValueHeaders"]["X-Forwarded-For"] = ["203.0.113.7", "198.51.100.2"]
    event["headers"]["X-Forwarded-For"] = "198.51.100.2"
    request = request_from_event(event)
    assert request.method == "POST"
    assert request.path == "/github/webhook"
    assert request.header("x-forwarded-for") == "203.0.113.7, 198.51.100.2"
    assert request.header("X-FORWARDED-FOR") == request.headers["x-forwarded-for"]
    assert all(name == name.lower() for name in request.headers)
    assert request.body == b"{}"


def test_request_from_event_without_multi_value_headers() -> None:
    event = api_event("/discord", "é".encode(), {"content-type": "text/plain"})
    event["multiValueHeaders"] = None
    request = request_from_event(event)
    assert request.header("content-type") == "text/plain"
    assert request.body == "é".encode()


def test_a_greedy_resource_routes_by_path() -> None:
    event = api_event("/discord", b"", {})
    event["resource"] = "/{proxy+}"
    assert request_from_event(event).path == "/discord"


def test_proxy_response_shape() -> None:
    result = proxy_response(Response(202, b'{"ok":true}'))
    assert result == {
        "statusCode": 202,
        "headers": {"content-type": "application/json"},
        "body": '{"ok":true}',
        "isBase64Encoded": False,
    }


# --------------------------------------------------------------------------- cold start


def test_importing_the_handlers_loads_no_aws_or_http_client() -> None:
    """Nor graphql-core or the stand-ins: the testing kit stays off the Lambda path."""
    code = (
        "import sys, valine.runtime.lambda_handlers\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'httpx', 'granian', 'gidgethub',"
        " 'graphql', 'valine.testing', 'cronsim') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_ping_loads_no_aws_or_http_client(tmp_path: Path) -> None:
    key = SigningKey.generate()
    body = interaction(kind=1)
    event = api_event("/discord", body, discord_headers(key, body))
    code = (
        "import json, sys\n"
        "from valine.runtime.lambda_handlers import discord_handler\n"
        "result = discord_handler(json.loads(sys.stdin.read()), None)\n"
        "loaded = [m for m in ('boto3', 'botocore', 'httpx', 'granian', 'gidgethub', 'sqlite3',"
        " 'valine.metrics', 'cronsim', 'zoneinfo') if m in sys.modules]\n"
        "print(json.dumps({'status': result['statusCode'], 'body': result['body'],"
        " 'loaded': loaded}))"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
        "VALINE_STORE": "dynamodb://valine-orchestrator-test",
        "VALINE_SECRETS_ARN": "arn:aws:secretsmanager:us-west-2:123456789012:secret:unused",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: a call would fail
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert (report["status"], json.loads(report["body"])) == (200, {"type": 1})
    assert report["loaded"] == []


# --------------------------------------------------------------------------- one transaction


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every AWS API call this process makes, as (service, operation), in order."""
    import botocore.client

    calls: list[tuple[str, str]] = []
    original = botocore.client.BaseClient._make_api_call

    def traced(self: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((self.meta.service_model.service_name, operation))
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", traced)
    return calls


def _endpoint(deployment: Deployment) -> Any:
    """The Discord route's handler of the container's app (the transactional endpoint)."""
    return lambda_handlers.runtime().app(with_secret=False).routes["/discord"].handler


def _rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, more: str, *, rate_limit: int = 10
) -> None:
    """A new container whose rules file adds ``more`` to the deployment's."""
    config = tmp_path / "more.toml"
    config.write_text(
        f'[discord]\nguild_ids = ["4"]\nrate_limit = {rate_limit}\n\n'
        f'[permissions.plan]\nusers = ["42"]\n{more}'
    )
    monkeypatch.setenv("VALINE_CONFIG", str(config))
    monkeypatch.setattr(lambda_handlers, "_runtime", LambdaRuntime(configure_logs=False))


def _plan(deployment: Deployment, body: bytes | None = None) -> tuple[int, Any]:
    body = body or interaction(name="plan")
    return answer(lambda_handlers.discord_handler(discord_event(deployment.key, body), Context()))


def _declare_secret_keys(monkeypatch: pytest.MonkeyPatch, keys: str) -> None:
    """A new container told which keys its secret holds, as the template tells it."""
    monkeypatch.setenv("VALINE_SECRET_KEYS", keys)
    monkeypatch.setattr(lambda_handlers, "_runtime", LambdaRuntime(configure_logs=False))


#: What the template declares for the fixture's secret (an empty App key left out).
DECLARED = "DISCORD_BOT_TOKEN,GITHUB_TOKEN,GITHUB_WEBHOOK_SECRET,"


def test_a_deferred_command_commits_its_writes_in_one_transaction(
    deployment: Deployment, aws_calls: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interaction id, the rate limit, the job's dedupe key, the job itself (an outbox
    item), the audit entry and the check that no run is active (the repository's lock is
    absent) are one TransactWriteItems. With the secret's keys declared: one client
    (DynamoDB), one call."""
    _declare_secret_keys(monkeypatch, DECLARED)
    assert _plan(deployment) == (200, {"type": 5})
    assert aws_calls == [("dynamodb", "TransactWriteItems")]
    assert set(lambda_handlers.runtime().services._aws_clients) == {"dynamodb"}
    assert _endpoint(deployment).replays == 0
    assert [json.loads(m["Body"])["kind"] for m in deployment.receive()] == ["plan"]
    audit = deployment.runtime.services.store.audit_trail()
    assert [(e.action, e.outcome) for e in audit] == [("plan", "accepted")]


def test_plan_while_a_run_is_active_shows_it_as_before(
    deployment: Deployment, aws_calls: list[tuple[str, str]]
) -> None:
    """The lock's check cancels the transaction (nothing written) and the interaction is
    answered again reading the lock: the active run is shown, nothing is enqueued or
    audited, and the caller's rate count and interaction id are taken once."""
    store = lambda_handlers.runtime().services.store
    task = Task(issue_number=1, title="Fix the gauge", state=TaskState.PENDING)
    store.create_run(Run(run_id="r20261125-k3f9qa", repo=REPO, created_at=1.0, tasks=(task,)))
    aws_calls.clear()
    body = interaction(name="plan")
    status, document = _plan(deployment, body)
    assert status == 200 and document["type"] == 4, document
    content = document["data"]["content"]
    assert "Run `r20261125-k3f9qa` is still planned" in content
    assert "finish or `/cancel` it before planning another" in content
    assert _endpoint(deployment).replays == 1
    dynamodb = [op for s, op in aws_calls if s == "dynamodb"]
    assert dynamodb[0] == "TransactWriteItems" and "GetItem" in dynamodb[1:], dynamodb
    assert deployment.receive() == []
    assert [e.action for e in store.audit_trail()] == []
    status, document = _plan(deployment, body)  # the same interaction again: a replay
    assert status == 200 and "already handled" in document["data"]["content"]


def test_plan_after_the_active_run_finished_is_deferred_in_one_call(
    deployment: Deployment, aws_calls: list[tuple[str, str]]
) -> None:
    """A lock released since: the check passes and the plan is accepted in one call."""
    store = lambda_handlers.runtime().services.store
    task = Task(issue_number=1, title="Fix the gauge", state=TaskState.PENDING)
    run = store.create_run(Run(run_id="r20261125-k3f9qa", repo=REPO, created_at=1.0, tasks=(task,)))
    store.save_run(replace(run, state=RunState.CANCELLED, finished_at=2.0))
    aws_calls.clear()
    assert _plan(deployment) == (200, {"type": 5})
    assert [op for s, op in aws_calls if s == "dynamodb"] == ["TransactWriteItems"]
    assert _endpoint(deployment).replays == 0
    assert [json.loads(m["Body"])["kind"] for m in deployment.receive()] == ["plan"]


def test_a_replayed_interaction_is_answered_again_and_acted_on_once(
    deployment: Deployment, aws_calls: list[tuple[str, str]]
) -> None:
    body = interaction(name="plan")
    assert _plan(deployment, body) == (200, {"type": 5})
    status, document = _plan(deployment, body)
    assert status == 200 and "already handled" in document["data"]["content"]
    assert _endpoint(deployment).replays == 1
    assert len(deployment.receive()) == 1
    audit = deployment.runtime.services.store.audit_trail()
    assert [(e.action, e.outcome) for e in audit] == [("plan", "accepted")]


@pytest.fixture
def registry() -> Iterator[metrics.Registry]:
    """This process's measurements, in a registry of their own for the test."""
    fresh = metrics.Registry()
    previous = metrics.use(fresh)
    yield fresh
    metrics.use(previous)


def test_an_interaction_answered_again_is_counted_and_logged_once(
    deployment: Deployment, registry: metrics.Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """A replayed id's transaction is cancelled and the request answered again on the
    immediate path: only the answer sent is counted and logged, not the dropped one."""
    body = interaction(name="plan")
    with caplog.at_level(logging.INFO, logger="valine.discord"):
        _plan(deployment, body)
        _plan(deployment, body)
    assert _endpoint(deployment).replays == 1
    assert registry.value("commands", command="plan", outcome="deferred") == 1
    assert registry.value("commands", command="plan", outcome="replayed") == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "valine.discord"]
    assert [m for m in lines if m.startswith("command /plan")] == ["command /plan from 42"]
    assert sum("not acted on" in m for m in lines) == 1


def test_a_refusal_answered_again_is_counted_once(
    deployment: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    registry: metrics.Registry,
) -> None:
    """Over the rate limit the transaction is cancelled and the refusal given by the
    immediate path: the command is counted once per request, by the answer sent."""
    _rules(tmp_path, monkeypatch, "", rate_limit=1)
    _plan(deployment)
    _plan(deployment)
    assert _endpoint(deployment).replays == 1
    counted = sum(
        registry.value("commands", command="plan", outcome=outcome)
        for outcome in ("deferred", "answered")
    )
    assert counted == 2


def test_the_rate_limit_holds_inside_the_transaction(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rules(tmp_path, monkeypatch, "", rate_limit=2)
    answers = [_plan(deployment)[1] for _ in range(4)]
    assert answers[:2] == [{"type": 5}, {"type": 5}]
    assert all("Slow down" in a["data"]["content"] for a in answers[2:])
    assert len(deployment.receive()) == 2
    audit = lambda_handlers.runtime().services.store.audit_trail()
    # the refusal is audited once (coalesced), through the immediate path
    assert sorted((e.action, e.outcome) for e in audit) == [
        ("plan", "accepted"),
        ("plan", "accepted"),
        ("plan", "refused: rate limited"),
    ]


def test_an_expired_rate_count_restarts_in_the_same_interaction(
    deployment: Deployment, aws_calls: list[tuple[str, str]]
) -> None:
    """A count left from more than a minute ago is restarted by the transaction's retry
    with the write's alternative, not by answering the interaction again."""
    dynamodb = client("dynamodb", SERVICES.dynamodb_endpoint())
    dynamodb.put_item(
        TableName=deployment.names.dedupe,
        Item={
            "dedupe_key": {"S": "claim#rate:42"},
            "uses": {"N": "10"},
            "expires_at": {"N": "1000.5"},
            "ttl": {"N": "1001"},
        },
    )
    assert _plan(deployment) == (200, {"type": 5})
    assert _endpoint(deployment).replays == 0
    assert [op for s, op in aws_calls if op == "TransactWriteItems"] == ["TransactWriteItems"] * 2
    item = dynamodb.get_item(
        TableName=deployment.names.dedupe, Key={"dedupe_key": {"S": "claim#rate:42"}}
    )["Item"]
    assert item["uses"] == {"N": "1"} and float(item["expires_at"]["N"]) > 1000.5
    dynamodb.close()


def test_a_handler_inside_the_unit_of_work_cannot_reach_github_or_discord(
    deployment: Deployment,
) -> None:
    """A replayed handler must have no side effect: the clients refuse inside a unit."""
    from valine.infra.unit_of_work import OutsideCall, unit_of_work

    services = deployment.runtime.services
    services.refresh_secrets()
    with unit_of_work(lambda **_: None):
        with pytest.raises(OutsideCall):
            services.github  # noqa: B018 - the access is the call under test
        with pytest.raises(OutsideCall):
            services.discord  # noqa: B018
    assert services.github is services.github  # outside a unit: built once, cached


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("plan", {}),
        ("status", {}),
        ("help", {}),
        ("ship", {"run_id": "r20261125-k3f9qa"}),
        ("cancel", {"run_id": "r20261125-k3f9qa"}),
        ("approve", {"run_id": "r20261125-k3f9qa"}),
        ("retry", {"run_id": "r20261125-k3f9qa", "issue": "1"}),
        ("deploy", {"run_id": "r20261125-k3f9qa"}),
        ("digest", {}),
    ],
)
def test_no_command_calls_a_client_inside_the_unit_of_work(
    deployment: Deployment, name: str, options: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Every command answers inside its unit of work without GitHub or Discord: the
    guard would turn a call into the error answer and an OutsideCall in the log."""
    status, document = _plan(deployment, interaction(name=name, **options))
    assert status == 200
    assert "could not do that" not in json.dumps(document)
    assert "OutsideCall" not in caplog.text


def test_a_command_that_saves_a_run_flushes_its_claims_first(
    deployment: Deployment,
    aws_calls: list[tuple[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/approve saves the run (a conditional write the unit cannot collect): the claims
    are committed first, then the save and what follows it are written at once."""
    _rules(tmp_path, monkeypatch, '[permissions.approve]\nusers = ["42"]\n')
    store = lambda_handlers.runtime().services.store
    task = Task(issue_number=1, title="Fix the gauge", state=TaskState.PENDING)
    run = store.create_run(
        Run(run_id="r20261125-k3f9qa", repo=REPO, created_at=1.0, created_by="42", tasks=(task,))
    )
    aws_calls.clear()
    status, document = _plan(deployment, interaction(name="approve", run_id=run.run_id))
    assert status == 200 and document["type"] == 4, document
    assert store.get_run(run.run_id).state is RunState.APPROVED
    dynamodb = [op for s, op in aws_calls if s == "dynamodb"]
    # the claims (interaction id, rate limit) are one transaction before the run's save
    assert "UpdateItem" not in dynamodb
    assert dynamodb.index("TransactWriteItems") < dynamodb.index("PutItem"), dynamodb
    assert _endpoint(deployment).replays == 0
    kinds = sorted(json.loads(m["Body"])["kind"] for m in deployment.receive())
    assert "start_run" in kinds


# --------------------------------------------------------------------------- the outbox


def _sqs_messages(deployment: Deployment, expected: int) -> list[dict[str, Any]]:
    """The job queue's messages, without forwarding (moto may need a second receive)."""
    messages: list[dict[str, Any]] = []
    for _ in range(5):
        messages += deployment.receive(deployment.queue_url)
        if len(messages) >= expected:
            break
    return messages


def test_a_deferred_plan_reaches_the_worker_through_the_outbox_stream_and_runs_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/plan through the Discord function writes its job to the outbox table; the stream,
    read with the real dynamodbstreams client, feeds the forwarder, which sends it to SQS;
    the worker runs it. Forwarding is at least once: the same stream batch forwarded
    twice gives two messages, and the plan job run twice plans one run and edits the
    one deferred answer to the same message."""
    from valine.testing.discord_standin import DiscordStandIn

    number = deployment.github.add_issue(REPO, "Fix the gauge", ["ready"])
    with DiscordStandIn(application_id=APPLICATION_ID) as discord:
        monkeypatch.setenv("DISCORD_API_URL", discord.url)
        monkeypatch.setattr(lambda_handlers, "_runtime", LambdaRuntime(configure_logs=False))
        body = interaction(name="plan")
        token = json.loads(body)["token"]
        assert _plan(deployment, body) == (200, {"type": 5})
        stream = OutboxStream(deployment.streams, deployment.names.outbox)
        event = stream.event()
        assert [r["dynamodb"]["NewImage"]["kind"]["S"] for r in event["Records"]] == ["plan"]
        for _ in range(2):  # a retried stream batch: the job is sent twice
            assert lambda_handlers.outbox_handler(event, Context()) == {"batchItemFailures": []}
        messages = _sqs_messages(deployment, 2)
        assert len(messages) == 2
        assert messages[0]["Body"] == messages[1]["Body"]
        image = event["Records"][0]["dynamodb"]["NewImage"]
        assert messages[0]["Body"] == image["body"]["S"]  # the body SqsJobQueue would send
        worker = lambda_handlers.worker_handler(
            sqs_event(deployment.queue_url, messages), Context()
        )
        assert worker == {"batchItemFailures": []}
        store = lambda_handlers.runtime().services.store
        runs = store.recent_runs(REPO)
        assert len(runs) == 1 and [t.issue_number for t in runs[0].tasks] == [number]
        edits = [r for r in discord.requests if r.path.endswith("/messages/@original")]
        assert len(edits) == 2 and edits[0].json == edits[1].json
        original = discord.original(token)
        assert original is not None and runs[0].run_id in json.dumps(original)
        assert discord.followups(token) == []


def test_a_job_that_cannot_be_forwarded_is_named_and_the_batch_retried(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQS not answering: the forwarder names the first record not sent (the mapping
    retries the batch from it, then reports it to the dead-letter queue); the retry
    sends every job."""
    queue = lambda_handlers.runtime().services.queue
    for n in range(3):
        assert queue.enqueue("notify", {"run_id": f"r{n}"}, dedupe_key=f"k{n}")
    event = OutboxStream(deployment.streams, deployment.names.outbox).event()
    sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
    assert len(sequences) == 3
    real = deployment.runtime.services.aws_client("sqs")
    sent: list[str] = []

    class Flaky:
        """Answers the first send, then fails as an unreachable SQS does."""

        def send_message(self, **arguments: Any) -> Any:
            if sent:
                raise ConnectionError("sqs unreachable")
            sent.append(arguments["MessageBody"])
            return real.send_message(**arguments)

    services = lambda_handlers.runtime().services
    monkeypatch.setitem(services._aws_clients, "sqs", Flaky())
    result = lambda_handlers.outbox_handler(event, Context())
    assert result == {"batchItemFailures": [{"itemIdentifier": sequences[1]}]}
    monkeypatch.setitem(services._aws_clients, "sqs", real)
    assert lambda_handlers.outbox_handler(event, Context()) == {"batchItemFailures": []}
    bodies = [json.loads(m["Body"])["payload"]["run_id"] for m in _sqs_messages(deployment, 4)]
    assert sorted(bodies) == ["r0", "r0", "r1", "r2"]  # at least once: r0 went twice


def test_the_outbox_keeps_the_delay_and_the_dedupe_key(deployment: Deployment) -> None:
    queue = lambda_handlers.runtime().services.queue
    assert queue.enqueue("notify", {"run_id": "r1"}, dedupe_key="notify:r1", delay=120)
    assert not queue.enqueue("notify", {"run_id": "r1"}, dedupe_key="notify:r1")
    assert deployment.forward() == {"batchItemFailures": []}
    attributes = deployment.sqs.get_queue_attributes(
        QueueUrl=deployment.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert deployment.receive(deployment.queue_url) == []  # not due for two minutes


def test_the_discord_function_builds_no_sqs_client(deployment: Deployment) -> None:
    from valine.queue.outbox import OutboxJobQueue

    assert _plan(deployment) == (200, {"type": 5})
    services = lambda_handlers.runtime().services
    assert isinstance(services.queue, OutboxJobQueue)
    assert "sqs" not in services._aws_clients


# --------------------------------------------------------------------------- the declared secret


def test_without_declared_keys_a_command_reads_the_secret(
    deployment: Deployment, aws_calls: list[tuple[str, str]]
) -> None:
    assert _plan(deployment) == (200, {"type": 5})
    assert ("secretsmanager", "GetSecretValue") in aws_calls
    assert set(lambda_handlers.runtime().services._aws_clients) == {"dynamodb", "secretsmanager"}


def test_a_declared_secret_without_the_github_token_refuses_plan_without_reading_it(
    deployment: Deployment, aws_calls: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The missing-setting answer comes from the declared keys: no Secrets Manager call,
    and the answer names the setting, never a value."""
    _declare_secret_keys(monkeypatch, "DISCORD_BOT_TOKEN,,GITHUB_WEBHOOK_SECRET,")
    status, document = _plan(deployment)
    assert status == 200 and document["type"] == 4
    content = document["data"]["content"]
    assert "GITHUB_TOKEN" in content and "(declared)" not in content
    assert not any(service == "secretsmanager" for service, _ in aws_calls)
    assert deployment.receive() == []


def test_the_worker_still_reads_the_secret_when_keys_are_declared(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The declaration stands in for the secret in the missing-setting check only: jobs
    use the secret's values (a webhook is verified with the real secret)."""
    _declare_secret_keys(monkeypatch, DECLARED)
    body = b'{"zen": "Keep it logically awesome."}'
    headers = github_headers(body, "ping", secret=deployment.webhook_secret)
    event = api_event("/github/webhook", body, headers)
    assert answer(lambda_handlers.github_handler(event, Context()))[0] == 200


@pytest.mark.parametrize("keys", ["GITHUB_TOKEN,VALINE_STORE", "NOT_A_SETTING"])
def test_a_declaration_naming_anything_but_a_secret_setting_is_refused(keys: str) -> None:
    from valine.core.errors import ConfigurationError
    from valine.runtime.secrets import declared_secret_keys

    with pytest.raises(ConfigurationError, match="VALINE_SECRET_KEYS"):
        declared_secret_keys({"VALINE_SECRET_KEYS": keys})
    assert declared_secret_keys({}) is None
    assert declared_secret_keys({"VALINE_SECRET_KEYS": ",GITHUB_TOKEN,"}) == {"GITHUB_TOKEN"}
