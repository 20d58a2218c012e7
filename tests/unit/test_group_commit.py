"""Group commit of webhook jobs: SqliteJobQueue.enqueue_many and the server's GroupCommit.

enqueue_many must answer, per job, exactly what one enqueue after another would have
(a duplicate key, in the batch or already stored, is False), store the same jobs, and
commit all of them or none. GroupCommit must put the jobs of the requests of one event
loop turn into one such batch and answer each only once the batch is committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valine.core.errors import QueueUnavailable
from valine.http import Deferred, Response, json_response
from valine.infra.sqlite import Database
from valine.queue.sqlite import SqliteJobQueue
from valine.runtime.server import GroupCommit, enqueue_all
from valine.testing.clock import ManualClock


def stored(queue: SqliteJobQueue) -> list[tuple[str, str, str]]:
    """Every job row as (kind, payload, dedupe key), in insertion order."""
    rows = queue.db.connection().execute(
        "SELECT kind, payload, dedupe_key FROM queue_jobs ORDER BY seq"
    )
    return [tuple(row) for row in rows]


def keys(queue: SqliteJobQueue) -> set[str]:
    return {row[0] for row in queue.db.connection().execute("SELECT key FROM queue_dedupe")}


def job(key: str, n: int = 0) -> tuple[str, dict[str, Any], str]:
    return ("github_event", {"delivery_id": key, "n": n, "text": "é \u2028"}, key)


@given(
    before=st.lists(st.sampled_from("abcdefgh"), max_size=6),
    batch=st.lists(st.sampled_from("abcdefghij"), max_size=12),
    expired=st.booleans(),
)
def test_enqueue_many_answers_as_one_enqueue_after_another(
    tmp_path_factory: pytest.TempPathFactory, before: list[str], batch: list[str], expired: bool
) -> None:
    root = tmp_path_factory.mktemp("many")
    clocks = [ManualClock(1_000.0), ManualClock(1_000.0)]
    grouped = SqliteJobQueue.from_url(f"sqlite:///{root}/a.db", clock=clocks[0], dedupe_ttl=60)
    one_by_one = SqliteJobQueue.from_url(f"sqlite:///{root}/b.db", clock=clocks[1], dedupe_ttl=60)
    try:
        for queue in (grouped, one_by_one):
            for key in before:
                queue.enqueue(*job(key)[:2], dedupe_key=key)
        if expired:  # the keys stored before have expired: they may be used again
            for clock in clocks:
                clock.advance(61)
        jobs = [job(key, n) for n, key in enumerate(batch)]
        answers = grouped.enqueue_many(jobs)
        expected = [one_by_one.enqueue(kind, p, dedupe_key=k) for kind, p, k in jobs]
        assert answers == expected
        assert stored(grouped) == stored(one_by_one)
        assert keys(grouped) == keys(one_by_one)
    finally:
        grouped.close()
        one_by_one.close()


def test_a_batch_larger_than_one_statement_is_committed_whole(tmp_path: Path) -> None:
    queue = SqliteJobQueue.from_url(f"sqlite:///{tmp_path}/q.db")
    jobs = [job(f"k{i}", i) for i in range(450)] + [job("k3")]
    answers = queue.enqueue_many(jobs)
    assert answers == [True] * 450 + [False]
    assert len(stored(queue)) == 450
    assert queue.enqueue_many([]) == []


def test_a_failed_batch_commits_nothing(tmp_path: Path) -> None:
    queue = SqliteJobQueue.from_url(f"sqlite:///{tmp_path}/q.db")
    unserialisable = ("github_event", {"x": object()}, "bad")
    with pytest.raises(TypeError):
        queue.enqueue_many([job("a"), unserialisable, job("b")])
    assert stored(queue) == [] and keys(queue) == set()
    # The keys were not spent: the same deliveries are accepted afterwards.
    assert queue.enqueue_many([job("a"), job("b")]) == [True, True]


def deferred(key: str, seen: list[tuple[str, bool, int]], db: Path) -> Deferred:
    """A webhook-like step whose finish records what another connection sees committed."""

    def finish(added: bool) -> Response:
        with sqlite3.connect(db) as conn:
            (committed,) = conn.execute(
                "SELECT count(*) FROM queue_jobs WHERE dedupe_key = ?", (key,)
            ).fetchone()
        seen.append((key, added, committed))
        return json_response(202 if added else 200, {"key": key})

    kind, payload, _ = job(key)
    return Deferred(kind, payload, key, finish)


def test_one_turns_requests_share_one_commit_and_answer_after_it(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    queue = SqliteJobQueue.from_url(f"sqlite:///{db}")
    commits = GroupCommit(queue)
    seen: list[tuple[str, bool, int]] = []

    async def request(key: str) -> int:
        step = deferred(key, seen, db)
        return step.finish(await commits.add(step)).status

    async def main() -> list[int]:
        first = await asyncio.gather(*(request(k) for k in ["a", "b", "a", "c"]))
        second = await request("b")  # a later turn: its own batch
        return [*first, second]

    assert asyncio.run(main()) == [202, 202, 200, 202, 200]
    assert (commits.batches, commits.jobs) == (2, 5)
    # Each answer was made with its job already visible to another connection.
    assert all(committed == 1 for _, _, committed in seen)
    assert [added for _, added, _ in seen] == [True, True, False, True, False]


def test_a_failed_commit_fails_every_request_of_its_batch(tmp_path: Path) -> None:
    queue = SqliteJobQueue.from_url(f"sqlite:///{tmp_path}/q.db")
    commits = GroupCommit(queue)

    def broken(jobs: Any) -> list[bool]:
        raise QueueUnavailable("the database is locked")

    queue.enqueue_many = broken  # type: ignore[method-assign]

    async def main() -> list[object]:
        steps = [deferred(k, [], tmp_path / "q.db") for k in "ab"]
        return await asyncio.gather(*(commits.add(s) for s in steps), return_exceptions=True)

    assert [type(r) for r in asyncio.run(main())] == [QueueUnavailable, QueueUnavailable]
    assert stored(queue) == []


def test_enqueue_all_falls_back_to_one_enqueue_per_job() -> None:
    from valine.testing.memory import MemoryJobQueue

    queue = MemoryJobQueue()
    assert enqueue_all(queue, [job("a"), job("a"), job("b")]) == [True, False, True]
    assert queue.depth() == 2


class GatedQueue(SqliteJobQueue):
    """A SQLite queue whose first batch waits, inside its commit, for ``gate`` to open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.threads: list[int] = []
        self.batches: list[list[str]] = []

    def enqueue_many(self, jobs: Any) -> list[bool]:
        self.threads.append(threading.get_ident())
        self.batches.append([key for _, _, key in jobs])
        if len(self.batches) == 1:
            self.entered.set()
            if not self.gate.wait(timeout=10):
                raise AssertionError("the event loop never ran while the batch committed")
        return super().enqueue_many(jobs)


