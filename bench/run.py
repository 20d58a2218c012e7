"""Latency and throughput of valine's acknowledgement paths, one run, one table.

What it measures and the targets: docs/benchmarks.md.

Two parts, both on this machine, both bounded, all traffic on loopback:

1. **In-process**: ``App.handle(Request)`` of the shared app (no HTTP), built by
   ``Services`` over a real SQLite file, timed per call with ``perf_counter_ns`` for a
   signed Discord PING, a signed ``/status`` command and a signed GitHub ``issues``
   delivery (a real ``@octokit/webhooks-examples`` payload, a unique delivery id per
   call, so every call writes a dedupe key and a job row).
2. **Local server**: ``valine serve`` in its own process; the shared webhook load
   generator (``../shared/bench/webhooks/loadgen.py``, run as a subprocess) replays
   signed GitHub deliveries at it, then a closed loop of signed Discord PINGs over
   keep-alive connections; the server's RSS is read before and after the load.

3. **Cold start** (of the Discord PING on Lambda): fresh processes, each timed from launch
   to exit, median of at least 15 runs: the floor (interpreter + ``nacl.signing`` + one
   verify), the Lambda Discord handler (import ``valine.runtime.lambda_handlers`` and
   answer one signed PING API Gateway event) and the local app (build it via ``Services``
   and answer one PING in-process), each printed as a ratio to the floor. With DynamoDB
   Local and moto: a deferred ``/plan`` against its floor (+ one boto3 client and call,
   ``bench/cold_aws.py``), and the GitHub function accepting one signed ``issues``
   delivery against its floor (HMAC check + JSON parse of the body + one boto3 client
   and ``PutItem``).

``--probot`` also runs ``../shared/bench/webhooks/run_probot.sh`` against the running
server (installs Probot from npm into /tmp/probotbench the first time) and prints the
ratio line it reports: the only fair comparison with Probot is one from the same run.

    .venv/bin/python bench/run.py [--duration 5] [--quick] [--json out.json] [--probot]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import http.client
import json
import math
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import cold_aws
import scale

from valine.testing import signing
from valine.testing.service import (
    HOST,
    Service,
    ServiceFailed,
    free_port,
    start_service,
    stop_service,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCH = ROOT.parent / "shared" / "bench" / "webhooks"
LOADGEN = SHARED_BENCH / "loadgen.py"
RUN_PROBOT = SHARED_BENCH / "run_probot.sh"
EXAMPLES = ROOT / ".cache" / "material" / "node_modules" / "@octokit" / "webhooks-examples"
EXAMPLES_INDEX = EXAMPLES / "api.github.com" / "index.json"

CONCURRENCY = 16
#: The repositories of loadgen's payloads (@octokit/webhooks-examples), served so each
#: delivery is verified, deduplicated and committed (an unserved one writes nothing).
SERVED_RULES = """
[[repositories]]
name = "Codertocat/Hello-World"

[[repositories]]
name = "octo-org/octo-repo"
"""
#: Bounds on everything that waits.
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
PROBOT_TIMEOUT_S = 900.0
MAX_DURATION_S = 120.0
MAX_CALLS = 1_000_000
COLD_TIMEOUT_S = 30.0
#: The targets (docs/benchmarks.md): a PING's Lambda cold start is at most this many times
#: its floor (PyNaCl), a deferred command's at most COLD_DEFERRED_TARGET times its floor
#: (PyNaCl + one boto3 client and call).
COLD_TARGET = 1.5
COLD_DEFERRED_TARGET = 1.1

#: The row labels of the table, in order (the smoke test looks for each one).
ROW_LABELS = (
    "in-process discord PING",
    "in-process discord /status",
    "in-process github issues webhook",
    "server github webhooks (loadgen)",
    "server discord PING",
    "server RSS idle / after / peak",
    "in-process discord /plan deferred",
)


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Latency:
    """Latency figures of one measured series, in microseconds, and its rate."""

    label: str
    n: int
    p50_us: float
    p99_us: float
    max_us: float
    per_s: float
    errors: int = 0
    concurrency: int = 1
    extra: str = ""


def nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``sorted_values`` (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def summarise(
    label: str,
    durations_ns: list[int],
    window_s: float,
    *,
    errors: int = 0,
    concurrency: int = 1,
    extra: str = "",
) -> Latency:
    """Percentiles of per-call durations (ns) and the rate over ``window_s`` seconds."""
    values = sorted(durations_ns)
    return Latency(
        label=label,
        n=len(values),
        p50_us=nearest_rank(values, 0.50) / 1000,
        p99_us=nearest_rank(values, 0.99) / 1000,
        max_us=(values[-1] / 1000) if values else 0.0,
        per_s=len(values) / window_s if window_s > 0 else 0.0,
        errors=errors,
        concurrency=concurrency,
        extra=extra,
    )


# --------------------------------------------------------------------------- signing


def discord_body(kind: int, command: str | None = None) -> bytes:
    """A Discord interaction body (``kind`` 1 PING, 2 application command), unique ids."""
    document: dict[str, Any] = {
        "id": str(uuid.uuid4().int)[:18],
        "application_id": "1100000000000000000",
        "type": kind,
        "token": "bench-token-" + uuid.uuid4().hex,
        "version": 1,
        "member": {"user": {"id": "42", "username": "bench"}, "roles": ["7"]},
        "channel_id": "3",
        "guild_id": "4",
    }
    if command is not None:
        document["data"] = {"id": "5", "name": command, "type": 1, "options": []}
    return json.dumps(document, separators=(",", ":")).encode()


def discord_signed(key: Any, body: bytes) -> dict[str, str]:
    """Lower-case headers of an interaction signed with the nacl ``SigningKey`` ``key``."""
    return {**signing.discord_headers(key, body), "content-length": str(len(body))}


def github_signed(secret: str, body: bytes, event: str, delivery: str) -> dict[str, str]:
    """Lower-case headers of a GitHub delivery signed with ``secret``, as Hookshot sends them."""
    return {
        **signing.github_headers(secret, event, body, delivery),
        "content-length": str(len(body)),
        "user-agent": "GitHub-Hookshot/bench",
        "x-github-hook-id": "1",
    }


def first_issues_example() -> bytes:
    """The first ``issues`` example of @octokit/webhooks-examples, as compact JSON."""
    if not EXAMPLES_INDEX.is_file():
        raise SystemExit(f"bench: {EXAMPLES_INDEX} missing: run `make material`")
    index = json.loads(EXAMPLES_INDEX.read_text())
    examples = {entry["name"]: entry["examples"] for entry in index}
    return json.dumps(examples["issues"][0], separators=(",", ":"), ensure_ascii=False).encode()


def unique_bodies(body: bytes, count: int) -> list[bytes]:
    """``count`` copies of a JSON object body, each made distinct by one more key.

    The webhook endpoint dedupes by the body's SHA-256, so a benchmark that resent one
    body would time duplicates after the first call.
    """
    return [body[:-1] + b',"bench_seq":%d}' % n for n in range(count)]


# --------------------------------------------------------------------------- in-process


def close_queue(queue: object) -> None:
    """Close the queue's database connections if it has any (not part of the port)."""
    close = getattr(queue, "close", None)
    if callable(close):
        close()


