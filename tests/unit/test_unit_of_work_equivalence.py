"""The unit of work changes how an interaction's writes reach DynamoDB, never what they are.

A Hypothesis property drives one random sequence of Discord commands and button presses
(from a permitted and an unpermitted user, with repeats of one interaction id) through
two Lambda Discord endpoints on DynamoDB Local, each on its own tables: the
transactional endpoint (every write collected into one ``TransactWriteItems``, a
cancelled one answered again on the immediate path) and the plain endpoint (every write
at once). Both must give the same answers and leave the same store: runs, locks and
claims, audit entries and queued jobs, modulo generated ids and timestamps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from aws_local import (  # noqa: F401 - aws_test_environment: a session fixture, registered here
    SERVICES,
    aws_test_environment,
    client,
    unique_prefix,
)
from helpers import examples
from valine.core.models import Run, Task
from valine.core.states import TaskState
from valine.http import Request
from valine.infra.aws import TableNames
from valine.runtime.aws import AwsServices, TransactionalEndpoint
from valine.runtime.aws_tables import create_tables, delete_tables
from valine.testing import payloads
from valine.testing.signing import discord_headers

pytestmark = pytest.mark.hypothesis

REPO = "octo/widgets"
RUN_ID = "r20261125-k3f9qa"
PERMITTED, UNPERMITTED = "42", "77"
RULES = '[discord]\nguild_ids = ["4"]\nrate_limit = 4\n\n' + "".join(
    f'[permissions.{name}]\nusers = ["{PERMITTED}"]\n'
    for name in ("plan", "approve", "cancel", "ship")
)

#: What a step sends: a slash command (name, options) or a button's custom id.
COMMANDS: list[tuple[str, dict[str, str]]] = [
    ("plan", {}),
    ("status", {}),
    ("approve", {"run_id": RUN_ID}),
    ("cancel", {"run_id": RUN_ID}),
    ("ship", {"run_id": RUN_ID}),
    ("retry", {"run_id": RUN_ID, "issue": "1"}),
    ("approve", {"run_id": "r20261125-nosuch"}),
]
BUTTONS = [f"{action}:{RUN_ID}" for action in ("approve", "cancel", "ship", "ship-confirm")]


@dataclass
class Side:
    """One endpoint and the tables it writes."""

    services: AwsServices
    endpoint: Any
    names: TableNames


@dataclass
class Pair:
    """The transactional side and the immediate side, and the key both verify with."""

    key: SigningKey
    unit: Side
    immediate: Side
    dynamodb: Any


def _side(tmp_path: Path, key: SigningKey, transactional: bool) -> Side:
    prefix = unique_prefix()
    names = TableNames.from_prefix(prefix)
    config = tmp_path / f"{prefix}.toml"
    config.write_text(RULES)
    environ = {
        "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
        "DISCORD_APPLICATION_ID": "1100000000000000000",
        "DISCORD_BOT_TOKEN": "bot-token-never-used",
        "GITHUB_TOKEN": "ghp-never-used",
        "GITHUB_WEBHOOK_SECRET": "whsec-never-used",
        "GITHUB_REPOSITORY": REPO,
        "VALINE_STORE": "dynamodb://valine-orchestrator-not-this-prefix",
        "VALINE_RUNS_TABLE": names.runs,
        "VALINE_AUDIT_TABLE": names.audit,
        "VALINE_DEDUPE_TABLE": names.dedupe,
        "VALINE_OUTBOX_TABLE": names.outbox,
        "VALINE_QUEUE_URL": "http://127.0.0.1:9/000000000000/never-sent",  # jobs: outbox
        "VALINE_DEAD_LETTER_URL": "http://127.0.0.1:9/000000000000/never-dlq",
        "VALINE_CONFIG": str(config),
    }
    services = AwsServices(environ)
    endpoint = services.discord_endpoint()
    assert isinstance(endpoint, TransactionalEndpoint)
    return Side(services, endpoint if transactional else endpoint._endpoint, names)


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    """Two table sets on DynamoDB Local, one endpoint on each (created once per test)."""
    dynamodb_local = SERVICES.dynamodb_endpoint()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing else is called
    dynamodb = client("dynamodb", dynamodb_local)
    key = SigningKey.generate()
    unit, immediate = _side(tmp_path, key, True), _side(tmp_path, key, False)
    for side in (unit, immediate):
        create_tables(dynamodb, side.names.runs.removesuffix("-runs"))
    try:
        yield Pair(key, unit, immediate, dynamodb)
    finally:
        for side in (unit, immediate):
            delete_tables(dynamodb, side.names.runs.removesuffix("-runs"))
        dynamodb.close()


def _clear(dynamodb: Any, names: TableNames) -> None:
    """Delete every item of the side's tables (a fresh start for one example)."""
    for table in (names.runs, names.audit, names.dedupe, names.outbox):
        schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
        keys = [k["AttributeName"] for k in schema]
        for item in _scan(dynamodb, table):
            dynamodb.delete_item(TableName=table, Key={k: item[k] for k in keys})