def test_the_event_loop_runs_while_a_batch_commits_and_later_jobs_form_the_next_batch(
    tmp_path: Path,
) -> None:
    db = tmp_path / "q.db"
    queue = GatedQueue(Database(db))
    commits = GroupCommit(queue)
    seen: list[tuple[str, bool, int]] = []

    async def request(key: str) -> int:
        step = deferred(key, seen, db)
        return step.finish(await commits.add(step)).status

    async def main() -> tuple[list[int], int]:
        first = asyncio.create_task(request("a"))
        while not queue.entered.is_set():  # the first batch is now inside its commit
            await asyncio.sleep(0.001)
        later = [asyncio.create_task(request(k)) for k in ("b", "a", "c")]
        await asyncio.sleep(0.01)
        answered_early = sum(task.done() for task in [first, *later])
        queue.gate.set()  # only the event loop can open it: it was not blocked
        return await asyncio.gather(first, *later), answered_early

    statuses, answered_early = asyncio.run(main())
    commits.close()
    assert answered_early == 0  # nobody is answered before its own batch is committed
    assert statuses == [202, 202, 200, 202]
    assert queue.batches == [["a"], ["b", "a", "c"]]  # those added meanwhile: one batch
    assert threading.get_ident() not in queue.threads  # committed off the loop's thread
    assert all(committed == 1 for _, _, committed in seen)