def time_calls(
    handle: Callable[[Any], Any], requests: Sequence[Any], warmup: int, expect: int
) -> tuple[list[int], float, int]:
    """Call ``handle`` on each request; returns (per-call ns after warmup, window s, errors).

    A call whose response status is not ``expect`` counts as an error (it is still timed),
    and so does a 202 that is not ``accepted`` (a delivery answered without a write).
    """
    for request in requests[:warmup]:
        handle(request)
    measured = requests[warmup:]
    durations = [0] * len(measured)
    statuses = [0] * len(measured)
    clock = time.perf_counter_ns
    gc.collect()
    start = clock()
    for i, request in enumerate(measured):
        t0 = clock()
        response = handle(request)
        durations[i] = clock() - t0
        accepted = expect != 202 or b'"accepted"' in response.body
        statuses[i] = response.status if accepted else -1
    window = (clock() - start) / 1e9
    return durations, window, sum(1 for s in statuses if s != expect)


def bench_in_process(workdir: Path, calls: int, warmup: int) -> list[Latency]:
    """Time ``App.handle`` for a PING, a ``/status`` command and an ``issues`` delivery."""
    from nacl.signing import SigningKey

    from valine import logs
    from valine.http import Request
    from valine.runtime.config import Settings
    from valine.runtime.wiring import Services

    key = SigningKey.generate()
    secret = secrets.token_hex(20)
    rules = workdir / "valine.toml"
    rules.write_text('[permissions.plan]\nusers = ["42"]\n')
    settings = Settings.from_env(
        {
            "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
            "GITHUB_WEBHOOK_SECRET": secret,
            # The issues example's repository, served so each delivery is persisted (an
            # unserved one is answered without a write). Never called: /status reads the
            # store, /plan only defers and enqueues.
            "GITHUB_REPOSITORY": "Codertocat/Hello-World",
            "GITHUB_TOKEN": "bench-token-never-sent",
            "VALINE_CONFIG": str(rules),
            "VALINE_STORE": f"sqlite:///{workdir}/inprocess.db",
            "VALINE_LOG_LEVEL": "WARNING",
        }
    )
    logs.configure(settings.log_level, settings.secret_values())
    services = Services(settings)
    services.store  # opened up front, as `valine serve` does  # noqa: B018
    app = services.app()
    total = warmup + calls

    def discord_requests(kind: int, command: str | None) -> list[Request]:
        out = []
        for _ in range(total):
            body = discord_body(kind, command)
            out.append(Request("POST", "/discord", discord_signed(key, body), body))
        return out

    issues = first_issues_example()
    github = [
        Request("POST", "/github/webhook", github_signed(secret, b, "issues", str(uuid.uuid4())), b)
        for b in unique_bodies(issues, total)
    ]
    series = (
        (ROW_LABELS[0], discord_requests(1, None), 200, ""),
        (ROW_LABELS[1], discord_requests(2, "status"), 200, "store read, embed"),
        (ROW_LABELS[6], discord_requests(2, "plan"), 200, "store read + queue write, type 5"),
        (ROW_LABELS[2], github, 202, f"{len(issues):,} B body, dedupe + job row"),
    )
    results = []
    for label, requests, expect, extra in series:
        durations, window, errors = time_calls(app.handle, requests, warmup, expect)
        results.append(summarise(label, durations, window, errors=errors, extra=extra))
    close_queue(services.queue)
    return results


