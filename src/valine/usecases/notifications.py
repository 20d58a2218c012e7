"""The notify job: show a run's state on its message; announce milestones and stale work once."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from valine.core import render
from valine.core.errors import DiscordUnavailable
from valine.core.models import Run
from valine.core.replies import Message
from valine.core.states import DEPLOY_DONE, RunState
from valine.ports import DiscordError
from valine.usecases.base import NOTIFY, TOKEN_LIFETIME, UseCaseBase, jobs, log


class NotificationsMixin(UseCaseBase):
    """Keep the run's Discord message current (scheduling is ``UseCaseBase.notify``)."""

    @jobs.register(NOTIFY)
    def run_notify_job(self, job: dict[str, Any]) -> None:
        """Show the run's current state on its message, and announce milestones once."""
        run = self.store.get_run(str(job["run_id"]))
        if not (run.discord.get("application_id") or run.discord.get("channel_id")):
            return
        try:
            self._show(run)
        except DiscordError as exc:  # the message deleted, say: announcements still go out
            log.warning("could not update the message of run %s: %s", run.run_id, exc)
        try:
            self._announce(run)
        except DiscordError as exc:
            log.warning("could not announce on Discord for run %s: %s", run.run_id, exc)

    def _token_fresh(self, run: Run) -> bool:
        issued = float(run.discord.get("token_at") or 0)
        return self.clock.now() - issued < TOKEN_LIFETIME

    def _show(self, run: Run) -> None:
        message = render.run_message(run, self.web_url)
        ref = run.discord
        if self._token_fresh(run):
            message_id = self.discord.edit_original(ref["application_id"], ref["token"], message)
            if ref.get("message_id") != message_id:
                self._update(
                    run.run_id,
                    lambda r: replace(r, discord={**r.discord, "message_id": message_id}),
                )
        elif ref.get("message_id") and ref.get("channel_id"):
            self.discord.edit_message(ref["channel_id"], ref["message_id"], message)

    def _announce(self, run: Run) -> None:
        """Post each announcement the run calls for exactly once (:func:`announcements`)."""
        for key, message in announcements(run, self.web_url):
            self._announce_one(run, key, message)
            run = self.store.get_run(run.run_id)

    def _announce_one(self, run: Run, key: str, message: Message) -> None:
        """Post announcement ``key`` exactly once.

        The announcement is first *claimed* in a conditional save (``sending <via>
        <nonce>``); only then is it posted, and afterwards marked ``posted``. A channel
        message carries the claim's ``nonce`` with ``enforce_nonce``, so a later attempt
        that finds the claim unconfirmed sends it again and Discord returns the first
        message instead of making a second. An interaction follow-up has no nonce: a
        follow-up whose answer was lost is not sent again (it may have arrived).
        """
        status = run.announced.get(key)
        if status == POSTED:
            return
        if status is None:
            status = self._claim(run, key)
            if status is None:
                return  # another attempt claimed it first and is posting it
        elif status.startswith("sending followup"):
            log.warning(
                "announcement %s of run %s may have been posted; not resent", key, run.run_id
            )
            self._set_announced(run.run_id, key, POSTED)
            return
        via, nonce = _claim_parts(status)
        try:
            if via == "followup":
                self.discord.followup(run.discord["application_id"], run.discord["token"], message)
            elif via == "channel":
                self.discord.create_message(run.discord["channel_id"], message, nonce=nonce)
        except DiscordUnavailable as exc:
            if not exc.request_sent:
                self._set_announced(run.run_id, key, None)  # never arrived: claim again
            raise
        self._set_announced(run.run_id, key, POSTED)

    def _claim(self, run: Run, key: str) -> str | None:
        """Claim announcement ``key`` in a conditional save; the claim, or None if taken."""
        if self._token_fresh(run):
            via = "followup"
        elif run.discord.get("channel_id"):
            via = "channel"
        else:
            log.warning("run %s: nowhere to announce %s (no token, no channel)", run.run_id, key)
            via = "nowhere"
        nonce = hashlib.sha256(f"{run.run_id}:{key}:{self.clock.now()}".encode()).hexdigest()
        claim = f"sending {via} {nonce[:NONCE_LENGTH]}"
        saved = self._update(
            run.run_id,
            lambda r: (
                None if key in r.announced else replace(r, announced={**r.announced, key: claim})
            ),
        )
        return None if saved is None else claim

    def _set_announced(self, run_id: str, key: str, status: str | None) -> None:
        def mark(r: Run) -> Run:
            announced = {k: v for k, v in r.announced.items() if k != key}
            if status is not None:
                announced[key] = status
            return replace(r, announced=announced)

        self._update(run_id, mark)


#: What an announcement's status becomes once Discord confirmed it.
POSTED = "posted"
#: Discord takes a nonce of at most 25 characters.
NONCE_LENGTH = 25


def _claim_parts(claim: str) -> tuple[str, str]:
    """``(via, nonce)`` of a ``sending <via> <nonce>`` claim."""
    _, via, nonce = claim.split(" ", 2)
    return via, nonce


def announcements(run: Run, web_url: str) -> list[tuple[str, Message]]:
    """Every announcement the run calls for now, ``(key, message)``: its milestone's
    (:func:`announcement`), one per stale event (:func:`stale_announcements`), and a
    shipped run's deployment outcome (``deploy:<attempt>``) after its ship summary."""
    milestone = announcement(run, web_url)
    found = [*stale_announcements(run), *([milestone] if milestone else [])]
    deploy = run.deploy
    if run.state is RunState.SHIPPED and deploy is not None and deploy.state in DEPLOY_DONE:
        found.append((f"deploy:{deploy.attempt}", render.deploy_outcome_message(run)))
    return found


def stale_announcements(run: Run) -> list[tuple[str, Message]]:
    """``stale:<issue>:<n>`` for the n-th time a task went stale (its latest time only).

    A task counts its stale events (``Task.stales``): a re-dispatch after one and a
    second expiry are two events, two announcements; the same event is one key, so a
    reconcile or notify that runs again announces nothing more.
    """
    return [
        (f"stale:{task.issue_number}:{task.stales}", render.stale_message(run, task))
        for task in run.tasks
        if task.stales > 0
    ]


def announcement(run: Run, web_url: str) -> tuple[str, Message] | None:
    """The milestone announcement the run's state calls for: ``(key, message)``, or None.

    The key names the milestone once per run (``ready``, ``shipped``, ``failed``) or
    once per episode (``ship_failed:<n>``: the n-th time the run entered ``ship_failed``).
    """
    if run.state is RunState.SHIPPED:
        return "shipped", render.ship_summary(run, web_url)
    if run.state is RunState.READY_TO_SHIP:
        return "ready", render.ready_message(run)
    if run.state is RunState.SHIP_FAILED:
        episode = run.entered.get(RunState.SHIP_FAILED.value, 1)
        return f"ship_failed:{episode}", render.ship_failed_message(run)
    if run.state is RunState.FAILED:
        return "failed", Message(f"❌ Run `{run.run_id}` failed: {run.reason}")
    return None
