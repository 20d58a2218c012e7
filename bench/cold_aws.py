"""The AWS side of the cold-start rows: a deferred command through the Discord Lambda.

A deferred ``/plan`` on Lambda verifies the signature and commits the interaction id's
claim, the caller's rate limit, the job's dedupe key, the job (an item of the outbox
table), the audit entry and the check that no run is active in one DynamoDB transaction:
one client, one call. The environment is the template's for the Discord function
(``VALINE_OUTBOX_TABLE``, ``VALINE_SECRET_KEYS``); SQS and Secrets Manager are still
served, as the other functions use them. To time that honestly the fresh process talks
to real servers on loopback, each in its own process:

* **DynamoDB Local** (AWS's own implementation, ``make aws-local``), in memory, with the
  deployment's tables (``valine.runtime.aws_tables``);
* **moto's server** (``moto_server``, a dev dependency) for SQS (the JSON protocol boto3
  speaks) and Secrets Manager, the job queue, its dead-letter queue and the secret.

The floor of that row is a fresh interpreter that imports PyNaCl, verifies one signature,
builds one boto3 DynamoDB client and makes one ``PutItem`` on the same DynamoDB Local.

DynamoDB Local is a Java process: its JIT compiles each request path only after it has
served it many times, and until then a call it has seen a few times costs it several
times what it costs warm (a deferred command's first ``TransactWriteItems`` took 24-70 ms
in a fresh process after 1-6 earlier ones, 10 ms once it had served 400). A row measures
the client's cold start, not the local server's, so before the measured rounds every AWS
row makes its own calls :data:`WARM_CALLS` times from one warm process
(:data:`WARM_FLOOR`, :func:`warm_handler`), the floors' ``PutItem`` as often as the
handlers' requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scale import _dynamodb_folder, _free_port, dynamodb_client, dynamodb_local

PREFIX = "valine-orchestrator-bench"
REGION = "us-west-2"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": REGION,
}
MOTO_START_TIMEOUT = 30.0

#: The floor of a deferred command: interpreter + PyNaCl verify + one boto3 client, one call.
COLD_FLOOR_BOTO3 = """\
import os, sys, uuid
from nacl.signing import VerifyKey
VerifyKey(bytes.fromhex(os.environ["BENCH_KEY"])).verify(
    os.environ["BENCH_TIMESTAMP"].encode() + sys.stdin.buffer.read(),
    bytes.fromhex(os.environ["BENCH_SIGNATURE"]),
)
import boto3
client = boto3.client("dynamodb")
client.put_item(TableName=os.environ["BENCH_TABLE"],
                Item={"dedupe_key": {"S": "floor#" + uuid.uuid4().hex}})
"""

#: How many times each AWS row's calls are made, unmeasured, before the measured rounds.
WARM_CALLS = 300

#: The floors' warm-up: one client making the floor's ``PutItem`` BENCH_WARM_CALLS times.
WARM_FLOOR = """\
import os, uuid
import boto3
client = boto3.client("dynamodb")
for _ in range(int(os.environ["BENCH_WARM_CALLS"])):
    client.put_item(TableName=os.environ["BENCH_TABLE"],
                    Item={"dedupe_key": {"S": "floor#" + uuid.uuid4().hex}})
