"""The scale benchmark's stores (``bench/scale.py``): what the fast fill writes is what the
product's stores read, on SQLite and on DynamoDB Local, and the rows measure reads only.

The fill bypasses ``create_run`` (one ``executemany``; ``BatchWriteItem``), so these tests
read a filled store back through the real adapters: a fill that wrote rows or items the
store cannot read, or broke the one-active-run lock, would make the scale rows time
something the product never does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from aws_local import client, unique_prefix
from valine.core.states import RunState
from valine.infra.aws import TableNames
from valine.infra.sqlite import Database
from valine.store.dynamodb import DynamoRunStore
from valine.store.sqlite import SqliteRunStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import scale

LARGE = scale.Dataset(60, 600)


def _expected(data: scale.Dataset) -> dict[str, Any]:
    runs = scale.generate_runs(data)
    of_repo = [r for r in runs if r.repo == scale.REPO]
    return {
        "runs": runs,
        "newest_of_repo": [r.run_id for r in reversed(of_repo)],
        "active": of_repo[-1],
    }


def _check_store(store: Any, data: scale.Dataset) -> None:
    expected = _expected(data)
    active = store.active_run(scale.REPO)
    assert active == expected["active"]
    assert active.state is RunState.EXECUTING
    for repo in scale.OTHER_REPOS if data.runs > 10 else ():
        other = store.active_run(repo)
        assert other is not None and other.repo == repo
    assert list(store.recent_run_ids(scale.REPO, limit=25)) == expected["newest_of_repo"][:25]
    recent = store.recent_runs(scale.REPO, limit=5)
    assert [r.run_id for r in recent] == expected["newest_of_repo"][:5]
    assert recent[1] == next(r for r in expected["runs"] if r.run_id == recent[1].run_id)
    trail = store.audit_trail(active.run_id, limit=50)
    assert len(trail) == data.audit // data.runs
    assert [e.at for e in trail] == sorted((e.at for e in trail), reverse=True)
    assert len(store.audit_trail(limit=1000)) == data.audit


def test_sqlite_fill_is_read_back_by_the_store(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(scale, "CACHE", tmp_path / "cache")
    path = scale.sqlite_store_file(LARGE, refill=False, log=lambda _: None)
    store = SqliteRunStore(Database(path))
    try:
        _check_store(store, LARGE)
        rows = store.db.connection().execute("SELECT count(*) FROM store_runs").fetchone()
        assert rows == (LARGE.runs,)
    finally:
        store.close()
    # Cached: asked again, the same file is given back unfilled.
    stamp = path.stat().st_mtime_ns
    assert scale.sqlite_store_file(LARGE, refill=False, log=lambda _: None) == path
    assert path.stat().st_mtime_ns == stamp


def test_dynamodb_fill_is_read_back_by_the_store(dynamodb_local: str) -> None:
    prefix = unique_prefix()
    ddb = client("dynamodb", dynamodb_local)
    names = TableNames.from_prefix(prefix)
    scale.fill_dynamodb(ddb, LARGE, log=lambda _: None, prefix=prefix)
    store = DynamoRunStore(ddb, runs_table=names.runs, audit_table=names.audit)
    _check_store(store, LARGE)
    # The fill took the repositories' locks: a second active run is refused as usual.
    from valine.core.errors import ActiveRunExists
    from valine.core.models import Run

    with pytest.raises(ActiveRunExists):
        store.create_run(Run("r20261118-zzzzzz", scale.REPO, scale.BASE, RunState.PLANNED))


def test_the_scale_rows_time_reads_only_and_report_every_query(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(scale, "CACHE", tmp_path / "cache")
    rows = scale.bench_scale(
        tmp_path, large=LARGE, calls=3, backends=("sqlite",), log=lambda _: None
    )
    assert [r.query for r in rows] == list(scale.QUERIES)
    figures = scale.scale_json(rows)
    assert set(figures) == {f"sqlite {q}" for q in scale.QUERIES}
    for value in figures.values():
        assert set(value) == {"p50_10", "p50_100k", "ratio"}
        assert value["p50_10"] > 0 and value["p50_100k"] > 0
        assert value["ratio"] == pytest.approx(value["p50_100k"] / value["p50_10"], rel=0.01)


def test_a_measured_read_that_writes_fails_the_row() -> None:
    queue = scale.RefusingQueue()
    with pytest.raises(AssertionError, match="used the queue"):
        queue.enqueue("plan", {})
