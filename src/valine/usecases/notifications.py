"""The notify job: show a run's state on its message; post its events and milestones once.

The plan message stays in the channel and is edited in place. The run's events (pull
requests opened, checks red and green, retries, stale work, ship results ...) go into a
thread started from the plan message (:mod:`valine.core.threads`), archived when the run
has ended. Without the thread permissions the run's announcements go to the channel as
before threads, and the run says so once.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from valine.core import render, threads
from valine.core.errors import ConfigurationError, DiscordUnavailable
from valine.core.models import Run
from valine.core.replies import Message
from valine.core.states import DEPLOY_DONE, RunState
from valine.ports import ARCHIVED_THREAD, THREAD_LOCKED, UNKNOWN_CHANNEL, DiscordError
from valine.usecases.base import NOTIFY, STALL_AFTER, TOKEN_LIFETIME, UseCaseBase, jobs, log


class NotificationsMixin(UseCaseBase):
    """Keep the run's Discord message current (scheduling is ``UseCaseBase.notify``)."""

    @jobs.register(NOTIFY)
    def run_notify_job(self, job: dict[str, Any]) -> None:
        """Show the run's current state on its message, post what it calls for once, and
        archive its thread when it has ended."""
        run = self.store.get_run(str(job["run_id"]))
        if not (run.discord.get("application_id") or run.discord.get("channel_id")):
            return
        try:
            self._show(run)
        except DiscordError as exc:  # the message deleted, say: announcements still go out
            log.warning("could not update the message of run %s: %s", run.run_id, exc)
        try:
            self._announce(self.store.get_run(run.run_id))
            self._archive_if_ended(self.store.get_run(run.run_id))
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
                self._note(
                    run.run_id,
                    lambda r: replace(r, discord={**r.discord, "message_id": message_id}),
                )
        elif ref.get("message_id") and ref.get("channel_id"):
            self.discord.edit_message(ref["channel_id"], ref["message_id"], message)

    def _announce(self, run: Run) -> None:
        """Post each message the run calls for exactly once (:meth:`_posts`), in its
        thread when it has one (started here, for the first), else where it always went."""
        if run.thread is None and any(
            run.announced.get(key) != POSTED for key, _ in self._posts(run, hopeful=True)
        ):
            run = self._open_thread(run)
        for key, message in self._posts(run):
            try:
                self._announce_one(run, key, message)
            except _ThreadClosed:
                self._announce(self.store.get_run(run.run_id))  # now in the channel
                return
            run = self.store.get_run(run.run_id)
        self._let_go_of_passed_claims(run)

    def _let_go_of_passed_claims(self, run: Run) -> None:
        """Mark ``superseded`` each claim on a post the run no longer calls for.

        Such a claim was left by an attempt whose answer was lost (or that died) before
        the run moved on: a red check of a commit since pushed over, say. Its post may
        or may not have arrived, and it is not sent again; without this, the claim would
        keep an ended run's thread from being archived. An attempt still posting it marks
        it ``posted`` afterwards, as before.
        """
        wanted = {key for key, _ in self._posts(run)}
        passed = {k: v for k, v in run.announced.items() if k not in wanted and _is_claim(v)}
        if not passed:
            return

        def let_go(current: Run) -> Run | None:
            gone = {k: SUPERSEDED for k, v in passed.items() if current.announced.get(k) == v}
            return replace(current, announced={**current.announced, **gone}) if gone else None

        self._note(run.run_id, let_go)

    def _posts(self, run: Run, *, hopeful: bool = False) -> list[tuple[str, Message]]:
        """What the run calls for now: in its thread (``hopeful``: in the thread it may
        get) its events and its announcements; without one, its announcements (after
        the notice, if threads were refused)."""
        started = run.thread_id is not None or (hopeful and run.thread is None)
        if started and threads.uses_thread(run):
            return [*threads.thread_events(run, self.web_url), *announcements(run, self.web_url)]
        notice = [(threads.REFUSED_NOTICE, threads.refused_notice(run))]
        refused = run.thread == threads.REFUSED
        return [*(notice if refused else []), *announcements(run, self.web_url)]

    def _open_thread(self, run: Run) -> Run:
        """The run with its thread started from the plan message, if it can have one.

        Starting is idempotent (Discord allows one thread per message and the adapter
        finds the one made by an attempt whose answer was lost), so it needs no claim. A
        refusal for want of permissions marks the run ``refused`` (the channel, and a
        notice); a plan message that cannot have a thread (in a thread itself, deleted)
        marks it ``none`` (the channel, no notice).
        """
        channel_id, message_id = run.discord.get("channel_id"), run.discord.get("message_id")
        if run.thread is not None or not (channel_id and message_id):
            return run
        try:
            thread_id: str | None = self.discord.start_thread(
                channel_id, message_id, threads.thread_name(run)
            )
            state = threads.OPEN
        except ConfigurationError as exc:  # no bot token: the interaction routes still work
            log.warning("run %s: no thread (%s)", run.run_id, exc)
            return run
        except DiscordError as exc:
            log.warning("run %s: no thread for its events: %s", run.run_id, exc)
            thread_id, state = None, threads.REFUSED if exc.refused else threads.NONE
        saved = self._note(
            run.run_id,
            lambda r: (
                None if r.thread is not None else replace(r, thread=state, thread_id=thread_id)
            ),
        )
        return saved or self.store.get_run(run.run_id)

    def _archive_if_ended(self, run: Run) -> None:
        """Archive the thread of a run that has ended (its deployment too, if any).

        Archiving is idempotent; a later post (a deployment outcome) unarchives the
        thread and the run is archived again after it. While another attempt holds a
        claim on a post, that attempt archives after it; if that attempt died (or the
        archive failed), the reconcile finds the ended run's thread still open
        (:func:`awaits_archive`) and runs this job again, which sends the claimed post
        with its nonce and archives.
        """
        if run.thread != threads.OPEN or run.thread_id is None or run.active:
            return
        if run.deploy is not None and run.deploy.state not in DEPLOY_DONE:
            return
        if not all(_settled(status) for status in run.announced.values()):
            return  # another attempt is posting: it archives after its post
        if not all(_settled(run.announced.get(key)) for key, _ in self._posts(run)):
            return  # the run moved on since this job posted: its own notify posts, archives
        state = threads.ARCHIVED
        try:
            self.discord.archive_thread(run.thread_id)
        except DiscordError as exc:
            if exc.code != UNKNOWN_CHANNEL:
                raise
            state = threads.NONE  # a moderator deleted it: nothing left to archive
        self._note(
            run.run_id,
            lambda r: replace(r, thread=state) if r.thread == threads.OPEN else None,
        )

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
        if _settled(status):
            return  # posted, or let go when the run had moved on (it may have arrived)
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
            elif via == "thread":
                self._post_in_thread(run, key, message, nonce)
        except DiscordUnavailable as exc:
            if not exc.request_sent:
                self._set_announced(run.run_id, key, None)  # never arrived: claim again
            raise
        self._set_announced(run.run_id, key, POSTED)

    def _post_in_thread(self, run: Run, key: str, message: Message, nonce: str) -> None:
        """Post in the run's thread; a thread the bot may no longer post in (permission
        taken, thread locked or deleted by a moderator) sends the run back to the channel."""
        thread_id = run.thread_id or ""
        try:
            self.discord.create_message(thread_id, message, nonce=nonce)
        except DiscordError as exc:
            if not (exc.refused or exc.code in (THREAD_LOCKED, ARCHIVED_THREAD, UNKNOWN_CHANNEL)):
                raise
            log.warning("run %s: cannot post in its thread: %s", run.run_id, exc)
            state = threads.REFUSED if exc.refused else threads.NONE
            self._note(run.run_id, lambda r: replace(r, thread=state))
            self._set_announced(run.run_id, key, None)  # not posted: claim again
            raise _ThreadClosed(key) from None
        if run.thread == threads.ARCHIVED:  # the post unarchived it
            self._note(
                run.run_id,
                lambda r: replace(r, thread=threads.OPEN) if r.thread == threads.ARCHIVED else None,
            )

    def _claim(self, run: Run, key: str) -> str | None:
        """Claim announcement ``key`` in a conditional save; the claim, or None if taken."""
        if run.thread_id is not None and threads.uses_thread(run):
            via = "thread"
        elif self._token_fresh(run):
            via = "followup"
        elif run.discord.get("channel_id"):
            via = "channel"
        else:
            log.warning("run %s: nowhere to announce %s (no token, no channel)", run.run_id, key)
            via = "nowhere"
        nonce = hashlib.sha256(f"{run.run_id}:{key}:{self.clock.now()}".encode()).hexdigest()
        claim = f"sending {via} {nonce[:NONCE_LENGTH]}"
        saved = self._note(
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

        self._note(run_id, mark)


class _ThreadClosed(Exception):
    """The run's thread refused a post; the run now posts in the channel."""


#: How long after a run ended the reconcile still sees to its thread's archive (beyond,
#: Discord's own archiving after a day without activity is left to do it).
ARCHIVE_SWEEP = 3600.0


def awaits_archive(run: Run, now: float) -> bool:
    """True if the run ended at least STALL_AFTER ago (within ARCHIVE_SWEEP), its
    deployment too if it has one, and its thread is still open: the notify job that
    should have archived it died holding a post's claim, or its archive failed."""
    if run.thread != threads.OPEN or run.thread_id is None or run.active:
        return False
    if run.deploy is not None and run.deploy.state not in DEPLOY_DONE:
        return False
    return STALL_AFTER <= now - run.updated_at < ARCHIVE_SWEEP


#: What an announcement's status becomes once Discord confirmed it.
POSTED = "posted"
#: What a claim becomes once the run no longer calls for its post (``_let_go_of_passed_
#: claims``): it may or may not have arrived, and it is never sent again.
SUPERSEDED = "superseded"
#: How an announcement is sent; a claim is ``sending <via> <nonce>``.
VIAS = frozenset({"followup", "channel", "thread", "nowhere"})
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


def _settled(status: str | None) -> bool:
    """True for an announcement nothing is left to do for: posted, or superseded."""
    return status in (POSTED, SUPERSEDED)


def _is_claim(status: str) -> bool:
    """True for this module's ``sending <via> <nonce>`` claim (not, say, the scheduled
    plan message's ``sending <nonce>``, which :mod:`valine.usecases.rhythm` settles)."""
    parts = status.split(" ")
    return len(parts) == 3 and parts[0] == "sending" and parts[1] in VIAS
