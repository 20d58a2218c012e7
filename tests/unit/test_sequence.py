"""The process's rising nanosecond clock: every answer is new and later than the last."""

from __future__ import annotations

import threading

import pytest

from valine.infra import sequence
from valine.infra.sequence import rising_ns

THREADS = 8
CALLS = 20_000


def test_answers_from_many_threads_are_all_distinct_and_rise_in_each_thread() -> None:
    answers: list[list[int]] = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def draw(mine: list[int]) -> None:
        start.wait()
        mine.extend(rising_ns() for _ in range(CALLS))

    threads = [threading.Thread(target=draw, args=(mine,)) for mine in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for mine in answers for value in mine]
    assert len(set(every)) == THREADS * CALLS
    assert all(mine == sorted(mine) and len(set(mine)) == CALLS for mine in answers)


@pytest.mark.parametrize("clock", [[5] * 50, list(range(100, 50, -1))])
def test_it_rises_where_the_clock_stands_still_or_steps_back(
    clock: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = rising_ns()
    readings = iter(clock)
    monkeypatch.setattr(sequence.time, "time_ns", lambda: next(readings))
    drawn = [rising_ns() for _ in clock]
    assert drawn == list(range(before + 1, before + 1 + len(clock)))
