"""The notify job: show a run's state on its Discord message, announce milestones once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from valine.core import render
from valine.core.models import Run
from valine.core.states import RunState
from valine.ports import DiscordError
from valine.usecases.base import TOKEN_LIFETIME, UseCaseBase, log


class NotificationsMixin(UseCaseBase):
    """Keep the run's Discord message current (scheduling is ``UseCaseBase.notify``)."""

    def run_notify_job(self, job: dict[str, Any]) -> None:
        """Show the run's current state on its message, and announce milestones once."""
        run = self.store.get_run(str(job["run_id"]))
        if not run.discord.get("application_id"):
            return
        try:
            self._show(run)
            self._announce(run)
        except DiscordError as exc:
            log.warning("could not update Discord for run %s: %s", run.run_id, exc)

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
        milestones = {
            RunState.READY_TO_SHIP: "announced_ready",
            RunState.SHIPPED: "announced_shipped",
            RunState.SHIP_FAILED: f"announced_failed_{run.version}",
        }
        key = milestones.get(run.state)
        if key is None or run.discord.get(key):
            return
        if run.state is RunState.SHIPPED:
            message = render.ship_summary(run, self.web_url)
        elif run.state is RunState.READY_TO_SHIP:
            message = {
                "content": f"✅ Run `{run.run_id}`: every task has green checks. Ready to ship.",
                "components": render.run_buttons(run),
            }
        else:
            message = render.ship_failed_message(run)
        if self._token_fresh(run):
            self.discord.followup(run.discord["application_id"], run.discord["token"], message)
        elif run.discord.get("channel_id"):
            self.discord.create_message(run.discord["channel_id"], message)
        self._update(run.run_id, lambda r: replace(r, discord={**r.discord, key: "1"}))
