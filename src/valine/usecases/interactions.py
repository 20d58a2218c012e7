"""Discord interactions: slash commands and buttons, answered within 3 seconds.

They read and write the store and enqueue jobs, and never call GitHub. Authorisation
refusals, the ship confirmation, ``/status`` and the run id autocomplete live here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from valine.core import render, tracking
from valine.core.authz import GRANTED_AS, GUARDED_ACTIONS, decide
from valine.core.commands import Command
from valine.core.errors import NotFound, QueueUnavailable, RunConflict
from valine.core.models import Run, Task, apply_run_event, retry_task
from valine.core.states import (
    ACTION_STATES,
    DEPLOY_DONE,
    TASK_SETTLED,
    Action,
    RunEvent,
    RunState,
    Step,
    TaskState,
    allowed_actions,
)
from valine.ports import AuditEntry
from valine.usecases.base import (
    CANCEL,
    CHANNEL_MESSAGE,
    DEFERRED,
    DISPATCH,
    EPHEMERAL,
    PLAN,
    SAVE_ATTEMPTS,
    SHIP,
    START,
    Actor,
    _public,
    dispatch_key,
    ephemeral,
    log,
)
from valine.usecases.deploying import DeployingMixin
from valine.usecases.rhythm import DigestMixin

#: What a run id looks like (``valine.core.models.new_run_id``): checked before any read.
RUN_ID = re.compile(r"r[0-9]{8}-[a-z0-9]{6}")
#: The guarded action of each button.
_BUTTON_ACTIONS = {
    "approve": "approve",
    "ship": "ship",
    "ship-confirm": "ship",
    "cancel": "cancel",
    "retry": "retry",
}
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


class InteractionsMixin(DeployingMixin, DigestMixin):
    """Slash commands and buttons: authorise, change the run, enqueue the job."""

    def answer_command(self, interaction: Mapping[str, Any], command: Command) -> dict[str, Any]:
        """Answer a schema-checked slash command within Discord's 3 seconds."""
        actor = Actor.of(interaction)
        gate = self._gate(interaction, actor, command.name)
        if gate is not None:
            return gate
        run_id = str(command.options.get("run_id", "")).strip()
        if run_id and (problem := bad_run_id(run_id)):
            return ephemeral(problem)
        return self._run_command(interaction, actor, command, run_id)

    def _run_command(  # noqa: PLR0911  (one answer per command)
        self, interaction: Mapping[str, Any], actor: Actor, command: Command, run_id: str
    ) -> dict[str, Any]:
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
        if command.name == "retry":
            return self.retry(run_id, str(command.options.get("issue", "")), actor)
        if command.name == "deploy":
            return self.redeploy(run_id, actor)
        if command.name == "digest":
            return self.digest_answer()
        action = {"approve": self.approve, "ship": self.ship, "cancel": self.cancel}
        return action[command.name](run_id, actor)

    def press_button(self, interaction: Mapping[str, Any], custom_id: str) -> dict[str, Any]:
        """Answer a button press (``action:run_id``) through the same use cases.

        Ship asks first: its button answers with an ephemeral confirmation, whose
        Confirm button (``ship-confirm:run_id``) ships.
        """
        action, _, run_id = custom_id.partition(":")
        actor = Actor.of(interaction)
        gate = self._gate(interaction, actor, _BUTTON_ACTIONS.get(action, "button"))
        if gate is not None:
            return gate
        if action == "retry":
            run_id, _, issue = run_id.partition(":")
            if bad_run_id(run_id):
                return ephemeral("This button is not one of Valine's (or is from an old version).")
            return self.retry(run_id, issue, actor)
        handlers = {
            "approve": self.approve,
            "ship": self.confirm_ship,
            "ship-confirm": self.ship,
            "cancel": self.cancel,
        }
        if action not in handlers or bad_run_id(run_id):
            return ephemeral("This button is not one of Valine's (or is from an old version).")
        return handlers[action](run_id, actor)

    def in_scope(self, interaction: Mapping[str, Any]) -> bool:
        """True if the interaction comes from a served server (and channel)."""
        scope = self.policy.discord
        return scope.refusal(interaction.get("guild_id"), interaction.get("channel_id")) is None

    def _gate(
        self, interaction: Mapping[str, Any], actor: Actor, action: str
    ) -> dict[str, Any] | None:
        """The refusal of an interaction from outside the served server, or over the rate."""
        scope = self.policy.discord
        reason = scope.refusal(interaction.get("guild_id"), interaction.get("channel_id"))
        if reason is not None:
            where = interaction.get("guild_id") or "a direct message"
            self._audit_refusal(actor, action, f"refused: outside the served server ({where})")
            return ephemeral(f"⛔ {reason}")
        guarded = action in GUARDED_ACTIONS or action in GRANTED_AS
        if guarded and not self.queue.claim(f"rate:{actor.user_id}", 60.0, scope.rate_limit):
            self._audit_refusal(actor, action, "refused: rate limited")
            return ephemeral(
                f"⏳ Slow down: at most {scope.rate_limit} commands a minute. "
                "Try again in a minute."
            )
        return None

    def _refusal(
        self, actor: Actor, action: str, run: Run | None, run_id: str | None = None
    ) -> dict[str, Any] | None:
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
        return ephemeral(f"⛔ {decision.reason}")

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

    def confirm_ship(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """The Ship button: check everything ``/ship`` checks, then ask for confirmation."""
        refusal = self._refusal(actor, "ship", None, run_id)
        if refusal is not None:
            return refusal
        try:
            run = self.store.get_run(run_id)
        except NotFound:
            return ephemeral(f"There is no run `{run_id}`. `/status` lists the recent runs.")
        refusal = self._refusal(actor, "ship", run)
        if refusal is not None:
            return refusal
        allowed = _states(Action.SHIP)
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
            allowed=_states(Action.APPROVE),
            decide=decide,
            job_kind=START,
            announcement="✅ Run `{id}` approved by <@{user}>: handing {n} task(s) to the "
            "executor.",
        )

    def ship(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/ship``: ready_to_ship (or ship_failed) -> shipping, then a job merges."""
        now = self.clock.now()

        def decide(run: Run) -> Run:
            run = apply_run_event(run, RunEvent.SHIP, now, reason=None)
            return replace(run, tasks=tuple(_forget_dequeue(t) for t in run.tasks))

        return self._transition_from_discord(
            run_id,
            actor,
            action="ship",
            allowed=_states(Action.SHIP),
            decide=decide,
            job_kind=SHIP,
            announcement="🚀 Shipping run `{id}` for <@{user}>: merging {n} pull request(s).",
        )

    def cancel(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/cancel``: end the run in any non-terminal state; issues back to ready (a job).

        A planned run ends at once. A later one becomes ``cancelling`` (it keeps the
        repository's lock) until the cancel job has put its issues back to ready. A
        shipping run records the request; the ship attempt, when it ends, cancels it.
        """
        now = self.clock.now()
        who = f"<@{actor.user_id}>"

        def decide(run: Run) -> Run:
            if run.state is RunState.SHIPPING:
                return replace(run, cancel_requested_by=actor.user_id)
            if run.state is RunState.PLANNED:
                return apply_run_event(
                    run, RunEvent.CANCEL, now, finished_at=now, reason=f"cancelled by {who}"
                )
            return apply_run_event(run, RunEvent.CANCEL, now, reason=f"cancelled by {who}")

        def announcement(saved: Run) -> str:
            if saved.state is RunState.SHIPPING:
                return (
                    f"🛑 {who} asked to cancel run `{run_id}`; it is merging now, so the "
                    "cancel takes effect when the merges in flight end."
                )
            return f"🛑 Run `{run_id}` cancelled by {who}: {render.cancel_outcome(saved)}."

        return self._transition_from_discord(
            run_id,
            actor,
            action="cancel",
            allowed=_states(Action.CANCEL),
            decide=decide,
            job_kind=CANCEL,
            announcement=announcement,
        )

    def retry(self, run_id: str, issue: str, actor: Actor) -> dict[str, Any]:
        """``/retry`` and the Retry button: hand one failed or stale task over again.

        Authorised like approve and audited. The task goes back to ``pending`` in one
        conditional write and one dispatch job is enqueued under a key of this retry,
        so a retry re-dispatches exactly once, however often it is pressed: a second
        press finds the task no longer failed or stale. A webhook saving the run between
        the read and the write does not refuse it: it reloads and decides again, as
        every press does.
        """
        number = _issue_number(issue)
        now = self.clock.now()
        fail_run = self.policy.on_task_failure == "fail_run"
        reason = f"retried by <@{actor.user_id}>"

        def refuse(run: Run) -> tuple[str, str] | None:
            task = next((t for t in run.tasks if t.issue_number == number), None)
            if task is not None and task in render.retryable(run):
                return None
            outcome = f"refused: #{issue.strip().lstrip('#')} is not retryable"
            return outcome, _not_retryable(run, issue, task)

        def decide(run: Run) -> Run:
            assert number is not None  # refuse() found its task
            return tracking.settle(retry_task(run, number, now, reason), now, fail_run)

        def job(saved: Run) -> tuple[dict[str, Any], str]:
            assert number is not None
            payload = {"run_id": run_id, "issue": number}
            return payload, dispatch_key(run_id, saved.task(number))

        return self._transition_from_discord(
            run_id,
            actor,
            action="retry",
            allowed=refuse,
            decide=decide,
            job_kind=DISPATCH,
            job=job,
            done=f"ok: #{number}",
            announcement=lambda _saved: (
                f"🔁 <@{actor.user_id}> retried #{number} of run `{run_id}`."
            ),
        )

    def redeploy(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/deploy``: dispatch a shipped run's deploy workflow once more.

        Authorised like ship and audited. Accepted for a shipped run whose deployment
        is not in flight (failed, deployed, or none yet); the new attempt is saved in
        one conditional write and its job enqueued under the attempt's key, so a
        second ``/deploy`` finds the attempt in flight and is refused.
        """
        run = self._permitted_run(actor, "deploy", run_id)
        if not isinstance(run, Run):
            return run
        if not self.policy.ship.deploy_workflow:
            self._audit(actor, "deploy", "refused: no deploy workflow", run_id)
            return ephemeral(
                "No deployment is configured: set `[ship] deploy_workflow` in valine.toml."
            )
        if Action.DEPLOY not in allowed_actions(run.state):
            self._audit(actor, "deploy", f"refused: run is {run.state.value}", run_id)
            return ephemeral(
                f"Run `{run_id}` is `{run.state.value}`: only a shipped run can be deployed."
            )
        if run.deploy is not None and run.deploy.state not in DEPLOY_DONE:
            self._audit(actor, "deploy", "refused: deployment in flight", run_id)
            return ephemeral(
                f"Run `{run_id}`'s deployment (attempt {run.deploy.attempt}) is "
                f"`{run.deploy.state.value}`: wait for its outcome."
            )
        now = self.clock.now()
        try:
            saved = self.store.save_run(self.start_deployment(run, now, actor.user_id))
        except RunConflict:
            self._audit(actor, "deploy", "refused: lost a race", run_id)
            return ephemeral(f"Run `{run_id}` changed at the same moment; try again.")
        assert saved.deploy is not None
        self._audit(actor, "deploy", f"ok: attempt {saved.deploy.attempt}", run_id)
        try:
            self.enqueue_deployment(saved)
        except QueueUnavailable as exc:
            log.error("enqueue of the deployment failed (the reconcile retries): %s", exc)
        self.notify(saved)
        return _public(
            f"🚀 <@{actor.user_id}> is deploying run `{run_id}` again "
            f"(attempt {saved.deploy.attempt}, `{saved.deploy.workflow}`)."
        )

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
    ) -> dict[str, Any]:
        """A press or command that moves a run: authorise, decide, save, enqueue, answer.

        ``allowed`` is the run states the action applies to, or a function that gives
        the refusal (audit outcome, answer) for a run it does not apply to. ``job``
        gives the payload and dedupe key of the job that carries the saved run on
        (default ``{"run_id"}`` keyed by the saved version); ``done`` is the audit
        outcome of success.
        """
        refuse = allowed if callable(allowed) else _state_check(action, allowed)
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
                return ephemeral(refusal[1])
            try:
                saved = self.store.save_run(decide(run))
                break
            except RunConflict:
                run = self.store.get_run(run_id)
        if saved is None:
            self._audit(actor, action, "refused: lost a race", run_id)
            return ephemeral(
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
            return _public(announcement(saved))
        shippable = [t for t in saved.tasks if t.state is not TaskState.SKIPPED]
        text = announcement.format(id=run_id, user=actor.user_id, n=len(shippable))
        return _public(text)

    def _permitted_run(self, actor: Actor, action: str, run_id: str) -> Run | dict[str, Any]:
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
            return ephemeral(f"There is no run `{run_id}`. `/status` lists the recent runs.")
        return self._refusal(actor, action, run) or run

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

    def retry_choices(self, run_id: str, typed: str) -> list[str]:
        """Issue numbers of the run's failed and stale tasks matching what was typed."""
        if bad_run_id(run_id.strip()):
            return []
        try:
            run = self.store.get_run(run_id.strip())
        except NotFound:
            return []
        typed = typed.strip().lstrip("#")
        return [str(t.issue_number) for t in render.retryable(run) if typed in str(t.issue_number)]

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


def _issue_number(text: str) -> int | None:
    digits = text.strip().lstrip("#")
    return int(digits) if digits.isdigit() and len(digits) < 10 else None


def _not_retryable(run: Run, issue: str, task: Task | None) -> str:
    if task is None:
        return f"Run `{run.run_id}` has no task for issue `{issue}`."
    if Action.RETRY not in allowed_actions(run.state):
        return f"Run `{run.run_id}` is `{run.state.value}`: its tasks can no longer be retried."
    return (
        f"#{task.issue_number} is `{task.state.value}`; only a failed or stale task can be retried."
    )


def _forget_dequeue(task: Task) -> Task:
    """A task whose merge-queue ejection no longer holds it back (a new ship attempt)."""
    if Step.DEQUEUED not in task.steps_done:
        return task
    return replace(task, steps_done=tuple(s for s in task.steps_done if s != Step.DEQUEUED))


def _state_check(
    action: str, allowed: RunState | tuple[RunState, ...]
) -> Callable[[Run], tuple[str, str] | None]:
    """The refusal of ``action`` for a run outside the ``allowed`` states."""
    states = allowed if isinstance(allowed, tuple) else (allowed,)

    def refuse(run: Run) -> tuple[str, str] | None:
        if run.state in states:
            return None
        return f"refused: run is {run.state.value}", _wrong_state(run, action, states)

    return refuse


def _states(action: Action) -> tuple[RunState, ...]:
    """The run states ``action`` applies in (the guard table), in the table's order."""
    return tuple(s for s in RunState if s in ACTION_STATES[action])


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