def profile_webhook(workdir: Path, calls: int) -> str:
    """cProfile of ``calls`` in-process ``issues`` deliveries: the top functions by tottime."""
    import cProfile
    import io
    import pstats

    from valine.http import Request
    from valine.runtime.config import Settings
    from valine.runtime.wiring import Services

    secret = secrets.token_hex(20)
    settings = Settings.from_env(
        {
            "GITHUB_WEBHOOK_SECRET": secret,
            "GITHUB_REPOSITORY": "Codertocat/Hello-World",  # served: each delivery persisted
            "VALINE_STORE": f"sqlite:///{workdir}/profile.db",
        }
    )
    services = Services(settings)
    app = services.app()
    issues = first_issues_example()
    requests = [
        Request("POST", "/github/webhook", github_signed(secret, b, "issues", str(uuid.uuid4())), b)
        for b in unique_bodies(issues, calls + 50)
    ]
    for request in requests[:50]:
        app.handle(request)
    profiler = cProfile.Profile()
    profiler.enable()
    for request in requests[50:]:
        app.handle(request)
    profiler.disable()
    close_queue(services.queue)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    return out.getvalue()


# --------------------------------------------------------------------------- cold start

#: The floor: a fresh interpreter that imports PyNaCl and verifies one signature.
COLD_FLOOR = """\
import os, sys
from nacl.signing import VerifyKey
VerifyKey(bytes.fromhex(os.environ["BENCH_KEY"])).verify(
    os.environ["BENCH_TIMESTAMP"].encode() + sys.stdin.buffer.read(),
    bytes.fromhex(os.environ["BENCH_SIGNATURE"]),
)
"""
#: The Lambda Discord function: import the handler, answer one API Gateway event.
COLD_LAMBDA = """\
import json, sys
from valine.runtime.lambda_handlers import discord_handler
result = discord_handler(json.load(sys.stdin), None)
sys.exit(0 if result["statusCode"] == 200 and json.loads(result["body"]) == {"type": 1} else 1)
"""
#: The local server's app, built as `valine serve` builds it, answering in-process.
COLD_LOCAL = """\
import json, os, sys
from valine.http import Request
from valine.runtime.config import Settings
from valine.runtime.wiring import Services
app = Services(Settings.from_env(os.environ)).app()
headers = {"x-signature-ed25519": os.environ["BENCH_SIGNATURE"],
           "x-signature-timestamp": os.environ["BENCH_TIMESTAMP"],
           "content-type": "application/json"}
response = app.handle(Request("POST", "/discord", headers, sys.stdin.buffer.read()))
sys.exit(0 if response.status == 200 and json.loads(response.body) == {"type": 1} else 1)
"""

#: The floor of the GitHub function: interpreter + the HMAC check and JSON parse of the
#: delivery + one boto3 client and one PutItem (a webhook is persisted before its 2xx,
#: so one durable write belongs to the least it can do, as in the deferred command's).
COLD_FLOOR_WEBHOOK = """\
import hashlib, hmac, json, os, sys, uuid
body = sys.stdin.buffer.read()
mac = hmac.new(os.environ["BENCH_WEBHOOK_SECRET"].encode(), body, hashlib.sha256)
if not hmac.compare_digest("sha256=" + mac.hexdigest(), os.environ["BENCH_SIGNATURE_256"]):
    sys.exit("bad signature")
json.loads(body)
import boto3
client = boto3.client("dynamodb")
client.put_item(TableName=os.environ["BENCH_TABLE"],
                Item={"dedupe_key": {"S": "floor#" + uuid.uuid4().hex}})
"""
#: The GitHub function accepting one signed ``issues`` delivery (202, persisted).
COLD_LAMBDA_WEBHOOK = """\
import json, sys
from valine.runtime.lambda_handlers import github_handler
result = github_handler(json.load(sys.stdin), None)
ok = result["statusCode"] == 202 and json.loads(result["body"])["status"] == "accepted"
sys.exit(0 if ok else f"unexpected answer: {result}")
"""


@dataclass(frozen=True)
class ColdStart:
    """Whole-process wall times (launch to the answer, and to exit) of one cold-start
    variant, in ms."""

    label: str
    runs: int
    #: Launch to the answer (the end of the script's work: see COLD_PRELUDE).
    median_ms: float
    min_ms: float
    max_ms: float
    failures: int
    #: ``median_ms`` over the floor's.
    ratio: float = 1.0
    #: Launch to the process's exit (its teardown included), and over the floor's.
    exit_median_ms: float = 0.0
    exit_ratio: float = 1.0


