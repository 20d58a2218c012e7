"""Jobs that failed for good: tell the people waiting, and record it on the run."""

from __future__ import annotations

from typing import Any

from valine.core.models import Run, apply_run_event
from valine.core.replies import Message
from valine.core.states import RunEvent, RunState
from valine.usecases.base import CANCEL, DISPATCH, PLAN, SHIP, START, UseCaseBase, incident


class FailuresMixin(UseCaseBase):
    """The dead-letter handler and the aborts it leads to."""

    def on_dead_letter(self, kind: str, job: dict[str, Any], error: str) -> None:
        """A job failed for good: tell the people waiting, and record it on the run.

        ``error`` (exception text) goes only to the log, under the id the message shows.
        """
        error = f"ref {incident(f'{kind} job failed for good', error)}"
        if kind == PLAN:
            interaction = job["interaction"]
            self.discord.edit_original(
                str(interaction["application_id"]),
                str(interaction["token"]),
                Message(
                    f"❌ Planning failed after several tries ({error}). GitHub may be "
                    "unavailable; try `/plan` again in a few minutes."
                ),
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
        """The ship job failed for good: ship_failed, or cancelling if a cancel was asked."""
        now = self.clock.now()

        def abort(run: Run) -> Run | None:
            if run.state is not RunState.SHIPPING:
                return None
            reason = f"shipping stopped: {error}. `/ship` again retries what is left."
            run = apply_run_event(run, RunEvent.SHIP_FAILED, now, reason=reason)
            if run.cancel_requested_by is None:
                return run
            who = f"<@{run.cancel_requested_by}>"
            return apply_run_event(
                run, RunEvent.CANCEL, now, reason=f"cancelled by {who} while shipping ({error})"
            )

        saved = self._update(run_id, abort)
        if saved is None:
            return
        if saved.state is RunState.CANCELLING:
            self.queue.enqueue(
                CANCEL, {"run_id": run_id}, dedupe_key=f"{CANCEL}:{run_id}:{saved.version}"
            )
        self.notify(saved)