"""


def warm_handler(handler: str, status: int) -> str:
    """The warm-up of a Lambda row: one process where ``handler`` answers every API
    Gateway event of its stdin (one per line), each with ``status`` (exit 1 otherwise)."""
    return (
        "import json, sys\n"
        f"from valine.runtime.lambda_handlers import {handler}\n"
        "for line in sys.stdin.buffer:\n"
        f"    result = {handler}(json.loads(line), None)\n"
        f"    if result['statusCode'] != {status}:\n"
        "        sys.exit(f'unexpected answer: {result}')\n"
    )


#: The Discord function answering one deferred command (type 5 means deferred).
COLD_LAMBDA_DEFERRED = """\
import json, sys
from valine.runtime.lambda_handlers import discord_handler
result = discord_handler(json.load(sys.stdin), None)
ok = result["statusCode"] == 200 and json.loads(result["body"]) == {"type": 5}
sys.exit(0 if ok else f"unexpected answer: {result}")
"""


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """``moto_server`` in its own process on a free loopback port; yields the endpoint."""
    import boto3

    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        probe = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        deadline = time.monotonic() + MOTO_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise SystemExit("bench: moto_server exited at start")
            try:
                probe.list_queues()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise SystemExit("bench: moto_server did not answer") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def local_aws(workdir: Path) -> Iterator[dict[str, str]]:
    """DynamoDB Local and moto's server with a deployment's tables, queues and secret.

    Yields the environment of a Discord function configured against them (as the SAM
    template configures it on AWS, endpoints aside).
    """
    import boto3

    from valine.runtime.aws_tables import create_tables

    data = Path(tempfile.mkdtemp(prefix="valine-cold-ddb-", dir=workdir))
    with dynamodb_local(data) as dynamodb, moto_server() as moto:
        create_tables(dynamodb_client(dynamodb), PREFIX)
        sqs = boto3.client(
            "sqs",
            endpoint_url=moto,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        dead = sqs.create_queue(QueueName=f"{PREFIX}-dlq")["QueueUrl"]
        queue = sqs.create_queue(QueueName=f"{PREFIX}-jobs")["QueueUrl"]
        secrets = boto3.client(
            "secretsmanager",
            endpoint_url=moto,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        arn = secrets.create_secret(
            Name=f"{PREFIX}/secret",
            SecretString=json.dumps(
                {
                    "GITHUB_TOKEN": "bench-token-never-sent",
                    "DISCORD_BOT_TOKEN": "bench-bot-token-never-sent",
                }
            ),
        )["ARN"]
        rules = workdir / "cold-aws.toml"
        rules.write_text(
            '[permissions.plan]\nroles = ["7"]\n[discord]\nguild_ids = ["4"]\nrate_limit = 1000\n'
        )
        yield {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
            "AWS_ENDPOINT_URL_SQS": moto,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto,
            "AWS_EC2_METADATA_DISABLED": "true",
            "GITHUB_REPOSITORY": "bench/repo",
            "VALINE_CONFIG": str(rules),
            "VALINE_STORE": f"dynamodb://{PREFIX}",
            "VALINE_QUEUE_URL": queue,
            "VALINE_DEAD_LETTER_URL": dead,
            "VALINE_SECRETS_ARN": arn,
            # The Discord function's (template.yaml): jobs go to the outbox, and the
            # secret's keys are declared, so a command reads no secret.
            "VALINE_OUTBOX_TABLE": f"{PREFIX}-outbox",
            "VALINE_SECRET_KEYS": "DISCORD_BOT_TOKEN,GITHUB_TOKEN,,",
            "BENCH_TABLE": f"{PREFIX}-dedupe",
        }


def available() -> bool:
    """True when DynamoDB Local (``make aws-local``), Java and ``moto_server`` are here."""
    try:
        _dynamodb_folder()
    except SystemExit:
        return False
    moto = Path(sys.executable).with_name("moto_server")
    return shutil.which("java") is not None and moto.is_file()


def plan_body() -> bytes:
    """A ``/plan`` interaction with fresh ids (each run is a new interaction)."""
    document: dict[str, Any] = {
        "id": str(uuid.uuid4().int)[:18],
        "application_id": "1100000000000000000",
        "type": 2,
        "token": "bench-token-" + uuid.uuid4().hex,
        "version": 1,
        "member": {"user": {"id": str(uuid.uuid4().int)[:17], "username": "bench"}, "roles": ["7"]},
        "channel_id": "3",
        "guild_id": "4",
        "data": {"id": "5", "name": "plan", "type": 1, "options": []},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def environment_keys() -> tuple[str, ...]:
    """Variables a cold process must not inherit (they could point boto3 elsewhere)."""
    return tuple(k for k in os.environ if k.startswith("AWS_"))
