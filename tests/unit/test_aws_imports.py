"""The AWS adapters cost nothing to import, the Lambda paths load only what they need,
and the DynamoDB adapter never scans a table.

Importing ``valine.store.dynamodb`` or ``valine.queue.sqs`` must not load boto3 or
botocore (the Lambda cold start counts every import, docs/benchmarks.md; clients are built on
first use). A Discord PING loads the handler, the settings, the app and the Discord
endpoint, and none of the use cases; a deferred command loads the use cases but not the
webhook side (the GitHub events and readers, the tracking rules, the check pictures), the
digest or the deployment rules: each is checked in a fresh process against the list of
what it may load. And ``/status`` must stay flat as runs accumulate, so the DynamoDB adapter
reads through keys and indexes only: no Scan anywhere in its source.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

import valine
from aws_local import (  # noqa: F401 - aws_test_environment: a session fixture, registered here
    REGION,
    SERVICES,
    aws_test_environment,
    client,
    unique_prefix,
)
from helpers import discord_headers, interaction
from valine.runtime.aws_tables import create_tables, delete_tables

SOURCES = Path(valine.__file__).parent
AWS_MODULES = ["valine.store.dynamodb", "valine.queue.sqs"]
SDK_PACKAGES = {"boto3", "botocore", "s3transfer"}


@pytest.mark.parametrize("module", AWS_MODULES)
def test_importing_an_aws_adapter_loads_no_aws_sdk(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SDK_PACKAGES)!r})\n"
        "print(loaded)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCES.parent)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{module} imported {result.stdout.strip()}"


def _scan_uses(path: Path) -> list[str]:
    """Every place in ``path``'s code (docstrings and comments aside) that could be a Scan."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.lower() in {"scan", "parallel_scan"}:
            uses.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id.lower() == "scan":
            uses.append(f"line {node.lineno}: {node.id}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and node.value.strip().lower() in {"scan", "dynamodb.scan"}
        ):
            uses.append(f"line {node.lineno}: {node.value!r}")  # get_paginator("scan")...
    return uses


def test_the_dynamodb_adapter_never_scans() -> None:
    path = SOURCES / "store" / "dynamodb.py"
    assert _scan_uses(path) == []
    # The plain-text check the design asks for, too: no scan( call in the source at all.
    assert "scan(" not in path.read_text().lower()