def api_gateway_event(
    body: bytes, headers: dict[str, str], path: str = "/discord"
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event of a ``POST path`` (mixed-case header names)."""
    sent = {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}
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
        "requestContext": {"stage": "bench", "path": f"/bench{path}", "httpMethod": "POST"},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


#: Run first in every cold process: at the start of the interpreter's exit (after the
#: script's last statement, its ``sys.exit`` included; before the modules and the heap
#: are torn down) write the wall clock to stderr. A Lambda container is not torn down
#: after an invocation, so "to the answer" is what a cold start costs a user.
COLD_PRELUDE = (
    "import atexit, os, time\n"
    "atexit.register(lambda: os.write(2, b'\\nBENCH_ANSWERED %d\\n' % time.time_ns()))\n"
)


def time_process(
    code: str, stdin: bytes, env: dict[str, str], cwd: Path
) -> tuple[float, float, bool]:
    """Wall times (ms) of ``python -c code`` from launch to its answer (the end of its
    work, :data:`COLD_PRELUDE`) and to its exit, and whether it exited 0."""
    launched = time.time_ns()
    t0 = time.perf_counter_ns()
    done = subprocess.run(
        [sys.executable, "-c", COLD_PRELUDE + code],
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=COLD_TIMEOUT_S,
        check=False,
    )
    exited = (time.perf_counter_ns() - t0) / 1e6
    marks = [line for line in done.stderr.splitlines() if line.startswith(b"BENCH_ANSWERED ")]
    answered = (int(marks[-1].split()[1]) - launched) / 1e6 if marks else math.nan
    return answered, exited, done.returncode == 0 and bool(marks)


def bench_cold_start(workdir: Path, runs: int, *, aws: bool = True) -> list[ColdStart]:
    """Median whole-process times of the cold-start variants, each with its floor's ratio.

    The PING variants: the floor (PyNaCl), the Lambda PING and the local app PING. With
    ``aws`` (and DynamoDB Local and moto installed) also a deferred ``/plan`` through the
    Lambda handler against DynamoDB Local and moto's server, and its floor (PyNaCl + one
    boto3 client, one call): see ``bench/cold_aws.py``.

    The variants run interleaved (floor, Lambda, local, floor, ...) after one unmeasured
    round (which also writes any stale ``.pyc``, so no measured run compiles), so drift
    in the machine's load affects them alike. Every process gets the same minimal
    environment; the Lambda PING is configured as on AWS (DynamoDB store, a secret ARN)
    with every AWS endpoint on a closed loopback port, so a PING that tried to reach AWS
    would fail instead of leaving the machine.
    """
    with contextlib.ExitStack() as stack:
        aws_env = None
        if aws and cold_aws.available():
            aws_env = stack.enter_context(cold_aws.local_aws(workdir))
        return _cold_rounds(workdir, runs, aws_env)


class ColdVariant(NamedTuple):
    """One cold-start row: what its fresh process runs, on which input and environment."""

    label: str
    #: The process's script (after :data:`COLD_PRELUDE`).
    code: str
    #: A new stdin (and extra environment) for each run.
    make_input: Callable[[], tuple[bytes, dict[str, str]]]
    env: dict[str, str]
    #: Index of its floor in the variant list.
    floor: int
    #: For a row that calls local AWS servers: the script making its calls
    #: ``cold_aws.WARM_CALLS`` times before the measured rounds (stdin: one input per line).
    warm: str | None = None


def _cold_rounds(workdir: Path, runs: int, aws_env: dict[str, str] | None) -> list[ColdStart]:
    from nacl.signing import SigningKey

    key = SigningKey.generate()
    body = discord_body(1)
    headers = discord_signed(key, body)
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BENCH_KEY": key.verify_key.encode().hex(),
        "BENCH_SIGNATURE": headers["x-signature-ed25519"],
        "BENCH_TIMESTAMP": headers["x-signature-timestamp"],
        "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
        "VALINE_LOG_LEVEL": "WARNING",
    }
    aws = {
        **base,
        "VALINE_STORE": "dynamodb://valine-orchestrator-bench",
        "VALINE_SECRETS_ARN": "arn:aws:secretsmanager:us-west-2:123456789012:secret:bench",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    local = {**base, "VALINE_STORE": f"sqlite:///{workdir}/cold.db"}
    event = json.dumps(api_gateway_event(body, headers)).encode()

    def fixed(stdin: bytes) -> Callable[[], tuple[bytes, dict[str, str]]]:
        return lambda: (stdin, {})

    def deferred() -> tuple[bytes, dict[str, str]]:
        plan = cold_aws.plan_body()
        signed = discord_signed(key, plan)
        return json.dumps(api_gateway_event(plan, signed)).encode(), {}

    variants = [
        ColdVariant("floor: python + nacl.signing + 1 verify", COLD_FLOOR, fixed(body), base, 0),
        ColdVariant("lambda discord_handler: import + PING", COLD_LAMBDA, fixed(event), aws, 0),
        ColdVariant("local app via Services: import + PING", COLD_LOCAL, fixed(body), local, 0),
    ]
    if aws_env is not None:
        deferred_env = {**base, **aws_env}
        variants += [
            ColdVariant(
                "floor: + boto3 client, 1 PutItem",
                cold_aws.COLD_FLOOR_BOTO3,
                fixed(body),
                deferred_env,
                3,
                cold_aws.WARM_FLOOR,
            ),
            ColdVariant(
                "lambda discord_handler: deferred /plan",
                cold_aws.COLD_LAMBDA_DEFERRED,
                deferred,
                deferred_env,
                3,
                cold_aws.warm_handler("discord_handler", 200),
            ),
        ]
        variants += _webhook_variants(base, aws_env, floor_index=len(variants))
    warm_servers(variants, workdir)
    times: list[list[float]] = [[] for _ in variants]
    exits: list[list[float]] = [[] for _ in variants]
    failures = [0 for _ in variants]
    for round_ in range(runs + 1):
        for i, variant in enumerate(variants):
            stdin, extra = variant.make_input()
            answered, exited, ok = time_process(variant.code, stdin, variant.env | extra, workdir)
            if round_ == 0:
                continue  # warms the page cache; not measured
            if ok:
                times[i].append(answered)
                exits[i].append(exited)
            failures[i] += 0 if ok else 1
    results = []
    for variant, series, ends, failed in zip(variants, times, exits, failures, strict=True):
        series.sort()
        ends.sort()
        results.append(
            ColdStart(
                label=variant.label,
                runs=len(series),
                median_ms=nearest_rank(series, 0.5) if series else math.nan,
                min_ms=series[0] if series else math.nan,
                max_ms=series[-1] if series else math.nan,
                failures=failed,
                exit_median_ms=nearest_rank(ends, 0.5) if ends else math.nan,
            )
        )
    floors = [results[v.floor] for v in variants]
    return [
        replace(
            r,
            ratio=r.median_ms / floor.median_ms if floor.median_ms else 0.0,
            exit_ratio=r.exit_median_ms / floor.exit_median_ms if floor.exit_median_ms else 0.0,
        )
        for r, floor in zip(results, floors, strict=True)
    ]


def warm_servers(variants: Sequence[ColdVariant], workdir: Path) -> None:
    """Make each AWS row's calls ``cold_aws.WARM_CALLS`` times, unmeasured, so the local
    servers have served every request path as often before the measured rounds (see
    ``bench/cold_aws.py``: DynamoDB Local's JIT). One process per row; each fails loudly."""
    for variant in variants:
        if variant.warm is None:
            continue
        lines = b"\n".join(variant.make_input()[0] for _ in range(cold_aws.WARM_CALLS))
        env = variant.env | {"BENCH_WARM_CALLS": str(cold_aws.WARM_CALLS)}
        done = subprocess.run(
            [sys.executable, "-c", variant.warm],
            input=lines,
            env=env,
            cwd=workdir,
            capture_output=True,
            timeout=COLD_TIMEOUT_S * 10,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-2000:]
            raise SystemExit(f"bench: warming the servers for {variant.label!r} failed:\n{tail}")


def _webhook_variants(
    base: dict[str, str], aws_env: dict[str, str], floor_index: int
) -> list[ColdVariant]:
    """The GitHub function's cold rows: its floor and one signed ``issues`` delivery.

    The delivery is the in-process row's (the first ``issues`` example, 16 KB), made
    unique per run (a new body and delivery id: each is accepted and persisted, never a
    duplicate), to the function configured as the template configures it (the
    deployment's environment without the Discord function's own settings; the secret is
    read, as on every invocation of this function).
    """
    secret = "bench-webhook-" + uuid.uuid4().hex
    issues = first_issues_example()
    served = str(json.loads(issues)["repository"]["full_name"])
    discord_only = {"VALINE_OUTBOX_TABLE", "VALINE_SECRET_KEYS"}
    env = {k: v for k, v in {**base, **aws_env}.items() if k not in discord_only}
    env |= {"GITHUB_REPOSITORY": served, "GITHUB_WEBHOOK_SECRET": secret}
    signed = github_signed(secret, issues, "issues", str(uuid.uuid4()))
    floor_env = {
        **env,
        "BENCH_WEBHOOK_SECRET": secret,
        "BENCH_SIGNATURE_256": signed["x-hub-signature-256"],
    }

    def delivery() -> tuple[bytes, dict[str, str]]:
        body = issues[:-1] + b',"bench_run":"%s"}' % uuid.uuid4().hex.encode()
        headers = github_signed(secret, body, "issues", str(uuid.uuid4()))
        return json.dumps(api_gateway_event(body, headers, "/github/webhook")).encode(), {}

    return [
        ColdVariant(
            "floor: hmac + json + boto3 client, 1 PutItem",
            COLD_FLOOR_WEBHOOK,
            lambda: (issues, {}),
            floor_env,
            floor_index,
            cold_aws.WARM_FLOOR,
        ),
        ColdVariant(
            "lambda github_handler: issues delivery",
            COLD_LAMBDA_WEBHOOK,
            delivery,
            env,
            floor_index,
            cold_aws.warm_handler("github_handler", 202),
        ),
    ]


# --------------------------------------------------------------------------- the server


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """The status and body of one GET on loopback."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def time_to_drain(port: int, limit_s: float = 120.0) -> float | None:
    """Seconds until the job queue is empty (the workers caught up), or None past the limit."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if queue_depth(port) == 0:
            return time.monotonic() - start
        time.sleep(0.1)
    return None


def queue_depth(port: int) -> int | None:
    """The job queue depth ``/healthz`` reports (jobs not yet processed), or None."""
    try:
        status, body = http_get(port, "/healthz", timeout=REQUEST_TIMEOUT_S)
        depth = json.loads(body).get("queue_depth") if status == 200 else None
    except (OSError, ValueError, AttributeError):
        return None
    return depth if isinstance(depth, int) else None


def log_lines(path: Path) -> int:
    """How many lines the server has logged so far (all at WARNING or above here)."""
    try:
        return len(path.read_bytes().splitlines())
    except OSError:
        return 0


def start_server(workdir: Path, env: dict[str, str]) -> Service:
    """Start ``valine serve`` in ``workdir`` (no .env there) and wait for ``/healthz``."""
    try:
        return start_service(workdir, env, log_name="server.log", timeout=STARTUP_TIMEOUT_S)
    except ServiceFailed as failed:
        raise SystemExit(f"bench: {failed}") from None


def stop_server(server: Service) -> None:
    """SIGTERM the server, SIGKILL it after a bounded wait."""
    stop_service(server, timeout=STOP_TIMEOUT_S)


def proc_status_kb(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure in kB (``VmRSS``, ``VmHWM``); 0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_loadgen(port: int, secret: str, duration: float, warmup: float) -> dict[str, Any]:
    """The shared loadgen.py against the server's webhook path; its JSON result."""
    if not LOADGEN.is_file():
        raise SystemExit(f"bench: {LOADGEN} missing (../shared beside the checkout)")
    command = [
        sys.executable,
        str(LOADGEN),
        "--json",
        "--label",
        "valine",
        "--url",
        f"http://{HOST}:{port}/github/webhook",
        "--secret",
        secret,
        "--examples",
        str(EXAMPLES),
        "-c",
        str(CONCURRENCY),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=warmup + duration + REQUEST_TIMEOUT_S + 30,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: loadgen failed ({done.returncode}):\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"bench: loadgen printed nothing:\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class PingLoad:
    """A closed loop of signed Discord PINGs over C keep-alive connections (asyncio)."""

    def __init__(self, port: int, requests: Sequence[bytes], concurrency: int) -> None:
        self.port = port
        self.requests = requests
        self.concurrency = concurrency
        self.counter = 0
        self.measuring = False
        self.sending = True
        self.t_start = 0.0
        self.t_end = 0.0
        self.durations: list[int] = []
        self.errors = 0
        self.non2xx = 0
        self.cpu_s = 0.0

    async def _connection(self) -> None:
        try:
            reader, writer = await asyncio.open_connection(HOST, self.port)
        except OSError:
            self.errors += 1
            return
        clock = time.perf_counter_ns
        try:
            while self.sending:
                request = self.requests[self.counter % len(self.requests)]
                self.counter += 1
                t0 = clock()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                t1 = clock()
                if self.measuring and self.t_start <= t1 / 1e9 <= self.t_end:
                    self.durations.append(t1 - t0)
                    if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                        self.non2xx += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.errors += 1
        finally:
            writer.close()

    def _begin(self, duration: float) -> None:
        self.t_start = time.perf_counter_ns() / 1e9
        self.t_end = self.t_start + duration
        self.cpu_s = time.process_time()
        self.measuring = True

    def _stop(self) -> None:
        self.sending = False
        self.cpu_s = time.process_time() - self.cpu_s

    async def run(self, duration: float, warmup: float) -> float:
        """Load for ``warmup`` + ``duration`` s (hard deadline); returns the window in s."""
        loop = asyncio.get_running_loop()
        loop.call_later(warmup, self._begin, duration)
        loop.call_later(warmup + duration, self._stop)
        tasks = [asyncio.ensure_future(self._connection()) for _ in range(self.concurrency)]
        try:
            await asyncio.wait_for(
                asyncio.gather(*tasks), warmup + duration + REQUEST_TIMEOUT_S + 2
            )
        except TimeoutError:
            self.errors += sum(1 for t in tasks if t.cancelled())
        return max(0.0, min(time.perf_counter_ns() / 1e9, self.t_end) - self.t_start)


def bench_discord_pings(
    port: int, key: Any, duration: float, warmup: float
) -> tuple[Latency, float]:
    """Signed PINGs through the server at c16; (latency figures, client CPU %)."""
    requests = []
    for _ in range(256):
        body = discord_body(1)
        headers = discord_signed(key, body)
        head = f"POST /discord HTTP/1.1\r\nhost: {HOST}:{port}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        requests.append(head.encode() + b"\r\n" + body)
    load = PingLoad(port, requests, CONCURRENCY)
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        window = runner.run(load.run(duration, warmup))
    cpu_pct = 100 * load.cpu_s / window if window > 0 else 0.0
    latency = summarise(
        ROW_LABELS[4],
        load.durations,
        window,
        errors=load.errors + load.non2xx,
        concurrency=CONCURRENCY,
        extra=f"client CPU {cpu_pct:.0f}%",
    )
    return latency, cpu_pct


def run_probot_compare(port: int, pid: int, secret: str, duration: float) -> dict[str, Any]:
    """``run_probot.sh`` (1 run, c16) with this server as the compared service."""
    command = [
        "bash",
        str(RUN_PROBOT),
        "--runs",
        "1",
        "--duration",
        str(duration),
        "--concurrency",
        str(CONCURRENCY),
        "--secret",
        secret,
        "--port",
        str(free_port()),
        "--compare-url",
        f"http://{HOST}:{port}/github/webhook",
        "--compare-label",
        "valine",
        "--compare-pid",
        str(pid),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PROBOT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"returncode": None, "lines": [], "error": "run_probot.sh timed out"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"returncode": done.returncode, "lines": lines, "stderr_tail": done.stderr[-2000:]}


def bench_server(workdir: Path, duration: float, warmup: float, probot: bool) -> dict[str, Any]:
    """Webhook and PING throughput through ``valine serve``, and its RSS."""
    from nacl.signing import SigningKey

    from valine.runtime.config import Settings

    key = SigningKey.generate()
    secret = secrets.token_hex(20)
    rules = workdir / "served.toml"
    rules.write_text(SERVED_RULES)
    server = start_server(
        workdir,
        {
            "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
            "GITHUB_WEBHOOK_SECRET": secret,
            "VALINE_STORE": f"sqlite:///{workdir}/bench.db",
            "VALINE_LOG_LEVEL": "WARNING",
            # loadgen's repositories, served: every delivery is persisted and queued
            "VALINE_CONFIG": str(rules),
        },
    )
    try:
        time.sleep(0.5)  # let start-up allocations settle before reading idle RSS
        rss_idle = proc_status_kb(server.pid, "VmRSS")
        lines_before = log_lines(server.log_path)
        loadgen = run_loadgen(server.port, secret, duration, warmup)
        pings, client_cpu = bench_discord_pings(server.port, key, duration, warmup)
        rss_after = proc_status_kb(server.pid, "VmRSS")
        depth = queue_depth(server.port)
        drained_s = time_to_drain(server.port)
        warnings = log_lines(server.log_path) - lines_before
        rss_peak = proc_status_kb(server.pid, "VmHWM")
        compare = run_probot_compare(server.port, server.pid, secret, duration) if probot else None
        if server.process.poll() is not None:
            raise SystemExit(f"bench: valine serve died during the load:\n{server.log_tail()}")
    finally:
        stop_server(server)
    webhooks = Latency(
        label=ROW_LABELS[3],
        n=int(loadgen["requests"]),
        p50_us=float(loadgen["p50_ms"] or 0) * 1000,
        p99_us=float(loadgen["p99_ms"] or 0) * 1000,
        max_us=float(loadgen["max_ms"] or 0) * 1000,
        per_s=float(loadgen["rps"]),
        errors=int(loadgen["non2xx"]) + int(loadgen["errors"]) + int(loadgen["timeouts"]),
        concurrency=int(loadgen["concurrency"]),
        extra=(
            f"{loadgen['payloads']} payloads, {loadgen['mean_body_bytes']:,} B mean, "
            f"gen CPU {loadgen['gen_cpu_pct']}%, bad sig -> "
            f"{(loadgen.get('preflight') or {}).get('bad_signature_status')}"
        ),
    )
    return {
        "github_webhooks": webhooks,
        "discord_ping": pings,
        "discord_client_cpu_pct": client_cpu,
        "loadgen": loadgen,
        "workers": Settings().workers,
        "rss_kb": {"idle": rss_idle, "after": rss_after, "peak": rss_peak},
        "queue_depth_after": depth,
        "drained_s": drained_s,
        "log_lines_during_load": warnings,
        "probot": compare,
    }


# --------------------------------------------------------------------------- report


def _drained(seconds: float | None) -> str:
    return "not within 120 s" if seconds is None else f"{seconds:.1f} s later"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    """What this run ran on."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_start": list(os.getloadavg()),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "granian": _version("granian"),
        "uvloop": _version("uvloop"),
        "pynacl": _version("pynacl"),
    }


def _load(values: Any) -> str:
    return " ".join(f"{v:.2f}" for v in values) if values else "?"


def _fmt_us(us: float) -> str:
    return f"{us:,.0f} us" if us < 1000 else f"{us / 1000:,.2f} ms"


def table(
    info: dict[str, Any],
    in_process: list[Latency],
    server: dict[str, Any],
    args: Any,
    cold: Sequence[ColdStart] = (),
) -> str:
    """The whole run as one readable text table."""
    lines = [
        f"valine bench  {info['date']}  duration {args.duration:g} s"
        + ("  (--quick)" if args.quick else ""),
        f"machine: {info['nproc']} CPU  {info['cpu']}  Linux {info['kernel']}  load average "
        f"{_load(info.get('loadavg_start'))} at start, {_load(info.get('loadavg_end'))} at end",
        f"python {info['python']}  sqlite {info['sqlite']}  granian {info['granian']}  "
        f"uvloop {info['uvloop']}  pynacl {info['pynacl']}",
        "",
    ]
    header = f"{'benchmark':<34} {'c':>3} {'n':>8} {'p50':>10} {'p99':>10} {'max':>10} "
    header += f"{'rate/s':>9} {'err':>4}  notes"
    lines += [header, "-" * len(header)]
    rows = [*in_process, server["github_webhooks"], server["discord_ping"]]
    for r in rows:
        lines.append(
            f"{r.label:<34} {r.concurrency:>3} {r.n:>8,} {_fmt_us(r.p50_us):>10} "
            f"{_fmt_us(r.p99_us):>10} {_fmt_us(r.max_us):>10} {r.per_s:>9,.0f} {r.errors:>4}  "
            f"{r.extra}"
        )
    rss = server["rss_kb"]
    lines.append(
        f"{ROW_LABELS[5]:<34} {'':>3} {'':>8} {rss['idle'] / 1024:>7.1f} MB "
        f"{rss['after'] / 1024:>7.1f} MB {rss['peak'] / 1024:>7.1f} MB"
    )
    lines.append(
        f"{'server after load':<34} {'':>3} {'':>8} queue depth {server['queue_depth_after']} "
        f"(ingest goes first; the workers caught up {_drained(server['drained_s'])}), "
        f"{server['log_lines_during_load']} log lines at WARNING+ during the load "
        "(loadgen's bad-signature preflight makes 1)"
    )
    if cold:
        lines += [
            "",
            f"cold start: fresh process, launch to the answer (and to exit), median of "
            f"{cold[0].runs} runs each (targets: lambda PING <= {COLD_TARGET:g}x its floor, "
            f"deferred command <= {COLD_DEFERRED_TARGET:g}x its floor, to the answer)",
        ]
        for c in cold:
            lines.append(
                f"  {c.label:<42} {c.median_ms:>7.1f} ms  {c.ratio:>5.2f}x its floor  "
                f"(min {c.min_ms:.1f}, max {c.max_ms:.1f}; to exit {c.exit_median_ms:.1f} ms, "
                f"{c.exit_ratio:.2f}x" + (f"; {c.failures} FAILED" if c.failures else "") + ")"
            )
    compare = server.get("probot")
    if compare:
        lines += ["", f"run_probot.sh (exit {compare['returncode']}):"]
        lines += [f"  {line}" for line in compare["lines"]] or ["  (no summary line)"]
    lines += [
        "",
        "in-process: App.handle wall time per call (perf_counter_ns), one thread, SQLite WAL.",
        f"server: valine serve (1 process, Granian (RSGI) + uvloop, "
        f"{server['workers']} worker threads) on loopback, c={CONCURRENCY}, "
        "closed loop; latency is send to last response byte.",
    ]
    return "\n".join(lines)


def to_json(value: Any) -> Any:
    """``value`` with dataclasses turned into dicts, for ``--json``."""
    if isinstance(value, Latency | ColdStart):
        return asdict(value)
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="valine-bench-") as tmp:
        yield Path(tmp)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="measured s per load (5)")
    parser.add_argument("--calls", type=int, default=3000, help="in-process calls per series")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--probot", action="store_true", help="also run run_probot.sh against the server"
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the in-process webhook path"
    )
    parser.add_argument(
        "--cold-runs", type=int, default=21, help="fresh processes per cold-start variant (21)"
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also the scale rows: 10 vs 100,000 runs on SQLite and DynamoDB Local "
        "(fills .cache/bench-scale once; see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--scale-backends",
        default="sqlite,dynamodb",
        help="comma-separated backends of the scale rows (sqlite,dynamodb)",
    )
    parser.add_argument("--scale-refill", action="store_true", help="fill the scale stores again")
    parser.add_argument(
        "--no-aws-cold",
        action="store_true",
        help="skip the deferred-command cold start (needs DynamoDB Local and moto)",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.scale_backends.split(",") if b.strip()]
    if not backends or any(b not in {"sqlite", "dynamodb"} for b in backends):
        parser.error("--scale-backends takes sqlite and/or dynamodb")
    args.scale_backends = backends
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S:g}]")
    if not 1 <= args.calls <= MAX_CALLS:
        parser.error(f"--calls must be in [1, {MAX_CALLS}]")
    if not 15 <= args.cold_runs <= 1000:
        parser.error("--cold-runs must be in [15, 1000] (the target is a median of >= 15 runs)")
    if args.quick:
        args.duration = min(args.duration, 1.0)
        args.calls = min(args.calls, 200)
        args.cold_runs = 15
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every part, print the table, optionally write JSON; returns the exit status."""
    args = parse_args(argv)
    warmup_calls = 20 if args.quick else 200
    warmup_s = 0.5 if args.quick else 1.0
    info = machine()
    with scratch_dir() as workdir:
        # First, while the machine is idle: fresh processes are sensitive to load.
        print(f"[bench] cold start: {args.cold_runs} runs per variant ...", file=sys.stderr)
        aws_cold = not (args.no_aws_cold or args.quick)  # --quick: a smoke test, kept short
        cold = bench_cold_start(workdir, args.cold_runs, aws=aws_cold)
        print(f"[bench] in-process: {args.calls} calls per series ...", file=sys.stderr)
        in_process = bench_in_process(workdir, args.calls, warmup_calls)
        print(f"[bench] server: {args.duration:g} s per load ...", file=sys.stderr)
        server = bench_server(workdir, args.duration, warmup_s, args.probot)
        profile = profile_webhook(workdir, args.calls) if args.profile else None
        scale_rows: list[scale.ScaleRow] = []
        large = scale.QUICK_LARGE if args.quick else scale.LARGE
        if args.scale:
            print(f"[bench] scale: {', '.join(args.scale_backends)} ...", file=sys.stderr)
            scale_rows = scale.bench_scale(
                workdir,
                large=large,
                calls=60 if args.quick else 300,
                dynamodb_calls=30 if args.quick else 150,
                backends=args.scale_backends,
                refill=args.scale_refill,
            )
    info["loadavg_end"] = list(os.getloadavg())
    print(table(info, in_process, server, args, cold))
    for line in scale.scale_lines(scale_rows, large):
        print(line)
    if profile:
        print("\ncProfile of the in-process github issues webhook path (by tottime):")
        print(profile)
    if args.json:
        document = {
            "machine": info,
            "options": {
                "duration_s": args.duration,
                "calls": args.calls,
                "quick": args.quick,
                "cold_runs": args.cold_runs,
            },
            "in_process": in_process,
            "server": server,
            "cold_start": cold,
        }
        if scale_rows:
            document["scale"] = scale.scale_json(scale_rows)
            document["scale_setup"] = scale.setup_json(scale_rows, large)
        Path(args.json).write_text(json.dumps(to_json(document), indent=2) + "\n")
    failed = [
        r.label
        for r in [*in_process, server["github_webhooks"], server["discord_ping"]]
        if r.errors or not r.n
    ]
    failed += [c.label for c in cold if c.failures]
    if failed:
        print(f"bench: errors or no responses in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
