"""The scheduler: each slot of each cron expression gives one job, on a real SQLite queue."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import examples
from valine.core.errors import ConfigurationError
from valine.core.policy import Schedule
from valine.infra.sqlite import Database
from valine.queue.sqlite import SqliteJobQueue
from valine.runtime.scheduler import GRACE, Scheduler, check_schedule, latest_slot, next_slot

PARIS = ZoneInfo("Europe/Paris")


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=PARIS).timestamp()  # type: ignore[misc]


def queue(tmp_path: Path) -> SqliteJobQueue:
    return SqliteJobQueue(Database(tmp_path / "q.db"))


def test_a_slot_is_enqueued_once_by_any_number_of_schedulers(tmp_path: Path) -> None:
    schedule = Schedule("Europe/Paris", plan="0 9 * * 1-5", digest="0 17 * * 1-5", channel_id="1")
    shared = queue(tmp_path)
    now = [at(2027, 1, 4, 9, 0, 3)]  # a Monday, 9:00:03 in Paris
    schedulers = [Scheduler(schedule, shared, lambda: now[0]) for _ in range(3)]
    added = [s.tick() for s in schedulers]
    assert added[0] == [f"plan:{int(at(2027, 1, 4, 9, 0))}"]
    assert added[1:] == [[], []]
    now[0] = at(2027, 1, 4, 9, 14)  # later ticks within the slot's grace: nothing new
    assert [s.tick() for s in schedulers] == [[], [], []]
    now[0] = at(2027, 1, 4, 17, 0, 1)
    assert schedulers[2].tick() == [f"digest:{int(at(2027, 1, 4, 17, 0))}"]
    job = shared.lease(30)
    assert job is not None and job.kind == "schedule"
    assert job.payload == {"what": "plan", "slot": at(2027, 1, 4, 9, 0)}


def test_a_slot_missed_by_more_than_the_grace_is_skipped(tmp_path: Path) -> None:
    schedule = Schedule("Europe/Paris", plan="0 9 * * 1-5", channel_id="1")
    late = at(2027, 1, 4, 9, 0) + GRACE + 1
    assert Scheduler(schedule, queue(tmp_path), lambda: late).tick() == []
    weekend = at(2027, 1, 9, 9, 0, 5)  # a Saturday
    assert Scheduler(schedule, queue(tmp_path / "x.db"), lambda: weekend).tick() == []


def test_slots_follow_the_time_zone_across_daylight_saving() -> None:
    # Paris moves to summer time on 2027-03-28: 9:00 is 08:00 UTC before, 07:00 after.
    before = next_slot("0 9 * * *", "Europe/Paris", at(2027, 3, 27, 0, 0))
    after = next_slot("0 9 * * *", "Europe/Paris", at(2027, 3, 28, 0, 0))
    assert datetime.fromtimestamp(before, ZoneInfo("UTC")).hour == 8
    assert datetime.fromtimestamp(after, ZoneInfo("UTC")).hour == 7
    assert latest_slot("0 9 * * *", "Europe/Paris", after) == after
    assert latest_slot("0 9 * * *", "Europe/Paris", after - 1) == before


@settings(max_examples=examples(200))
@given(st.floats(min_value=1.7e9, max_value=2.2e9))
def test_the_latest_slot_is_the_one_before_the_next(now: float) -> None:
    slot = latest_slot("*/15 9-17 * * 1-5", "America/New_York", now)
    assert slot <= now
    assert next_slot("*/15 9-17 * * 1-5", "America/New_York", slot) > now


@pytest.mark.parametrize(
    ("schedule", "key"),
    [
        (Schedule("Europe/Paris", plan="61 9 * * *", channel_id="1"), "schedule.plan"),
        (Schedule("Europe/Paris", digest="every day", channel_id="1"), "schedule.digest"),
        (Schedule("Mars/Olympus", plan="0 9 * * *", channel_id="1"), "schedule.timezone"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_key(schedule: Schedule, key: str) -> None:
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")):
        check_schedule(schedule)


def test_each_repository_ticks_its_own_slots_once(tmp_path: Path) -> None:
    """rocket keeps the top level's 9:00 plan; probe plans at 10:00 in UTC and posts a
    digest. Each slot's job names its repository (only it posts), once for any number of
    schedulers."""
    top = Schedule("Europe/Paris", plan="0 9 * * 1-5", channel_id="1")
    own = {
        "acme/rocket": Schedule("Europe/Paris", plan="0 9 * * 1-5", channel_id="100"),
        "acme/probe": Schedule("UTC", plan="0 10 * * *", digest="0 18 * * *", channel_id="200"),
    }
    shared = queue(tmp_path)
    now = [at(2027, 1, 4, 9, 0, 3)]  # Monday 9:00:03 in Paris, 8:00 UTC
    schedulers = [Scheduler(top, shared, lambda: now[0], repositories=own) for _ in range(2)]
    nine = int(at(2027, 1, 4, 9, 0))
    assert [s.tick() for s in schedulers] == [[f"plan:{nine}:acme/rocket"], []]
    now[0] = at(2027, 1, 4, 11, 0, 5)  # 10:00:05 UTC
    ten = int(datetime(2027, 1, 4, 10, tzinfo=ZoneInfo("UTC")).timestamp())
    assert [s.tick() for s in schedulers] == [[f"plan:{ten}:acme/probe"], []]
    payloads = []
    while (job := shared.lease(30)) is not None:
        payloads.append(job.payload)
        shared.ack(job)
    assert payloads == [
        {"what": "plan", "slot": float(nine), "repo": "acme/rocket"},
        {"what": "plan", "slot": float(ten), "repo": "acme/probe"},
    ]


def test_a_bad_cron_expression_of_a_repository_names_it(tmp_path: Path) -> None:
    own = {"acme/probe": Schedule("UTC", plan="every morning", channel_id="2")}
    with pytest.raises(ConfigurationError, match=r"^repositories: acme/probe: schedule.plan"):
        Scheduler(Schedule(), queue(tmp_path), lambda: 0.0, repositories=own)
