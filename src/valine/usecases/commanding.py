"""What every command and button shares: authorise, gate, audit, move the run.

``CommandingBase`` holds the steps of a press or a command that changes a run -- the
served-server and rate gate, the permission check (audited), the conditional save that
reloads on a lost race, the job that carries the saved run on -- so each concern module
(planning, shipping, deploying, interactions) writes only its decision and its answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from valine.core.authz import decide, is_guarded
from valine.core.errors import NotFound, QueueUnavailable, RunConflict
from valine.core.models import Run
from valine.core.replies import Answer, announce, notice
from valine.core.states import ACTION_STATES, TASK_SETTLED, Action, RunState, TaskState
from valine.ports import AuditEntry
from valine.usecases.base import SAVE_ATTEMPTS, Actor, UseCaseBase, log

#: What a run id looks like (``valine.core.models.new_run_id``): checked before any read.
RUN_ID = re.compile(r"r[0-9]{8}-[a-z0-9]{6}")
#: Refusals of one kind from one user are audited once per this many seconds.
REFUSAL_COALESCE = 600.0


def bad_run_id(run_id: str) -> str | None:
    """None for a well-formed run id; else the message saying what one looks like."""
    if RUN_ID.fullmatch(run_id):
        return None
    shown = run_id[:24].replace("`", "'") + ("…" if len(run_id) > 24 else "")
    return (
        f"`{shown}` is not a run id: they look like `r20261125-k3f9qa`. "
        "`/status` lists the recent runs."
    )


class CommandingBase(UseCaseBase):
    """The steps every command and button shares (see the module's docstring)."""

    def bad_run_id(self, run_id: str) -> str | None:
        """None for a well-formed run id; else the message saying what one looks like."""
        return bad_run_id(run_id)

    def in_scope(self, interaction: Mapping[str, Any]) -> bool:
        """True if the interaction comes from a served server (and channel)."""
        return self._scope_refusal(interaction) is None

    def _scope_refusal(self, interaction: Mapping[str, Any]) -> str | None:
        """Why the interaction is outside the served server and channels (a thread counts
        as its channel: buttons on a run's thread posts); None if it is inside."""
        return self.policy.discord.refusal(
            interaction.get("guild_id"),
            interaction.get("channel_id"),
            interaction.get("parent_channel_id"),
        )

    def gate(self, interaction: Mapping[str, Any], actor: Actor, action: str) -> Answer | None:
        """The refusal of an interaction from outside the served server, or over the rate."""
        scope = self.policy.discord
        reason = self._scope_refusal(interaction)
        if reason is not None:
            where = interaction.get("guild_id") or "a direct message"
            self._audit_refusal(actor, action, f"refused: outside the served server ({where})")
            return notice(f"⛔ {reason}")
        limited = is_guarded(action) and not self.queue.claim(
            f"rate:{actor.user_id}", 60.0, scope.rate_limit
        )
        if limited:
            self._audit_refusal(actor, action, "refused: rate limited")
            return notice(
                f"⏳ Slow down: at most {scope.rate_limit} commands a minute. "
                "Try again in a minute."
            )
        return None

    def not_permitted(self, actor: Actor, action: str, run_id: str | None) -> Answer | None:
        """The audited refusal of ``action`` to ``actor`` before any run is read; or None."""
        return self._refusal(actor, action, None, run_id)

    def unrouted(self, shown: str, run_id: str) -> Answer | None:
        """The refusal of ``shown`` (``/plan``, a button's action) from a channel that no
        repository names while several are served; None when these use cases have a
        repository (the runtime routes by the ``repository`` option, the run, the
        channel) or serve fewer than two.

        A run id that reached here is not a served repository's run: none is stored, or
        its repository is no longer served (nothing is done to it).
        """
        if self.repo or len(self.served) < 2:
            return None
        if run_id:
            try:
                run = self.store.get_run(run_id)
            except NotFound:
                return notice(f"There is no run `{run_id}`.")
            return notice(
                f"Run `{run_id}` is of `{run.repo}`, which this deployment no longer serves."
            )
        where = ", ".join(
            f"`{name}` (<#{channel}>)"
            if (channel := self.channels.get(name.lower()))
            else f"`{name}`"
            for name in self.served
        )
        return notice(
            f"`{shown}` needs a repository, and this channel is none of theirs: Valine serves "
            f"{where} here. Use it in a repository's channel, plan one from here with "
            "`/plan repository:<owner/name>`, or give this channel to a repository "
            "(`channel_id` of its `[[repositories]]` entry in valine.toml)."
        )

    def _refusal(
        self, actor: Actor, action: str, run: Run | None, run_id: str | None = None
    ) -> Answer | None:
        """None if ``actor`` may do ``action``; else the audited, ephemeral refusal.

        ``run_id`` is the (well-formed) run asked for, when the run is not read yet.
        """
        decision = decide(
            self.policy.permissions,
            action,
            actor.user_id,
            actor.roles,
            planned_by=run.created_by if run else None,
        )
        if decision.allowed:
            return None
        self._audit_refusal(actor, action, "refused: not permitted", run.run_id if run else run_id)
        return notice(f"⛔ {decision.reason}")

    def _audit_refusal(
        self, actor: Actor, action: str, outcome: str, run_id: str | None = None
    ) -> None:
        """Audit a refusal once per user, action and outcome per REFUSAL_COALESCE seconds.

        Repeats are only logged, so nobody can grow the audit trail by retrying.
        """
        key = f"refusal:{actor.user_id}:{action}:{outcome}"
        if self.queue.claim(key, REFUSAL_COALESCE):
            self._audit(actor, action, outcome, run_id)
        else:
            log.info("refusal of %s for %s coalesced: %s", action, actor.user_id, outcome)

    def _enqueue_after_save(self, kind: str, payload: dict[str, Any], key: str) -> None:
        """Enqueue the job that carries a just-saved state on.

        If the queue does not answer, the state is saved all the same and the
        reconcile re-enqueues the job within a few minutes (``_carry_on``).
        """
        try:
            self.queue.enqueue(kind, payload, dedupe_key=key)
        except QueueUnavailable as exc:
            log.error("enqueue of %s after a save failed (the reconcile retries): %s", kind, exc)

    def _transition_from_discord(
        self,
        run_id: str,
        actor: Actor,
        *,
        action: str,
        allowed: RunState | tuple[RunState, ...] | Callable[[Run], tuple[str, str] | None],
        decide: Callable[[Run], Run],
        job_kind: str,
        announcement: str | Callable[[Run], str],
        job: Callable[[Run], tuple[dict[str, Any], str]] | None = None,
        done: str = "ok",
    ) -> Answer:
        """A press or command that moves a run: authorise, decide, save, enqueue, answer.

        ``allowed`` is the run states the action applies to, or a function that gives
        the refusal (audit outcome, answer) for a run it does not apply to. ``job``
        gives the payload and dedupe key of the job that carries the saved run on
        (default ``{"run_id"}`` keyed by the saved version); ``done`` is the audit
        outcome of success.
        """
        refuse = allowed if callable(allowed) else state_check(action, allowed)
        run = self._permitted_run(actor, action, run_id)
        if not isinstance(run, Run):
            return run
        # A webhook job may save the run between our read and our write (a check result
        # arriving as Ship is pressed): reload and decide again, so only a real change of
        # state -- another press that won -- refuses the press.
        saved: Run | None = None
        for _ in range(SAVE_ATTEMPTS):
            refusal = refuse(run)
            if refusal is not None:
                self._audit(actor, action, refusal[0], run_id)
                return notice(refusal[1])
            try:
                saved = self.store.save_run(decide(run))
                break
            except RunConflict:
                run = self.store.get_run(run_id)
        if saved is None:
            self._audit(actor, action, "refused: lost a race", run_id)
            return notice(
                f"Run `{run_id}` kept changing while you pressed; it is now "
                f"{run.state.value}. Try again in a moment."
            )
        self._audit(actor, action, done, run_id)
        payload, key = (
            job(saved)
            if job is not None
            else ({"run_id": run_id}, f"{job_kind}:{run_id}:{saved.version}")
        )
        self._enqueue_after_save(job_kind, payload, key)
        self.notify(saved)
        if callable(announcement):
            return announce(announcement(saved))
        shippable = [t for t in saved.tasks if t.state is not TaskState.SKIPPED]
        text = announcement.format(id=run_id, user=actor.user_id, n=len(shippable))
        return announce(text)

    def _permitted_run(self, actor: Actor, action: str, run_id: str) -> Run | Answer:
        """The run, if ``actor`` may do ``action`` to it; else the refusal to answer.

        Permission is checked before the run is read (and before a missing run is
        audited), then again with the run (who planned it).
        """
        refusal = self._refusal(actor, action, None, run_id)
        if refusal is not None:
            return refusal
        try:
            run = self.store.get_run(run_id)
        except NotFound:
            self._audit(actor, action, "refused: no such run", run_id)
            return notice(f"There is no run `{run_id}`. `/status` lists the recent runs.")
        return self._refusal(actor, action, run) or run

    def _audit(self, actor: Actor, action: str, outcome: str, run_id: str | None) -> None:
        self.store.append_audit(
            AuditEntry(
                at=self.clock.now(),
                actor=actor.user_id,
                action=action,
                outcome=outcome,
                run_id=run_id,
            )
        )


def state_check(
    action: str, allowed: RunState | tuple[RunState, ...]
) -> Callable[[Run], tuple[str, str] | None]:
    """The refusal of ``action`` for a run outside the ``allowed`` states."""
    states = allowed if isinstance(allowed, tuple) else (allowed,)

    def refuse(run: Run) -> tuple[str, str] | None:
        if run.state in states:
            return None
        return f"refused: run is {run.state.value}", wrong_state(run, action, states)

    return refuse


def states_of(action: Action) -> tuple[RunState, ...]:
    """The run states ``action`` applies in (the guard table), in the table's order."""
    return tuple(s for s in RunState if s in ACTION_STATES[action])


def wrong_state(run: Run, action: str, allowed: tuple[RunState, ...]) -> str:
    names = " or ".join(f"`{s.value}`" for s in allowed)
    hint = f" Only a run that is {names} can be {action}d." if allowed else ""
    if action == "approve" and run.approved_by:
        return (
            f"Run `{run.run_id}` was already approved by <@{run.approved_by}> "
            f"and is `{run.state.value}`."
        )
    if action == "ship" and run.state is RunState.EXECUTING:
        hint += _not_green(run)
    return f"Run `{run.run_id}` is `{run.state.value}`.{hint}"


def _not_green(run: Run) -> str:
    """Which tasks keep a run from shipping, and why (the check that is not green)."""
    waiting = [t for t in run.tasks if t.state not in TASK_SETTLED]
    lines = [
        f"\n• #{t.issue_number}: `{t.state.value}`" + (f" — {t.reason}" if t.reason else "")
        for t in waiting[:10]
    ]
    return " Not green yet:" + "".join(lines) if lines else ""
