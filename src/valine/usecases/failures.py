"""Jobs that failed for good: tell the people waiting, and record it on the run."""

from __future__ import annotations

from typing import Any

from valine.core.models import apply_run_event
from valine.core.states import RunEvent, RunState
from valine.usecases.base import DISPATCH, PLAN, SHIP, START, UseCaseBase


class FailuresMixin(UseCaseBase):
    """The dead-letter handler and the aborts it leads to."""

    def on_dead_letter(self, kind: str, job: dict[str, Any], error: str) -> None:
        """A job failed for good: tell the people waiting, and record it on the run."""
        if kind == PLAN:
            interaction = job["interaction"]
            self.discord.edit_original(
                str(interaction["application_id"]),
                str(interaction["token"]),
                {
                    "content": (
                        f"❌ Planning failed after several tries ({error}). GitHub may be "
                        "unavailable; try `/plan` again in a few minutes."
                    )
                },
            )
        elif kind == DISPATCH:
            self._fail_task(
                str(job["run_id"]),
                int(job["issue"]),
                f"could not hand the task to the executor: {error}",
            )
        elif kind == START:
            self._abort_start(str(job["run_id"]), error)
        elif kind == SHIP:
            self._abort_ship(str(job["run_id"]), error)

    def _abort_start(self, run_id: str, error: str) -> None:
        now = self.clock.now()
        reason = f"could not start the run: {error}. Its issues may be half relabelled."
        saved = self._update(
            run_id,
            lambda r: (
                apply_run_event(r, RunEvent.FAIL, now, reason=reason, finished_at=now)
                if r.state in (RunState.APPROVED, RunState.EXECUTING)
                else None
            ),
        )
        if saved is not None:
            self.notify(saved)

    def _abort_ship(self, run_id: str, error: str) -> None:
        now = self.clock.now()
        saved = self._update(
            run_id,
            lambda r: (
                apply_run_event(
                    r,
                    RunEvent.SHIP_FAILED,
                    now,
                    reason=f"shipping stopped: {error}. `/ship` again retries what is left.",
                )
                if r.state is RunState.SHIPPING
                else None
            ),
        )
        if saved is not None:
            self.notify(saved)
