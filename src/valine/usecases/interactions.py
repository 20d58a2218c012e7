"""Discord interactions: slash commands and buttons, answered within 3 seconds.

They read and write the store and enqueue jobs, and never call GitHub. Authorisation
refusals, the ship confirmation, ``/status`` and the run id autocomplete live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from valine.core import render
from valine.core.authz import decide
from valine.core.commands import Command
from valine.core.errors import NotFound, RunConflict
from valine.core.models import Run, apply_run_event
from valine.core.states import TASK_SETTLED, RunEvent, RunState, TaskState
from valine.ports import AuditEntry
from valine.usecases.base import (
    CANCEL,
    CHANNEL_MESSAGE,
    DEFERRED,
    EPHEMERAL,
    PLAN,
    SHIP,
    START,
    Actor,
    UseCaseBase,
    _public,
    ephemeral,
)


class InteractionsMixin(UseCaseBase):
    """Slash commands and buttons: authorise, change the run, enqueue the job."""

    def answer_command(self, interaction: Mapping[str, Any], command: Command) -> dict[str, Any]:
        """Answer a schema-checked slash command within Discord's 3 seconds."""
        actor = Actor.of(interaction)
        run_id = str(command.options.get("run_id", "")).strip()
        if command.name == "plan":
            return self.request_plan(interaction, actor)
        if command.name == "status":
            return self.status(run_id or None)
        if command.name == "help":
            return {
                "type": CHANNEL_MESSAGE,
                "data": render.help_message(
                    self.repo,
                    self.policy.executor.kind,
                    self.policy.labels.ready,
                    self.policy.permissions,
                ),
            }
        action = {"approve": self.approve, "ship": self.ship, "cancel": self.cancel}
        return action[command.name](run_id, actor)

    def press_button(self, interaction: Mapping[str, Any], custom_id: str) -> dict[str, Any]:
        """Answer a button press (``action:run_id``) through the same use cases.

        Ship asks first: its button answers with an ephemeral confirmation, whose
        Confirm button (``ship-confirm:run_id``) ships.
        """
        action, _, run_id = custom_id.partition(":")
        handlers = {
            "approve": self.approve,
            "ship": self.confirm_ship,
            "ship-confirm": self.ship,
            "cancel": self.cancel,
        }
        if action not in handlers or not run_id:
            return ephemeral("This button is not one of Valine's (or is from an old version).")
        return handlers[action](run_id, Actor.of(interaction))

    def _refusal(self, actor: Actor, action: str, run: Run | None) -> dict[str, Any] | None:
        """None if ``actor`` may do ``action``; else the audited, ephemeral refusal."""
        decision = decide(
            self.policy.permissions,
            action,
            actor.user_id,
            actor.roles,
            planned_by=run.created_by if run else None,
        )
        if decision.allowed:
            return None
        self._audit(actor, action, "refused: not permitted", run.run_id if run else None)
        return ephemeral(f"⛔ {decision.reason}")

    def confirm_ship(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """The Ship button: check everything ``/ship`` checks, then ask for confirmation."""
        try:
            run = self.store.get_run(run_id)
        except NotFound:
            return ephemeral(f"There is no run `{run_id}`. `/status` lists the recent runs.")
        refusal = self._refusal(actor, "ship", run)
        if refusal is not None:
            return refusal
        allowed = (RunState.READY_TO_SHIP, RunState.SHIP_FAILED)
        if run.state not in allowed:
            return ephemeral(_wrong_state(run, "ship", allowed))
        shippable = [t for t in run.tasks if t.state is TaskState.CHECKS_PASSED]
        prs = ", ".join(f"#{t.pr_number}" for t in shippable)
        return {
            "type": CHANNEL_MESSAGE,
            "data": {
                "content": f"Ship run `{run_id}`? This merges {len(shippable)} pull request(s) "
                f"({prs}) into `{self.repo}` and closes their issues.",
                "flags": EPHEMERAL,
                "components": [
                    {
                        "type": 1,
                        "components": [
                            {
                                "type": 2,
                                "style": render.BUTTON_SUCCESS,
                                "label": "Confirm ship",
                                "custom_id": f"ship-confirm:{run_id}",
                            }
                        ],
                    }
                ],
                "allowed_mentions": {"parse": []},
            },
        }

    def request_plan(self, interaction: Mapping[str, Any], actor: Actor) -> dict[str, Any]:
        """``/plan``: show the active run, or defer and plan in a job."""
        refusal = self._refusal(actor, "plan", None)
        if refusal is not None:
            return refusal
        active = self.store.active_run(self.repo)
        if active is not None:
            message = render.run_message(active, self.web_url)
            message["content"] = (
                f"Run `{active.run_id}` is still {active.state.value}: "
                "finish or `/cancel` it before planning another."
            )
            return {"type": CHANNEL_MESSAGE, "data": message}
        job = {
            "interaction": dict(interaction),
            "actor": actor.user_id,
            "received_at": self.clock.now(),
        }
        self.queue.enqueue(PLAN, job, dedupe_key=f"interaction:{interaction['id']}")
        self._audit(actor, "plan", "accepted", None)
        return {"type": DEFERRED}

    def approve(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/approve``: planned -> approved, then a job starts the tasks."""
        now = self.clock.now()

        def decide(run: Run) -> Run:
            return apply_run_event(
                run, RunEvent.APPROVE, now, approved_by=actor.user_id, approved_at=now
            )

        return self._transition_from_discord(
            run_id,
            actor,
            action="approve",
            allowed=RunState.PLANNED,
            decide=decide,
            job_kind=START,
            announcement="✅ Run `{id}` approved by <@{user}>: handing {n} task(s) to the "
            "executor.",
        )

    def ship(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/ship``: ready_to_ship (or ship_failed) -> shipping, then a job merges."""
        now = self.clock.now()

        def decide(run: Run) -> Run:
            return apply_run_event(run, RunEvent.SHIP, now, reason=None)

        return self._transition_from_discord(
            run_id,
            actor,
            action="ship",
            allowed=(RunState.READY_TO_SHIP, RunState.SHIP_FAILED),
            decide=decide,
            job_kind=SHIP,
            announcement="🚀 Shipping run `{id}` for <@{user}>: merging {n} pull request(s).",
        )

    def cancel(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/cancel``: the run ends and its issues go back to ready (in a job)."""
        now = self.clock.now()

        def decide(run: Run) -> Run:
            return apply_run_event(
                run,
                RunEvent.CANCEL,
                now,
                finished_at=now,
                reason=f"cancelled by <@{actor.user_id}>",
            )

        allowed = (RunState.PLANNED, RunState.APPROVED, RunState.EXECUTING, RunState.READY_TO_SHIP)
        return self._transition_from_discord(
            run_id,
            actor,
            action="cancel",
            allowed=allowed,
            decide=decide,
            job_kind=CANCEL,
            announcement="🛑 Run `{id}` cancelled by <@{user}>; its issues go back to ready.",
        )

    def _transition_from_discord(
        self,
        run_id: str,
        actor: Actor,
        *,
        action: str,
        allowed: RunState | tuple[RunState, ...],
        decide: Callable[[Run], Run],
        job_kind: str,
        announcement: str,
    ) -> dict[str, Any]:
        allowed_states = allowed if isinstance(allowed, tuple) else (allowed,)
        try:
            run = self.store.get_run(run_id)
        except NotFound:
            self._audit(actor, action, "refused: no such run", run_id)
            return ephemeral(f"There is no run `{run_id}`. `/status` lists the recent runs.")
        refusal = self._refusal(actor, action, run)
        if refusal is not None:
            return refusal
        if run.state not in allowed_states:
            self._audit(actor, action, f"refused: run is {run.state.value}", run_id)
            return ephemeral(_wrong_state(run, action, allowed_states))
        try:
            saved = self.store.save_run(decide(run))
        except RunConflict:
            current = self.store.get_run(run_id)
            self._audit(actor, action, "refused: lost a race", run_id)
            return ephemeral(
                f"Someone else changed run `{run_id}` at the same moment; it is "
                f"now {current.state.value}. {_wrong_state(current, action, ())}"
            )
        self._audit(actor, action, "ok", run_id)
        self.queue.enqueue(
            job_kind, {"run_id": run_id}, dedupe_key=f"{job_kind}:{run_id}:{saved.version}"
        )
        self.notify(saved)
        shippable = [t for t in saved.tasks if t.state is not TaskState.SKIPPED]
        text = announcement.format(id=run_id, user=actor.user_id, n=len(shippable))
        return _public(text)

    def status(self, run_id: str | None) -> dict[str, Any]:
        """``/status``: one run in detail, or the active and recent runs (no GitHub call)."""
        if run_id:
            try:
                run = self.store.get_run(run_id)
            except NotFound:
                return ephemeral(f"There is no run `{run_id}`.")
            message = render.run_message(run, self.web_url)
            message["components"] = []
            message["flags"] = EPHEMERAL
            return {"type": CHANNEL_MESSAGE, "data": message}
        active = self.store.active_run(self.repo)
        recent = self.store.recent_runs(self.repo, limit=5)
        return {"type": CHANNEL_MESSAGE, "data": render.status_list_message(active, recent)}

    def run_id_choices(self, typed: str, limit: int = 25) -> list[str]:
        """Run ids matching what the user typed: the active run first, then the newest."""
        active = self.store.active_run(self.repo)
        recent = self.store.recent_runs(self.repo, limit=limit)
        ordered = ([active] if active else []) + [
            r for r in recent if not active or r.run_id != active.run_id
        ]
        typed = typed.strip().lower()
        return [r.run_id for r in ordered if typed in r.run_id.lower()][:limit]

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


def _wrong_state(run: Run, action: str, allowed: tuple[RunState, ...]) -> str:
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