def test_the_scan_detector_finds_scans(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstrings may say Scan."""\n'
        "def f(client):\n"
        '    """Scan is mentioned here too."""\n'
        "    client.scan(TableName='t')\n"
        "    client.get_paginator('scan')\n"
        "    return client.query(ScanIndexForward=False)\n"
    )
    assert _scan_uses(sample) == ["line 4: .scan", "line 5: 'scan'"]


# --------------------------------------------------------------------------- the Lambda paths

#: What a Discord PING on Lambda may load of valine: the handler, the settings, the app, the
#: Discord endpoint and its verifier. No use case, no store, no queue.
PING_MODULES = frozenset(
    {
        "valine",
        "valine.app",
        "valine.core",
        "valine.core.errors",
        "valine.core.records",
        "valine.core.shape",
        "valine.discord",
        "valine.discord.interactions",
        "valine.discord.verify",
        "valine.http",
        "valine.infra",
        "valine.infra.heap",  # the first request's collector paused, then the heap frozen
        "valine.infra.unit_of_work",  # every interaction's writes are one unit, a PING's none
        "valine.logs",
        "valine.runtime",
        "valine.runtime.aws",
        "valine.runtime.config",
        "valine.runtime.lambda_handlers",
        "valine.runtime.secrets",
        "valine.runtime.wiring",
    }
)
#: What a deferred command (``/plan``) may load besides: the router and the use cases, the
#: domain they decide with, and the AWS adapters (any module of ``valine.store``,
#: ``valine.queue`` and ``valine.infra`` but the SQLite ones).
COMMAND_MODULES = PING_MODULES | {
    "valine.log_format",  # a command is logged; a PING is not, so logging stays unloaded
    "valine.core.authz",
    "valine.core.commands",
    "valine.core.executors",
    "valine.core.measures",
    "valine.core.models",
    "valine.core.planner",
    "valine.core.policy",
    "valine.core.render",
    "valine.core.replies",
    "valine.core.states",
    "valine.core.threads",
    "valine.discord.render",
    "valine.metrics",
    "valine.ports",
    "valine.runtime.repositories",
    "valine.usecases",
    "valine.usecases.base",
    "valine.usecases.commanding",
    "valine.usecases.deploying",
    "valine.usecases.execution",
    "valine.usecases.failures",
    "valine.usecases.interactions",
    "valine.usecases.notifications",
    "valine.usecases.planning",
    "valine.usecases.registry",
    "valine.usecases.rhythm",
    "valine.usecases.router",
    "valine.usecases.shipping",
    "valine.usecases.tracking",
}
#: Standard-library modules a PING does without, each costing its cold start more than a
#: millisecond (uuid and random load with the first transaction, dataclasses with the
#: domain, tomllib with a rules file, logging with the first record: a PING logs nothing).
HEAVY_STDLIB = (
    "uuid", "random", "dataclasses", "inspect", "tomllib", "email", "ssl", "sqlite3",
    "logging", "threading",
)  # fmt: skip
AWS_ADAPTER_PACKAGES = frozenset({"valine.store", "valine.queue", "valine.infra"})
SQLITE_MODULES = frozenset({"valine.store.sqlite", "valine.queue.sqlite", "valine.infra.sqlite"})
#: Never on a command's path: a webhook's, the digest's and the deployment's modules (they
#: load on the first delivery, ``/digest`` or deployment that needs them).
WEBHOOK_SIDE = frozenset(
    {
        "valine.core.checks",
        "valine.core.deploy",
        "valine.core.digest",
        "valine.core.events",
        "valine.core.liveness",
        "valine.core.tracking",
        "valine.github",
        "valine.github.events",
        "valine.github.webhooks",
    }
)
#: The fresh process: the Lambda Discord handler answering one API Gateway event.
HANDLE = """\
import json, sys
from valine.runtime.lambda_handlers import discord_handler
result = discord_handler(json.load(sys.stdin), None)
print(json.dumps({"status": result["statusCode"], "body": json.loads(result["body"]),
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "valine"),
                  "stdlib": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def _event(key: SigningKey, body: bytes) -> dict[str, object]:
    """A minimal API Gateway REST (v1) proxy event of a signed ``POST /discord``."""
    headers = discord_headers(key, body)
    return {
        "resource": "/discord",
        "path": "/discord",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def _fresh(
    code: str, env: dict[str, str], stdin: str = "", *args: str, cwd: Path | None = None
) -> Any:
    """The JSON that ``code`` prints last, run in a fresh interpreter on these sources
    with only ``env`` (and ``PATH``) in its environment; fails the test if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SOURCES.parent), **env},
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _handle_cold(event: dict[str, object], env: dict[str, str], cwd: Path) -> dict[str, object]:
    """What a fresh Lambda process answers to ``event``, and the valine modules it loaded."""
    report: dict[str, object] = _fresh(
        f"HEAVY = {HEAVY_STDLIB!r}\n{HANDLE}", env, json.dumps(event), cwd=cwd
    )
    return report


def _beyond(loaded: object, allowed: frozenset[str], *, aws_adapters: bool = False) -> list[str]:
    """The loaded modules a path may not load: those outside ``allowed`` (with
    ``aws_adapters``, any AWS adapter module is allowed too)."""
    assert isinstance(loaded, list)
    return [m for m in loaded if m not in allowed and not (aws_adapters and _aws_adapter(m))]


def _aws_adapter(module: str) -> bool:
    """True for a module of ``valine.store``, ``valine.queue`` or ``valine.infra`` that is
    not a SQLite one (a Lambda holds no SQLite file)."""
    package = module.rsplit(".", 1)[0] if module.count(".") > 1 else module
    return package in AWS_ADAPTER_PACKAGES and module not in SQLITE_MODULES


def test_a_ping_loads_only_the_handler_settings_app_and_endpoint(tmp_path: Path) -> None:
    key = SigningKey.generate()
    env = {
        "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
        "VALINE_STORE": "dynamodb://valine-orchestrator-test",
        "VALINE_SECRETS_ARN": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:unused",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: a call would fail
    }
    report = _handle_cold(_event(key, interaction(kind=1)), env, tmp_path)
    assert (report["status"], report["body"]) == (200, {"type": 1})
    assert _beyond(report["loaded"], PING_MODULES) == []
    assert report["stdlib"] == []


@pytest.fixture
def lambda_environment(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A deployment's tables, queues and secret on the local stand-ins, and the Discord
    function's environment (as the template sets it, loopback endpoints aside)."""
    dynamodb_endpoint = SERVICES.dynamodb_endpoint()
    moto_endpoint = SERVICES.sqs_endpoint()  # moto's server: SQS and Secrets Manager
    prefix = unique_prefix()
    dynamodb = client("dynamodb", dynamodb_endpoint)
    sqs = client("sqs", moto_endpoint)
    secrets = client("secretsmanager", moto_endpoint)
    create_tables(dynamodb, prefix)
    dead = sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName=f"{prefix}-jobs")["QueueUrl"]
    secret = secrets.create_secret(
        Name=f"{prefix}/secret",
        SecretString=json.dumps({"GITHUB_TOKEN": "token-" + uuid.uuid4().hex}),
    )["ARN"]
    config = tmp_path / "valine.toml"
    config.write_text('[discord]\nguild_ids = ["4"]\n\n[permissions.plan]\nroles = ["7"]\n')
    try:
        yield {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
            "AWS_ENDPOINT_URL_SQS": moto_endpoint,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "GITHUB_REPOSITORY": "octo/widgets",
            "VALINE_CONFIG": str(config),
            "VALINE_STORE": f"dynamodb://{prefix}",
            "VALINE_QUEUE_URL": queue,
            "VALINE_DEAD_LETTER_URL": dead,
            "VALINE_SECRETS_ARN": secret,
        }
    finally:
        for url in (queue, dead):
            sqs.delete_queue(QueueUrl=url)
        secrets.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        delete_tables(dynamodb, prefix)
        for aws in (dynamodb, sqs, secrets):
            aws.close()


def test_a_deferred_command_loads_no_webhook_digest_or_deployment_module(
    lambda_environment: dict[str, str], tmp_path: Path
) -> None:
    key = SigningKey.generate()
    env = {**lambda_environment, "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex()}
    report = _handle_cold(_event(key, interaction(name="plan")), env, tmp_path)
    assert (report["status"], report["body"]) == (200, {"type": 5})
    loaded = report["loaded"]
    assert isinstance(loaded, list)
    assert sorted(WEBHOOK_SIDE & set(loaded)) == []
    assert _beyond(loaded, COMMAND_MODULES, aws_adapters=True) == []
    # The use cases did run: the router and the planning concern answered.
    assert {"valine.usecases.router", "valine.usecases.planning"} <= set(loaded)


def test_the_path_check_names_what_a_path_may_not_load() -> None:
    loaded = ["valine.http", "valine.core.events", "valine.store.dynamodb", "valine.store.sqlite"]
    assert _beyond(loaded, PING_MODULES) == [
        "valine.core.events",
        "valine.store.dynamodb",
        "valine.store.sqlite",
    ]
    assert _beyond(loaded, COMMAND_MODULES, aws_adapters=True) == [
        "valine.core.events",
        "valine.store.sqlite",
    ]


#: A fresh process builds two AWS clients and reports the frozen heap after each.
FREEZE = """\
import gc, json
from valine.runtime.config import Settings
from valine.runtime.wiring import Services
services = Services(Settings.from_env({"VALINE_STORE": "dynamodb://valine-orchestrator-test"}))
before = gc.get_freeze_count()
services.aws_client("dynamodb")
first = gc.get_freeze_count()
services.aws_client("sqs")
print(json.dumps([before, first, gc.get_freeze_count()]))
"""


def test_the_heap_is_frozen_once_after_the_first_aws_client() -> None:
    """botocore and its first service model are not walked by every later collection
    (a cold deferred command's one full collection); the freeze is done once only."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    before, first, second = _fresh(FREEZE, env)
    assert before == 0
    assert first > 10_000  # the modules loaded so far, botocore's among them
    assert second == first  # the second client froze nothing more


#: A fresh process answers PINGs through the Lambda handler and reports, for each, whether
#: the cyclic collector ran during the request and after it, and the frozen heap's size.
START_UP = """\
import gc, json, sys
from valine.runtime import lambda_handlers
if sys.argv[1] == "collector-off":
    gc.disable()
during = []
answer = lambda_handlers.LambdaRuntime._http
def observed(self, event, context, *, with_secret):
    during.append(gc.isenabled())
    if sys.argv[1] == "first-raises" and len(during) == 1:
        raise RuntimeError("the first request failed")
    return answer(self, event, context, with_secret=with_secret)
lambda_handlers.LambdaRuntime._http = observed
event = json.load(sys.stdin)
report = []
for _ in range(2):
    try:
        status = lambda_handlers.discord_handler(event, None)["statusCode"]
    except RuntimeError:
        status = "raised"
    report.append([status, during[-1], gc.isenabled(), gc.get_freeze_count()])
print(json.dumps(report))
"""


def _start_up(mode: str) -> list[list[object]]:
    key = SigningKey.generate()
    env = {
        "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
        "VALINE_STORE": "dynamodb://valine-orchestrator-test",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    report: list[list[object]] = _fresh(
        START_UP, env, json.dumps(_event(key, interaction(kind=1))), mode
    )
    return report


def test_the_first_request_runs_with_the_collector_paused_then_freezes_the_heap() -> None:
    """A cold start does not walk, again and again, what the container will keep: the
    first request runs with the collector paused, and what it built is frozen after it
    (valine.infra.heap). Later requests run with the collector on, and freeze nothing."""
    (first, second) = _start_up("plain")
    status, collecting_during, collecting_after, frozen = first
    assert (status, collecting_during, collecting_after) == (200, False, True)
    assert isinstance(frozen, int) and frozen > 1_000  # the modules the PING loaded
    assert second == [200, True, True, frozen]


def test_a_first_request_that_raises_still_resumes_the_collector() -> None:
    (first, second) = _start_up("first-raises")
    assert first[:3] == ["raised", False, True]
    assert second[:3] == [200, True, True]


def test_a_collector_the_host_turned_off_stays_off() -> None:
    """The start-up pause changes nothing where the collector was off already."""
    report = _start_up("collector-off")
    assert [row[:3] for row in report] == [[200, False, False], [200, False, False]]
    assert [row[3] for row in report] == [0, 0]
