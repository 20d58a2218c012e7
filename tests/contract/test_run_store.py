"""The RunStore contract: every adapter must pass these tests unchanged.

Tests that take ``run_store`` (or ``store_handle``) run once per adapter listed in
``conftest.RUN_STORE_FACTORIES``. The section at the end checks what only the SQLite
adapter can promise (its file is in WAL mode; its queries are answered from indexes).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from valine.core.errors import ActiveRunExists, NotFound, RunConflict
from valine.core.models import Run, Task, apply_run_event
from valine.core.states import RunEvent, RunState, TaskState
from valine.infra.sqlite import Database
from valine.ports import AuditEntry, RunStore
from valine.store.sqlite import INDEXED_QUERIES, SqliteRunStore

REPO = "octo/app"
OTHER_REPO = "octo/lib"
T0 = 1_764_064_800.123456  # a float with a fraction, to prove timestamps survive exactly


def make_run(
    run_id: str,
    repo: str = REPO,
    created_at: float = T0,
    state: RunState = RunState.PLANNED,
    **changes: Any,
) -> Run:
    """A run that has not been stored yet (version 0)."""
    return Run(run_id=run_id, repo=repo, created_at=created_at, state=state, **changes)


def full_run(run_id: str = "r20251125-full01") -> Run:
    """A run with every field set to something other than its default."""
    return Run(
        run_id=run_id,
        repo=REPO,
        created_at=T0,
        state=RunState.EXECUTING,
        updated_at=T0 + 61.5,
        tasks=(
            Task(
                issue_number=12,
                title="Fix the flaky login test — ünïcode too",
                state=TaskState.CHECKS_FAILED,
                pr_number=340,
                head_sha="a" * 40,
                checks_sha="b" * 40,
                reason="lint failed",
                steps_done=("labelled", "commented", "dispatched"),
            ),
            Task(issue_number=7, title="Docs", state=TaskState.SKIPPED, reason="unlabelled"),
            Task(issue_number=3, title="Untouched"),
        ),
        created_by="discord:1001",
        approved_by="discord:1002",
        approved_at=T0 + 30.25,
        finished_at=None,
        reason="because",
        discord={"application_id": "42", "token": "tok", "channel_id": "9", "message_id": "8"},
        thread_id="8",
        thread="archived",
    )


def cancelled(run: Run, now: float = T0 + 100) -> Run:
    """``run`` after a CANCEL event (it leaves the active states)."""
    return apply_run_event(run, RunEvent.CANCEL, now, reason="cancelled in a test")


# -- create / get ---------------------------------------------------------------------------


def test_create_then_get_round_trips_every_field(run_store: RunStore) -> None:
    run = full_run()
    created = run_store.create_run(run)
    assert created == replace(run, version=1)
    loaded = run_store.get_run(run.run_id)
    assert loaded == created
    assert [t.issue_number for t in loaded.tasks] == [12, 7, 3]
    assert loaded.tasks[0].steps_done == ("labelled", "commented", "dispatched")
    assert loaded.created_at == T0
    assert loaded.discord["token"] == "tok"
    assert (loaded.thread_id, loaded.thread) == ("8", "archived")


def test_create_sets_version_one_whatever_the_input_version(run_store: RunStore) -> None:
    created = run_store.create_run(make_run("r1", version=7))
    assert created.version == 1
    assert run_store.get_run("r1").version == 1


def test_get_unknown_run_is_not_found(run_store: RunStore) -> None:
    with pytest.raises(NotFound):
        run_store.get_run("r-nope")
    run_store.create_run(make_run("r1"))
    with pytest.raises(NotFound):
        run_store.get_run("r-nope")


def test_duplicate_run_id_is_a_conflict_and_keeps_the_stored_run(run_store: RunStore) -> None:
    first = run_store.create_run(make_run("r1", created_by="alice"))
    with pytest.raises(RunConflict) as caught:
        run_store.create_run(make_run("r1", repo=OTHER_REPO, created_by="mallory"))
    assert not isinstance(caught.value, ActiveRunExists)
    # Same repository too: the id clash is what is reported, not the repository lock.
    with pytest.raises(RunConflict) as caught:
        run_store.create_run(make_run("r1", created_by="mallory"))
    assert not isinstance(caught.value, ActiveRunExists)
    assert run_store.get_run("r1") == first
    assert run_store.active_run(OTHER_REPO) is None


def test_duplicate_id_of_a_finished_run_is_a_conflict(run_store: RunStore) -> None:
    run_store.create_run(make_run("r1", state=RunState.SHIPPED))
    with pytest.raises(RunConflict):
        run_store.create_run(make_run("r1", state=RunState.SHIPPED))


# -- save / versions ------------------------------------------------------------------------


def test_save_increments_the_version_and_stores_the_change(run_store: RunStore) -> None:
    v1 = run_store.create_run(make_run("r1"))
    v2 = run_store.save_run(apply_run_event(v1, RunEvent.APPROVE, T0 + 5, approved_by="bob"))
    assert v2.version == 2
    assert v2.state is RunState.APPROVED
    assert run_store.get_run("r1") == v2
    v3 = run_store.save_run(apply_run_event(v2, RunEvent.START, T0 + 6))
    assert v3.version == 3
    assert run_store.get_run("r1") == v3
    assert run_store.get_run("r1").approved_by == "bob"


def test_save_with_a_stale_version_conflicts_and_changes_nothing(run_store: RunStore) -> None:
    v1 = run_store.create_run(make_run("r1"))
    v2 = run_store.save_run(apply_run_event(v1, RunEvent.APPROVE, T0 + 5, approved_by="bob"))
    with pytest.raises(RunConflict) as caught:
        run_store.save_run(apply_run_event(v1, RunEvent.CANCEL, T0 + 6, reason="late"))
    assert not isinstance(caught.value, ActiveRunExists)
    assert run_store.get_run("r1") == v2
    # A version from the future is just as stale.
    with pytest.raises(RunConflict):
        run_store.save_run(replace(v2, version=5, reason="future"))
    assert run_store.get_run("r1") == v2


def test_save_of_an_unknown_run_is_not_found(run_store: RunStore) -> None:
    with pytest.raises(NotFound):
        run_store.save_run(replace(make_run("r-ghost"), version=1))
    with pytest.raises(NotFound):
        run_store.get_run("r-ghost")


# -- one active run per repository ----------------------------------------------------------


def test_second_active_run_of_a_repo_names_the_existing_one(run_store: RunStore) -> None:
    first = run_store.create_run(make_run("r1"))
    with pytest.raises(ActiveRunExists) as caught:
        run_store.create_run(make_run("r2", created_at=T0 + 1))
    assert caught.value.repo == REPO
    assert caught.value.run_id == "r1"
    with pytest.raises(NotFound):
        run_store.get_run("r2")
    assert run_store.active_run(REPO) == first


def test_every_non_terminal_state_holds_the_lock(run_store: RunStore) -> None:
    for state in (RunState.APPROVED, RunState.SHIPPING, RunState.SHIP_FAILED):
        holder = make_run(f"holder-{state}", repo=f"octo/{state}", state=state)
        run_store.create_run(holder)
        with pytest.raises(ActiveRunExists) as caught:
            run_store.create_run(make_run(f"second-{state}", repo=holder.repo))
        assert caught.value.run_id == holder.run_id


def test_a_finished_run_releases_the_repo(run_store: RunStore) -> None:
    first = run_store.create_run(make_run("r1"))
    done = run_store.save_run(cancelled(first))
    assert done.state is RunState.CANCELLED
    assert run_store.active_run(REPO) is None
    second = run_store.create_run(make_run("r2", created_at=T0 + 200))
    assert run_store.active_run(REPO) == second
    assert run_store.get_run("r1") == done


def test_a_finished_run_can_be_stored_beside_an_active_one(run_store: RunStore) -> None:
    active = run_store.create_run(make_run("r1"))
    old = run_store.create_run(make_run("r0", state=RunState.SHIPPED, created_at=T0 - 1))
    assert old.version == 1
    assert run_store.active_run(REPO) == active


def test_reactivating_a_run_while_another_is_active_is_refused(run_store: RunStore) -> None:
    first = run_store.save_run(cancelled(run_store.create_run(make_run("r1"))))
    run_store.create_run(make_run("r2", created_at=T0 + 200))
    with pytest.raises(ActiveRunExists) as caught:
        run_store.save_run(replace(first, state=RunState.PLANNED))
    assert caught.value.run_id == "r2"
    assert run_store.get_run("r1") == first
    active = run_store.active_run(REPO)
    assert active is not None
    assert active.run_id == "r2"


def test_saving_the_active_run_keeps_its_own_lock(run_store: RunStore) -> None:
    v1 = run_store.create_run(make_run("r1"))
    v2 = run_store.save_run(apply_run_event(v1, RunEvent.APPROVE, T0 + 1))
    assert run_store.active_run(REPO) == v2
    with pytest.raises(ActiveRunExists):
        run_store.create_run(make_run("r2"))


def test_active_runs_of_different_repos_coexist(run_store: RunStore) -> None:
    a = run_store.create_run(make_run("r1", repo=REPO))
    b = run_store.create_run(make_run("r2", repo=OTHER_REPO))
    assert run_store.active_run(REPO) == a
    assert run_store.active_run(OTHER_REPO) == b


def test_active_run_is_none_or_the_current_version(run_store: RunStore) -> None:
    assert run_store.active_run(REPO) is None
    run_store.create_run(make_run("r0", state=RunState.SHIPPED))
    assert run_store.active_run(REPO) is None
    v1 = run_store.create_run(make_run("r1"))
    v2 = run_store.save_run(apply_run_event(v1, RunEvent.APPROVE, T0 + 1))
    assert run_store.active_run(REPO) == v2
    assert run_store.active_run(OTHER_REPO) is None


def test_likely_none_outside_a_unit_of_work_still_reads(run_store: RunStore) -> None:
    """The hint only lets a store defer the check to an interaction's transaction: with
    none open, every store reads and answers as without it."""
    assert run_store.active_run(REPO, likely_none=True) is None
    active = run_store.create_run(make_run("r1"))
    assert run_store.active_run(REPO, likely_none=True) == active
    assert run_store.active_run(OTHER_REPO, likely_none=True) is None


# -- recent runs ----------------------------------------------------------------------------


def test_recent_runs_newest_first_with_run_id_breaking_ties(run_store: RunStore) -> None:
    finished = RunState.SHIPPED
    run_store.create_run(make_run("r-b", created_at=T0 + 10, state=finished))
    run_store.create_run(make_run("r-a", created_at=T0 + 10, state=finished))
    run_store.create_run(make_run("r-c", created_at=T0 + 10, state=finished))
    run_store.create_run(make_run("r-old", created_at=T0, state=finished))
    run_store.create_run(make_run("r-new", created_at=T0 + 20))
    ids = [r.run_id for r in run_store.recent_runs()]
    assert ids == ["r-new", "r-c", "r-b", "r-a", "r-old"]
    assert list(run_store.recent_run_ids()) == ids
    assert list(run_store.recent_run_ids(REPO)) == ids


def test_recent_runs_limit_and_default_limit(run_store: RunStore) -> None:
    for i in range(12):
        run_store.create_run(make_run(f"r{i:02d}", created_at=T0 + i, state=RunState.SHIPPED))
    assert [r.run_id for r in run_store.recent_runs(limit=3)] == ["r11", "r10", "r09"]
    assert len(run_store.recent_runs()) == 10
    assert len(run_store.recent_runs(limit=100)) == 12
    assert list(run_store.recent_runs(limit=0)) == []
    assert list(run_store.recent_run_ids(limit=3)) == ["r11", "r10", "r09"]
    assert len(run_store.recent_run_ids()) == 10
    assert list(run_store.recent_run_ids(limit=100)) == [f"r{i:02d}" for i in range(11, -1, -1)]
    assert list(run_store.recent_run_ids(REPO, limit=0)) == []
    assert list(run_store.recent_run_ids(limit=-1)) == []


def test_recent_runs_of_one_repo(run_store: RunStore) -> None:
    for i in range(6):
        repo = REPO if i % 2 == 0 else OTHER_REPO
        run_store.create_run(
            make_run(f"r{i}", repo=repo, created_at=T0 + i, state=RunState.CANCELLED)
        )
    assert [r.run_id for r in run_store.recent_runs(REPO)] == ["r4", "r2", "r0"]
    assert [r.run_id for r in run_store.recent_runs(OTHER_REPO, limit=2)] == ["r5", "r3"]
    assert list(run_store.recent_runs("octo/none")) == []
    assert list(run_store.recent_run_ids(REPO)) == ["r4", "r2", "r0"]
    assert list(run_store.recent_run_ids(OTHER_REPO, limit=2)) == ["r5", "r3"]
    assert list(run_store.recent_run_ids("octo/none")) == []


def test_the_reads_of_a_deployment_serving_two_repositories(run_store: RunStore) -> None:
    """What /status and the run-id autocomplete read across repositories (issue #15):
    each repository's active run, and the newest runs of every one, interleaved; on
    DynamoDB from the lock items and the ``by_time`` index (a Scan fails the test)."""
    for i in range(4):
        repo = REPO if i % 2 == 0 else OTHER_REPO
        run_store.create_run(
            make_run(f"r{i}", repo=repo, created_at=T0 + i, state=RunState.SHIPPED)
        )
    app = run_store.create_run(make_run("r8", repo=REPO, created_at=T0 + 8))
    lib = run_store.create_run(make_run("r9", repo=OTHER_REPO, created_at=T0 + 9))
    assert [run_store.active_run(r) for r in (REPO, OTHER_REPO)] == [app, lib]
    assert [r.run_id for r in run_store.recent_runs(None, limit=5)] == [
        "r9", "r8", "r3", "r2", "r1"
    ]  # fmt: skip
    assert list(run_store.recent_run_ids(None, limit=3)) == ["r9", "r8", "r3"]


def test_recent_runs_return_current_versions(run_store: RunStore) -> None:
    v1 = run_store.create_run(make_run("r1"))
    v2 = run_store.save_run(apply_run_event(v1, RunEvent.APPROVE, T0 + 1))
    assert list(run_store.recent_runs()) == [v2]
    assert list(run_store.recent_runs(REPO)) == [v2]


# -- audit ----------------------------------------------------------------------------------


def test_audit_trail_newest_first_and_filtered_by_run(run_store: RunStore) -> None:
    entries = [
        AuditEntry(at=T0 + 1, actor="alice", action="plan", outcome="ok", run_id="r1"),
        AuditEntry(at=T0 + 2, actor="bob", action="approve", outcome="denied", run_id="r1"),
        AuditEntry(at=T0 + 3, actor="carol", action="plan", outcome="ok", run_id="r2"),
        AuditEntry(at=T0 + 4, actor="bot", action="reconcile", outcome="ok", detail="3 runs"),
        AuditEntry(at=T0 + 5, actor="alice", action="approve", outcome="ok", run_id="r1"),
    ]
    for entry in entries:
        run_store.append_audit(entry)
    assert list(run_store.audit_trail()) == entries[::-1]
    assert list(run_store.audit_trail(run_id="r1")) == [entries[4], entries[1], entries[0]]
    assert list(run_store.audit_trail(run_id="r2")) == [entries[2]]
    assert list(run_store.audit_trail(run_id="r-none")) == []
    assert list(run_store.audit_trail(limit=2)) == [entries[4], entries[3]]
    assert list(run_store.audit_trail(run_id="r1", limit=1)) == [entries[4]]
    assert list(run_store.audit_trail(limit=0)) == []


def test_audit_entries_out_of_time_order_and_ties(run_store: RunStore) -> None:
    late = AuditEntry(at=T0 + 9, actor="a", action="ship", outcome="ok", run_id="r1")
    early = AuditEntry(at=T0 + 1, actor="b", action="plan", outcome="ok", run_id="r1")
    tie_first = AuditEntry(at=T0 + 5, actor="c", action="x", outcome="ok", run_id="r1")
    tie_second = AuditEntry(at=T0 + 5, actor="d", action="y", outcome="ok", run_id="r1")
    for entry in (late, early, tie_first, tie_second):
        run_store.append_audit(entry)
    expected = [late, tie_second, tie_first, early]
    assert list(run_store.audit_trail()) == expected
    assert list(run_store.audit_trail(run_id="r1")) == expected


def test_audit_trail_default_limit_is_fifty(run_store: RunStore) -> None:
    for i in range(55):
        run_store.append_audit(AuditEntry(at=T0 + i, actor="a", action="x", outcome="ok"))
    trail = run_store.audit_trail()
    assert len(trail) == 50
    assert trail[0].at == T0 + 54


# -- concurrency ----------------------------------------------------------------------------


def _race(workers: list[Callable[[], str]]) -> list[str]:
    """Run ``workers`` in parallel threads; their results (exceptions re-raised)."""
    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        futures = [pool.submit(worker) for worker in workers]
        return [future.result(timeout=60) for future in futures]


def test_two_threads_saving_the_same_version_exactly_one_wins(run_store: RunStore) -> None:
    run_store.create_run(make_run("r1"))
    barrier = threading.Barrier(2, timeout=30)

    def saver(name: str) -> Callable[[], str]:
        def save() -> str:
            run = run_store.get_run("r1")
            barrier.wait()  # both threads now hold version 1
            try:
                run_store.save_run(replace(run, reason=name))
            except RunConflict:
                return f"{name}:conflict"
            return f"{name}:saved"

        return save

    outcomes = _race([saver("a"), saver("b")])
    winners = [o.split(":")[0] for o in outcomes if o.endswith(":saved")]
    assert len(winners) == 1, outcomes
    assert sum(o.endswith(":conflict") for o in outcomes) == 1, outcomes
    stored = run_store.get_run("r1")
    assert stored.version == 2
    assert stored.reason == winners[0]


def test_two_threads_creating_active_runs_for_one_repo(run_store: RunStore) -> None:
    barrier = threading.Barrier(2, timeout=30)

    def creator(run_id: str) -> Callable[[], str]:
        def create() -> str:
            barrier.wait()
            try:
                run_store.create_run(make_run(run_id))
            except ActiveRunExists as exc:
                return f"refused:{exc.run_id}"
            return f"created:{run_id}"

        return create

    outcomes = sorted(_race([creator("r-a"), creator("r-b")]))
    created = [o.split(":")[1] for o in outcomes if o.startswith("created:")]
    refused = [o.split(":")[1] for o in outcomes if o.startswith("refused:")]
    assert len(created) == 1, outcomes
    assert refused == created, outcomes  # the loser is told who holds the lock
    active = run_store.active_run(REPO)
    assert active is not None
    assert active.run_id == created[0]


_CHILD_SAVER = r"""
import importlib
import sys
from dataclasses import replace

from valine.core.errors import RunConflict

opener_path, url, run_id, reason = sys.argv[1:5]
module_name, _, attribute = opener_path.partition(":")
opener = importlib.import_module(module_name)
for part in attribute.split("."):
    opener = getattr(opener, part)
store = opener(url)
run = store.get_run(run_id)
print("ready", run.version, flush=True)
sys.stdin.readline()  # the parent says "go" once both children hold the same version
try:
    store.save_run(replace(run, reason=reason))
except RunConflict:
    print("conflict", flush=True)
else:
    print("saved", flush=True)
"""


def test_two_processes_saving_the_same_version_exactly_one_wins(
    store_handle: Any, tmp_path: Path
) -> None:
    if "processes" in store_handle.lacks:
        pytest.skip(f"processes: {store_handle.lacks['processes']}")
    store: RunStore = store_handle.store
    store.create_run(make_run("r1"))
    env = {**os.environ, **store_handle.env}
    children = {
        reason: subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD_SAVER,
                store_handle.opener,
                store_handle.url,
                "r1",
                reason,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        for reason in ("from-a", "from-b")
    }
    try:
        for child in children.values():
            assert child.stdout is not None
            assert child.stdout.readline().split() == ["ready", "1"]
        for child in children.values():
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outcomes = {}
        for reason, child in children.items():
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            outcomes[reason] = out.strip()
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
    assert sorted(outcomes.values()) == ["conflict", "saved"], outcomes
    winner = next(reason for reason, outcome in outcomes.items() if outcome == "saved")
    stored = store.get_run("r1")
    assert stored.version == 2
    assert stored.reason == winner


# -- SQLite adapter specifics ---------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A Database on a real file, closed after the test."""
    db = Database(tmp_path / "state" / "valine.db")
    try:
        yield db
    finally:
        db.close()


def test_sqlite_file_is_on_disk_in_wal_mode(sqlite_db: Database) -> None:
    store = SqliteRunStore(sqlite_db)
    store.create_run(make_run("r1"))
    assert sqlite_db.path.is_file()
    # A separate, plain connection sees the journal mode and the row: both are in the file.
    raw = sqlite3.connect(sqlite_db.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT run_id, version FROM store_runs").fetchall() == [("r1", 1)]
    finally:
        raw.close()


def test_sqlite_from_url_uses_the_named_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "v.db"
    store = SqliteRunStore.from_url(f"sqlite:///{path}")
    try:
        store.create_run(make_run("r1"))
        assert store.db.path == path
        assert path.is_file()
    finally:
        store.close()
    with pytest.raises(ValueError, match="sqlite"):
        SqliteRunStore.from_url("postgres://nope")


def test_sqlite_schema_is_idempotent_and_prefixed(sqlite_db: Database) -> None:
    first = SqliteRunStore(sqlite_db)
    created = first.create_run(make_run("r1"))
    second = SqliteRunStore(sqlite_db)  # a restart: the schema script runs again
    assert second.get_run("r1") == created
    names = [
        name
        for (name,) in sqlite_db.connection().execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
        )
        if not name.startswith("sqlite_")
    ]
    assert names
    assert all(name.startswith("store_") for name in names), names


def test_sqlite_queries_are_answered_from_indexes(sqlite_db: Database) -> None:
    SqliteRunStore(sqlite_db)
    conn = sqlite_db.connection()
    for name, (sql, args) in INDEXED_QUERIES.items():
        details = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
        assert details, name
        for detail in details:
            # A bare "SCAN store_runs" reads the whole table, and a temp B-tree sorts
            # every matching row. "SEARCH ... USING INDEX" is a seek; "SCAN ... USING
            # INDEX" (recent runs, whole audit trail) walks an index in ORDER BY order and
            # stops at the LIMIT, which the step-count test below proves flat.
            assert "TEMP B-TREE" not in detail, (name, details)
            assert "USING INDEX" in detail or "USING COVERING INDEX" in detail, (name, details)
    plans = {
        name: conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()[0][3]
        for name, (sql, args) in INDEXED_QUERIES.items()
    }
    for name in ("get_run", "active_run", "recent_runs_of_repo", "audit_trail_of_run"):
        assert plans[name].startswith("SEARCH "), (name, plans[name])
    # The autocomplete's ids come from the index alone: no run row is read.
    assert plans["recent_run_ids_of_repo"].startswith("SEARCH "), plans
    for name in ("recent_run_ids", "recent_run_ids_of_repo"):
        assert "USING COVERING INDEX" in plans[name], (name, plans[name])


def _vm_steps(conn: sqlite3.Connection, read: Callable[[], object]) -> int:
    """How many SQLite virtual-machine instructions ``read`` executes on ``conn``."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        read()
    finally:
        conn.set_progress_handler(None, 1)
    return steps


def test_sqlite_status_reads_stay_flat_as_runs_accumulate(sqlite_db: Database) -> None:
    """/status is flat from few to many runs. Counted in VM steps, not time."""
    store = SqliteRunStore(sqlite_db)
    conn = sqlite_db.connection()
    reads: dict[str, Callable[[], object]] = {
        "get_run": lambda: store.get_run("app-0005"),
        "active_run": lambda: store.active_run(REPO),
        "recent_runs": lambda: store.recent_runs(limit=10),
        "recent_runs_of_repo": lambda: store.recent_runs(REPO, limit=10),
        "recent_run_ids": lambda: store.recent_run_ids(limit=20),
        "recent_run_ids_of_repo": lambda: store.recent_run_ids(REPO, limit=20),
        "audit_trail": lambda: store.audit_trail(limit=10),
        "audit_trail_of_run": lambda: store.audit_trail("app-0005", limit=10),
    }

    def add_runs(prefix: str, repo: str, count: int, start: float) -> None:
        for i in range(count):
            run_id = f"{prefix}-{i:04d}"
            store.create_run(
                make_run(run_id, repo=repo, created_at=start + i, state=RunState.SHIPPED)
            )
            store.append_audit(
                AuditEntry(at=start + i, actor="a", action="plan", outcome="ok", run_id=run_id)
            )

    add_runs("app", REPO, 20, T0)
    store.create_run(make_run("app-active", created_at=T0 + 50))
    small = {name: _vm_steps(conn, read) for name, read in reads.items()}

    for n in range(40):
        add_runs(f"lib{n:02d}", f"octo/lib{n:02d}", 100, T0 - 10_000 + n * 100)
    add_runs("app2", REPO, 1000, T0 - 20_000)
    assert len(conn.execute("SELECT run_id FROM store_runs").fetchall()) == 5021
    large = {name: _vm_steps(conn, read) for name, read in reads.items()}

    for name in reads:
        assert small[name] > 0, name
        assert large[name] <= small[name] * 1.2, (name, small[name], large[name])