def _scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page: dict[str, Any] = {"LastEvaluatedKey": None}
    while "LastEvaluatedKey" in page:
        start = page["LastEvaluatedKey"]
        page = dynamodb.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        items += page["Items"]
    return items


#: Generated values: run ids, job ids, refs, uuids, epoch timestamps, interaction ids.
_GENERATED = [
    (re.compile(r"[0-9a-f]{16}#\d{20}#[0-9a-f]{8}"), "<audit key>"),
    (re.compile(r"r\d{8}-[a-z0-9]{6}"), "<run>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<hex>"),
    (re.compile(r"\bref [0-9a-f]{8}\b"), "ref <ref>"),
    (re.compile(r"\b1\d{9}(\.\d+)?\b"), "<time>"),
]


def _neutral(value: Any, ids: dict[str, str]) -> Any:
    """``value`` as JSON text with generated ids and timestamps replaced by placeholders
    (a seeded run id and the example's interaction ids are kept: they are chosen)."""
    text = json.dumps(value, sort_keys=True, default=str)
    for chosen, label in ids.items():
        text = text.replace(chosen, label)
    for pattern, label in _GENERATED:
        text = pattern.sub(label, text)
    return text


def _state(dynamodb: Any, names: TableNames, ids: dict[str, str]) -> dict[str, list[str]]:
    """Every table's items, neutral, sorted (DynamoDB's own order is no promise)."""
    tables = {"runs": names.runs, "audit": names.audit, "dedupe": names.dedupe}
    tables["outbox"] = names.outbox
    return {
        what: sorted(_neutral(item, ids) for item in _scan(dynamodb, table))
        for what, table in tables.items()
    }


def _seed(side: Side) -> None:
    task = Task(issue_number=1, title="Fix the gauge", state=TaskState.PENDING)
    side.services.store.create_run(
        Run(run_id=RUN_ID, repo=REPO, created_at=1.0, created_by=PERMITTED, tasks=(task,))
    )


def _body(step: tuple[Any, ...], interaction_id: str) -> bytes:
    kind, what, user = step
    if kind == "button":
        document = payloads.interaction(3, custom_id=what, user_id=user)
    else:
        name, options = what
        document = payloads.interaction(2, name, options, user_id=user)
    document["id"] = interaction_id
    document["token"] = "token-" + interaction_id
    return json.dumps(document).encode()


def _answer(side: Side, key: SigningKey, body: bytes, ids: dict[str, str]) -> tuple[int, str]:
    headers = discord_headers(key, body)
    response = side.endpoint(Request("POST", "/discord", headers, body))
    return response.status, _neutral(json.loads(response.body), ids)


_STEP = st.one_of(
    st.tuples(
        st.just("command"),
        st.sampled_from(COMMANDS),
        st.sampled_from([PERMITTED] * 3 + [UNPERMITTED]),
    ),
    st.tuples(
        st.just("button"), st.sampled_from(BUTTONS), st.sampled_from([PERMITTED, UNPERMITTED])
    ),
)
#: A step and which interaction id it carries: a small pool, so ids repeat (replays).
_STEPS = st.lists(st.tuples(_STEP, st.integers(0, 5)), min_size=1, max_size=8)


@settings(
    max_examples=examples(5),  # ~1 s each (2 endpoints, 8 table scans): make test stays quick
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_STEPS, seeded=st.booleans())
def test_the_unit_of_work_and_the_immediate_path_leave_the_same_state(
    pair: Pair, steps: list[tuple[tuple[Any, ...], int]], seeded: bool
) -> None:
    """Same answers, same runs, claims, audit entries and outbox jobs, either path."""
    ids = {f"9{n:017d}": f"<interaction {n}>" for n in range(6)}
    for side in (pair.unit, pair.immediate):
        _clear(pair.dynamodb, side.names)
        if seeded:
            _seed(side)
    for step, n in steps:
        body = _body(step, f"9{n:017d}")
        answers = [_answer(side, pair.key, body, ids) for side in (pair.unit, pair.immediate)]
        assert answers[0] == answers[1], step
        assert "could not do that" not in answers[0][1], answers[0]  # an error proves nothing
    states = [_state(pair.dynamodb, side.names, ids) for side in (pair.unit, pair.immediate)]
    assert states[0] == states[1]
