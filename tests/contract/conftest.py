"""Adapter factories for the RunStore contract suite.

Every test in ``test_run_store.py`` that takes the ``run_store`` fixture runs once per
entry of :data:`RUN_STORE_FACTORIES`. To put another adapter under the same contract,
append a ``(name, factory)`` pair: the factory gets a fresh ``tmp_path`` and returns a
:class:`StoreHandle` for an empty store (calling ``pytest.skip`` if its backend, say
DynamoDB Local, is not available).

``StoreHandle.opener``/``url``/``env`` let a test open the *same* store from another
process (``python -c`` imports ``opener`` and calls it with ``url``), which the
cross-process race test needs.

The ``dynamodb`` factory runs the suite against DynamoDB Local (see ``tests/aws_local.py``;
``make aws-local`` installs it); ``memory`` against the tests' in-memory store
(:mod:`valine.testing.memory`), which lists in ``lacks`` the one promise it cannot make
(another process opening the same store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aws_local import (  # noqa: F401 - session fixtures, registered by importing them here
    SERVICES,
    aws_test_environment,
    child_environment,
    client,
    dynamodb_local,
    moto_sqs,
    unique_prefix,
)
from valine.ports import RunStore


@dataclass
class StoreHandle:
    """An empty store under test, and how another process opens the same one."""

    store: RunStore
    url: str
    #: ``"module:attribute.path"`` of a callable ``(url) -> RunStore``.
    opener: str
    close: Callable[[], None]
    #: Extra environment for a child process (endpoints, fake credentials, ...).
    env: dict[str, str] = field(default_factory=dict)
    #: Contract promises the adapter does not make: ``{promise: why}``.
    lacks: dict[str, str] = field(default_factory=dict)


StoreFactory = Callable[[Path], StoreHandle]


def _sqlite_factory(tmp_path: Path) -> StoreHandle:
    """A SqliteRunStore on a real file in ``tmp_path``."""
    from valine.store.sqlite import SqliteRunStore

    url = f"sqlite:///{tmp_path / 'store' / 'valine.db'}"
    store = SqliteRunStore.from_url(url)
    return StoreHandle(
        store=store,
        url=url,
        opener="valine.store.sqlite:SqliteRunStore.from_url",
        close=store.close,
    )


def _refuse_scan(**_: object) -> None:
    raise AssertionError("the DynamoDB store scanned a table")


def _dynamodb_factory(tmp_path: Path) -> StoreHandle:
    """A DynamoRunStore on fresh tables (a new prefix) of the session's DynamoDB Local."""
    from valine.infra.aws import TableNames
    from valine.runtime.aws_tables import create_tables, delete_tables
    from valine.store.dynamodb import DynamoRunStore

    endpoint = SERVICES.dynamodb_endpoint()
    prefix = unique_prefix()
    dynamodb = client("dynamodb", endpoint)
    create_tables(dynamodb, prefix)
    # /status stays flat as runs accumulate because nothing scans. Any Scan fails the test.
    dynamodb.meta.events.register("before-call.dynamodb.Scan", _refuse_scan)
    names = TableNames.from_prefix(prefix)
    store = DynamoRunStore(
        dynamodb,
        runs_table=names.runs,
        audit_table=names.audit,
    )

    def close() -> None:
        delete_tables(dynamodb, prefix)
        store.close()

    return StoreHandle(
        store=store,
        url=f"dynamodb://{prefix}",
        opener="valine.store.dynamodb:DynamoRunStore.from_url",
        close=close,
        env=child_environment(endpoint),
    )


def _memory_factory(_tmp_path: Path) -> StoreHandle:
    """The tests' in-memory store (valine.testing.memory): one process only."""
    from valine.testing.memory import MemoryRunStore

    store = MemoryRunStore()
    return StoreHandle(
        store=store,
        url="memory:",
        opener="",
        close=store.close,
        lacks={"processes": "it lives in one process's memory"},
    )


#: ``(id, factory)`` of every RunStore adapter the contract suite runs against.
RUN_STORE_FACTORIES: list[tuple[str, StoreFactory]] = [
    ("sqlite", _sqlite_factory),
    ("dynamodb", _dynamodb_factory),
    ("memory", _memory_factory),
]


@pytest.fixture(
    params=[factory for _, factory in RUN_STORE_FACTORIES],
    ids=[name for name, _ in RUN_STORE_FACTORIES],
)
def store_handle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreHandle]:
    """A fresh, empty store of each adapter, closed after the test."""
    factory: StoreFactory = request.param
    handle = factory(tmp_path)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def run_store(store_handle: StoreHandle) -> RunStore:
    """A fresh, empty RunStore of each adapter."""
    return store_handle.store
