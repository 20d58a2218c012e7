"""The scheduler of ``[schedule]``: which slot of each cron expression is due, as a job.

One :meth:`Scheduler.tick` finds, for each configured schedule (``plan``, ``digest``),
the latest time at or before now that its cron expression fires in ``[schedule]
timezone``; if that slot began less than :data:`GRACE` ago it enqueues one ``schedule``
job under the slot's dedupe key. With served repositories each one's own ``[schedule]``
(the top level's, merged with its ``[repositories.schedule]``) gives its own slots, and
each slot's job names its repository, so only that repository posts it. The queue keeps
dedupe keys for a week, so however many processes tick (several ``valine serve``
workers on one database, a restart within the minute, EventBridge invoking twice) a slot
gives one job; the job itself is idempotent by what it stores (see
``valine.usecases.rhythm``). A slot missed by more than GRACE (the service was down at
9:00) is skipped rather than posted hours late.

The local service ticks in a thread every few seconds; on AWS an EventBridge schedule
runs the same tick every minute (``schedule_handler``). The cron library, cronsim, is
imported here only: never on the Discord or webhook path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from valine.core.errors import ConfigurationError
from valine.logs import get_logger

if TYPE_CHECKING:
    from valine.core.policy import Schedule
    from valine.ports import JobQueue

log = get_logger("valine.scheduler")

#: A slot is still posted this many seconds after it began (a late start, a slow tick).
GRACE = 15 * 60.0
#: The job kind of a scheduled slot (``valine.usecases.SCHEDULE``).
JOB_KIND = "schedule"
#: The payload key naming a job's repository (``valine.runtime.repositories.REPO_KEY``).
REPO_KEY = "repo"


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
    """Enqueues the due slot of each ``[schedule]`` entry once (see the module).

    ``repositories`` (``owner/name`` to its merged schedule): each repository's slots,
    each job naming its repository; without it, ``schedule``'s slots, each job for every
    repository. A bad cron expression or time zone raises ConfigurationError naming the
    repository whose schedule it is.
    """

    def __init__(
        self,
        schedule: Schedule,
        queue: JobQueue,
        clock: Callable[[], float],
        *,
        repositories: Mapping[str, Schedule] | None = None,
    ) -> None:
        check_schedule(schedule)
        for name, own in (repositories or {}).items():
            try:
                check_schedule(own)
            except ConfigurationError as exc:
                raise ConfigurationError(f"repositories: {name}: {exc}") from None
        self.schedule = schedule
        self.repositories = dict(repositories or {})
        self.queue = queue
        self._clock = clock

    def tick(self) -> list[str]:
        """Enqueue every due slot not enqueued yet; ``what:slot`` of each one enqueued
        (``what:slot:owner/name`` for a repository's)."""
        now = self._clock()
        if not self.repositories:
            return self._tick(self.schedule, None, now)
        added = []
        for name, schedule in self.repositories.items():
            added += self._tick(schedule, name, now)
        return added

    def _tick(self, schedule: Schedule, repo: str | None, now: float) -> list[str]:
        """Enqueue ``schedule``'s due slots (for ``repo``, or every repository if None)."""
        added = []
        for what, expression in schedule.entries.items():
            slot = latest_slot(expression, schedule.timezone, now)
            if now - slot > GRACE:
                continue
            payload: dict[str, object] = {"what": what, "slot": slot}
            key, shown = f"schedule:{what}:{int(slot)}", f"{what}:{int(slot)}"
            if repo is not None:
                payload[REPO_KEY] = repo
                key, shown = f"schedule:{what}:{repo.lower()}:{int(slot)}", f"{shown}:{repo}"
            if self.queue.enqueue(JOB_KIND, payload, dedupe_key=key):
                log.info("scheduled %s for the slot of %s (%s)", what, int(slot), repo or "all")
                added.append(shown)
        return added
