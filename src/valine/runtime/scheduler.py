"""The scheduler of ``[schedule]``: which slot of each cron expression is due, as a job.

One :meth:`Scheduler.tick` finds, for each configured schedule (``plan``, ``digest``),
the latest time at or before now that its cron expression fires in ``[schedule]
timezone``; if that slot began less than :data:`GRACE` ago it enqueues one ``schedule``
job under the slot's dedupe key. The queue keeps dedupe keys for a week, so however many
processes tick (several ``valine serve`` workers on one database, a restart within the
minute, EventBridge invoking twice) a slot gives one job; the job itself is idempotent
by what it stores (see ``valine.usecases.rhythm``). A slot missed by more than GRACE (the
service was down at 9:00) is skipped rather than posted hours late.

The local service ticks in a thread every few seconds; on AWS an EventBridge schedule
runs the same tick every minute (``schedule_handler``). The cron library, cronsim, is
imported here only: never on the Discord or webhook path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from valine.core.errors import ConfigurationError

if TYPE_CHECKING:
    from valine.core.policy import Schedule
    from valine.ports import JobQueue

log = logging.getLogger("valine.scheduler")

#: A slot is still posted this many seconds after it began (a late start, a slow tick).
GRACE = 15 * 60.0
#: The job kind of a scheduled slot (``valine.usecases.SCHEDULE``).
JOB_KIND = "schedule"


def _zone(name: str):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"schedule.timezone: {name!r} is not a time zone (an IANA name: Europe/Paris)"
        ) from exc


def check_schedule(schedule: Schedule) -> None:
    """Raise ConfigurationError naming the key of a bad cron expression or time zone."""
    from cronsim import CronSim, CronSimError

    zone = _zone(schedule.timezone)
    for what, expression in schedule.entries.items():
        try:
            CronSim(expression, datetime.now(zone))
        except CronSimError as exc:
            raise ConfigurationError(
                f"schedule.{what}: {expression!r} is not a cron expression ({exc})"
            ) from exc


def latest_slot(expression: str, timezone: str, now: float) -> float:
    """The latest time at or before ``now`` that ``expression`` fires (epoch seconds)."""
    from cronsim import CronSim

    moment = datetime.fromtimestamp(int(now), _zone(timezone)) + timedelta(seconds=1)
    return next(CronSim(expression, moment, reverse=True)).timestamp()


def next_slot(expression: str, timezone: str, after: float) -> float:
    """The first time after ``after`` that ``expression`` fires (epoch seconds)."""
    from cronsim import CronSim

    return next(CronSim(expression, datetime.fromtimestamp(after, _zone(timezone)))).timestamp()


class Scheduler:
    """Enqueues the due slot of each ``[schedule]`` entry once (see the module)."""

    def __init__(self, schedule: Schedule, queue: JobQueue, clock: Callable[[], float]) -> None:
        check_schedule(schedule)
        self.schedule = schedule
        self.queue = queue
        self._clock = clock

    def tick(self) -> list[str]:
        """Enqueue every due slot not enqueued yet; ``what:slot`` of each one enqueued."""
        now = self._clock()
        added = []
        for what, expression in self.schedule.entries.items():
            slot = latest_slot(expression, self.schedule.timezone, now)
            if now - slot > GRACE:
                continue
            payload = {"what": what, "slot": slot}
            if self.queue.enqueue(JOB_KIND, payload, dedupe_key=f"schedule:{what}:{int(slot)}"):
                log.info("scheduled %s for the slot of %s", what, int(slot))
                added.append(f"{what}:{int(slot)}")
        return added
