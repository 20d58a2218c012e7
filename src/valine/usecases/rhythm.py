"""The day's rhythm: the scheduled plan (or a reminder of the active run) and the digest.

The scheduler (``valine.runtime.scheduler``: a thread of ``valine serve``, an EventBridge
schedule on AWS) enqueues one ``schedule`` job per slot, under the slot's dedupe key.
The job is idempotent by what it leaves in the store:

* **plan**: the planned run records the slot (``origin = "schedule:<slot>"``); a second
  copy of the job finds it (active or finished) and only makes sure its message is
  posted. The message is claimed in the run (``announced["plan"]``) before it is posted
  with Discord's ``nonce``/``enforce_nonce``, like every announcement.
* **reminder** (a run is active at the slot): an announcement of that run, keyed by the
  slot, so exactly once.
* **digest**: the slot is claimed (``schedule:digest:<owner/name>:<slot>``: each
  repository of a deployment posts its own) before the message is posted with a nonce
  of the slot; nothing in it calls GitHub.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from typing import Any

from valine.core import render
from valine.core.models import Run
from valine.core.replies import Answer, Message, Reply
from valine.ports import DiscordError
from valine.usecases.base import SCHEDULE, UseCaseBase, jobs, log
from valine.usecases.notifications import NotificationsMixin
from valine.usecases.planning import PlanningMixin
from valine.usecases.router import READS, Call, Router

#: The command of this module.
ROUTES = Router()

#: How long a slot's claim (the digest's) is kept: longer than any retry.
SLOT_TTL = 7 * 24 * 3600.0
#: How many recent runs a digest reads (a day's runs follow one another).
DIGEST_RUNS = 25
NONCE_LENGTH = 25


def slot_origin(slot: float) -> str:
    """What a run planned for the scheduled slot ``slot`` records as its origin."""
    return f"schedule:{int(slot)}"


def _nonce(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:NONCE_LENGTH]


class DigestMixin(UseCaseBase):
    """The digest, on demand (``/digest``) and on schedule, from stored state only."""

    def day_start(self, now: float) -> float:
        """The start of today in ``[schedule] timezone`` (UTC by default), epoch seconds."""
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(self.policy.schedule.timezone)
        local = datetime.fromtimestamp(now, zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def digest_message(self) -> Message:
        """Today's digest from the stored runs (no GitHub request)."""
        from valine.core.digest import day_digest, digest_message

        now = self.clock.now()
        runs = self.store.recent_runs(self.repo, limit=DIGEST_RUNS)
        return digest_message(day_digest(runs, self.day_start(now)), self.repo, self.web_url)

    def digest_answer(self) -> Answer:
        """``/digest``: today's digest, posted in the channel."""
        return Reply(self.digest_message())


class ScheduleMixin(PlanningMixin, NotificationsMixin, DigestMixin):
    """The scheduled jobs: the daily plan (or a reminder) and the digest."""

    @jobs.register(SCHEDULE)
    def run_schedule_job(self, job: dict[str, Any]) -> None:
        """One scheduled slot: ``{"what": "plan" | "digest", "slot": <epoch seconds>}``."""
        what, slot = str(job["what"]), float(job["slot"])
        if not self.repo or not self.policy.schedule.channel_id:
            log.warning("scheduled %s skipped: no repository or no [schedule] channel_id", what)
            return
        if what == "plan":
            self.scheduled_plan(slot)
        elif what == "digest":
            self.scheduled_digest(slot)
        else:
            log.warning("unknown scheduled job %r ignored", what)

    def scheduled_plan(self, slot: float) -> None:
        """Post the plan for approval, or remind of the active run; nothing without issues."""
        origin = slot_origin(slot)
        active = self.store.active_run(self.repo)
        if active is not None and active.origin == origin:
            self._post_plan(active)  # a second copy of this slot's job
            return
        if active is not None:
            self._remind(active, slot)
            return
        if any(r.origin == origin for r in self.store.recent_runs(self.repo, limit=5)):
            return  # this slot's run was planned and has ended already
        channel = str(self.policy.schedule.channel_id)
        run = self.create_scheduled_run(channel, origin)
        if run is None:
            log.info("scheduled plan: no ready issues, nothing posted")
            return
        if run.origin != origin:  # someone typed /plan at the same moment
            self._remind(run, slot)
            return
        self._post_plan(run)

    def _post_plan(self, run: Run) -> None:
        """Post a scheduled run's plan message in the channel, once (claimed in the run)."""
        if run.announced.get("plan") == "posted":
            return
        nonce = _nonce(run.run_id, "plan")

        def claim(current: Run) -> Run | None:
            if current.announced.get("plan") == "posted":
                return None
            return replace(current, announced={**current.announced, "plan": f"sending {nonce}"})

        if self._update(run.run_id, claim) is None:
            return
        message = render.run_message(self.store.get_run(run.run_id), self.web_url)
        message_id = self.discord.create_message(run.discord["channel_id"], message, nonce=nonce)

        def posted(current: Run) -> Run:
            return replace(
                current,
                announced={**current.announced, "plan": "posted"},
                discord={**current.discord, "message_id": message_id},
            )

        self._update(run.run_id, posted)
        log.info("scheduled plan %s posted", run.run_id)

    def _remind(self, run: Run, slot: float) -> None:
        """A short reminder of the active run, once per slot (an announcement of the run)."""
        done = sum(1 for t in run.tasks if t.state.value in ("checks_passed", "merged", "skipped"))
        message = Message(
            f"⏰ Run `{run.run_id}` is still {render.state_label(run)} "
            f"({done}/{len(run.tasks)} ready): no new plan today until it ends. "
            f"`/status {run.run_id}` shows where it stands."
        )
        if not run.discord.get("channel_id"):
            run = self._update(
                run.run_id,
                lambda r: replace(
                    r, discord={**r.discord, "channel_id": str(self.policy.schedule.channel_id)}
                ),
            ) or self.store.get_run(run.run_id)
        self._announce_one(run, f"reminder:{int(slot)}", message)

    def scheduled_digest(self, slot: float) -> None:
        """Post the day's digest in the schedule's channel, once per slot."""
        if not self.queue.claim(f"schedule:digest:{self.repo.lower()}:{int(slot)}", SLOT_TTL):
            return
        channel = str(self.policy.schedule.channel_id)
        try:
            self.discord.create_message(
                channel, self.digest_message(), nonce=_nonce("digest", self.repo.lower(), slot)
            )
        except DiscordError as exc:
            log.error("the digest of slot %s could not be posted: %s", int(slot), exc)
            return
        log.info("digest of slot %s posted", int(slot))


@ROUTES.command("digest", needs=READS)
def _digest(uc: DigestMixin, call: Call) -> Answer:
    return uc.digest_answer()
