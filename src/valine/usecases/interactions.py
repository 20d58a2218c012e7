"""Slash commands and buttons of a run's life: approve, cancel, retry, status, help.

They read and write the store and enqueue jobs, and never call GitHub; each registers
on ``ROUTES`` with its permission and settings. The run id and issue autocomplete live
here too. ``/plan`` is in ``planning``, ``/ship`` and its buttons in ``shipping``,
``/deploy`` in ``deploying``, ``/digest`` in ``rhythm``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from valine.core import render
from valine.core.commands import CommandSpec
from valine.core.errors import NotFound
from valine.core.models import Run, Task, apply_run_event, retry_task
from valine.core.replies import Answer, Reply, notice
from valine.core.states import Action, RunEvent, RunState, allowed_actions
from valine.usecases.base import (
    CANCEL,
    DISPATCH,
    START,
    Actor,
    dispatch_key,
)
from valine.usecases.commanding import CommandingBase, bad_run_id, states_of
from valine.usecases.router import GITHUB, READS, Call, Router

#: The commands and buttons of this module.
ROUTES = Router()


class InteractionsMixin(CommandingBase):
    """Approve, cancel, retry and the read-only answers: status, help, autocomplete."""

    def approve(self, run_id: str, actor: Actor) -> Answer:
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
            allowed=states_of(Action.APPROVE),
            decide=decide,
            job_kind=START,
            announcement="✅ Run `{id}` approved by <@{user}>: handing {n} task(s) to the "
            "executor.",
        )

    def cancel(self, run_id: str, actor: Actor) -> Answer:
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
            allowed=states_of(Action.CANCEL),
            decide=decide,
            job_kind=CANCEL,
            announcement=announcement,
        )

    def retry(self, run_id: str, issue: str, actor: Actor) -> Answer:
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
            from valine.core import tracking

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

    def status(self, run_id: str | None) -> Answer:
        """``/status``: one run in detail, or the active and recent runs (no GitHub call)."""
        if run_id:
            try:
                run = self.store.get_run(run_id)
            except NotFound:
                return notice(f"There is no run `{run_id}`.")
            return Reply(render.run_message(run, self.web_url).without_buttons(), private=True)
        several = len(self.served) > 1
        found = (self.store.active_run(repo) for repo in self.served)
        active = [found_run for found_run in found if found_run is not None]
        recent = self.store.recent_runs(None if several else self.repo, limit=5)
        message = render.status_list_message(active, recent, with_repository=several)
        return Reply(message, private=True)

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
        """Run ids matching what the user typed: this repository's active run first, then
        the other served repositories' active runs, then the newest (of every one)."""
        others = [r for r in self.served if r.lower() != self.repo.lower()]
        mine = (self.repo,) if self.repo else ()
        active = [run.run_id for repo in (*mine, *others) if (run := self.store.active_run(repo))]
        recent = self.store.recent_run_ids(None if others else self.repo, limit=limit)
        ordered = list(dict.fromkeys([*active, *recent]))
        typed = typed.strip().lower()
        return [run_id for run_id in ordered if typed in run_id.lower()][:limit]

    def repository_choices(self, typed: str) -> list[str]:
        """The served repositories matching what was typed, this one first (at most 25)."""
        typed = typed.strip().lower()
        ordered = dict.fromkeys([self.repo, *self.served])
        return [name for name in ordered if name and typed in name.lower()][:25]

    def help_answer(self, offered: Sequence[tuple[CommandSpec, str | None]]) -> Answer:
        """``/help``: the ``offered`` commands (each with the action guarding it), who may
        use each, and the configuration in short."""
        message = render.help_message(
            self.repo or ", ".join(self.served),
            self.policy.executor.kind,
            self.policy.labels.ready,
            self.policy.permissions,
            offered,
        )
        return Reply(message, private=True)

    def autocomplete(
        self, interaction: Mapping[str, Any], focused: str, value: str, options: Any
    ) -> list[str]:
        """Suggestions for the focused option: run ids, or a run's retryable issues.

        From stored state only (no GitHub call); nothing outside the served server.
        """
        if not self.served or not self.in_scope(interaction):
            return []
        if focused == "issue":
            run_id = next(
                (str(o.get("value", "")) for o in options or [] if o.get("name") == "run_id"), ""
            )
            return self.retry_choices(run_id, value)
        if focused == "repository":
            return self.repository_choices(value)
        if focused != "run_id":
            return []
        return self.run_id_choices(value)


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


@ROUTES.command("approve", action="approve", needs=GITHUB)
@ROUTES.button("approve", action="approve", needs=GITHUB)
def _approve(uc: InteractionsMixin, call: Call) -> Answer:
    return uc.approve(call.run_id, call.actor)


@ROUTES.command("status", needs=READS, own_repository=False)
def _status(uc: InteractionsMixin, call: Call) -> Answer:
    return uc.status(call.run_id or None)


@ROUTES.command("cancel", action="cancel", needs=GITHUB)
@ROUTES.button("cancel", action="cancel", needs=GITHUB)
def _cancel(uc: InteractionsMixin, call: Call) -> Answer:
    return uc.cancel(call.run_id, call.actor)


@ROUTES.command("retry", action="retry", needs=GITHUB)
@ROUTES.button("retry", action="retry", needs=GITHUB, args=("run_id", "issue"))
def _retry(uc: InteractionsMixin, call: Call) -> Answer:
    return uc.retry(call.run_id, call.option("issue"), call.actor)


@ROUTES.command("help", own_repository=False)
def _help(uc: InteractionsMixin, call: Call) -> Answer:
    return uc.help_answer(call.router.offered() if call.router else ())
