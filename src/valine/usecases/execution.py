"""Execution jobs: start an approved run, relabel and comment its issues, dispatch.

The workflow dispatch is the one effect that must not happen twice: it is claimed in a
conditional write (``CLAIM``) before it is sent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from valine.core.errors import GitHubUnavailable
from valine.core.models import Run, Task, apply_run_event, apply_task_event
from valine.core.states import TASK_TERMINAL, RunEvent, RunState, TaskEvent, TaskState
from valine.logs import log_context
from valine.ports import GitHubError, IssueUpdate
from valine.usecases.base import (
    CLAIM,
    CLAIM_TIMEOUT,
    DISPATCH,
    DispatchInProgress,
    UseCaseBase,
    _with_task,
    log,
)

_UNCONFIRMED = (
    "GitHub did not confirm the workflow dispatch ({error}); it was not sent "
    "again. If no workflow run started for this issue, start one by hand."
)


class ExecutionMixin(UseCaseBase):
    """Hand an approved run's tasks to the executor, each effect at most once."""

    def run_start_job(self, job: dict[str, Any]) -> None:
        """approved -> executing: relabel and comment every issue in one GraphQL request,
        then hand each task to the executor (a workflow dispatch job per task)."""
        run_id = str(job["run_id"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state not in (RunState.APPROVED, RunState.EXECUTING):
                return  # cancelled meanwhile
            todo = [
                t
                for t in run.tasks
                if t.state not in TASK_TERMINAL and "labelled" not in t.steps_done
            ]
            if todo:
                self._label_and_comment(run, todo)
            now = self.clock.now()
            saved = self._update(
                run_id,
                lambda r: (
                    apply_run_event(r, RunEvent.START, now)
                    if r.state is RunState.APPROVED
                    else None
                ),
            )
            if self.policy.executor.kind == "workflow":
                for task in self.store.get_run(run_id).tasks:
                    if task.state is TaskState.PENDING:
                        self.queue.enqueue(
                            DISPATCH,
                            {"run_id": run_id, "issue": task.issue_number},
                            dedupe_key=f"{DISPATCH}:{run_id}:{task.issue_number}",
                        )
            if saved is not None:
                self.notify(saved)

    def _label_and_comment(self, run: Run, todo: list[Task]) -> None:
        labels = self.policy.labels
        executor = self.policy.executor
        ids = self._label_ids(run.run_id, [labels.ready, labels.in_progress])
        assignees: tuple[str, ...] = ()
        if executor.kind == "assign":
            user = run.github_ids.get(f"user:{executor.assignee}")
            if user is None:
                for task in todo:
                    self._fail_task(
                        run.run_id,
                        task.issue_number,
                        f"no GitHub user {executor.assignee!r} to assign",
                    )
                return
            assignees = (user,)
        comment = _dispatch_comment(run, executor.kind)
        updates = [
            IssueUpdate(
                t.node_id,
                add_labels=(ids[labels.in_progress],),
                remove_labels=(ids[labels.ready],),
                assignees=assignees,
                comment=comment,
            )
            for t in todo
        ]
        try:
            self.github.update_issues(self.repo, updates)
        except GitHubError as exc:
            for task in todo:
                self._fail_task(run.run_id, task.issue_number, f"relabelling failed: {exc}")
            return
        hand_over = executor.kind != "workflow"  # a label or an assignee is the hand-over
        now = self.clock.now()
        numbers = {t.issue_number for t in todo}

        def mark(current: Run) -> Run:
            for task in current.tasks:
                if task.issue_number not in numbers or "labelled" in task.steps_done:
                    continue
                new_labels = tuple(n for n in task.labels if n != labels.ready)
                new_labels += (labels.in_progress,)
                current = _with_task(
                    current,
                    replace(
                        task,
                        labels=new_labels,
                        steps_done=(*task.steps_done, "labelled", "commented"),
                    ),
                )
                if hand_over and task.state is TaskState.PENDING:
                    current = apply_task_event(current, task.issue_number, TaskEvent.DISPATCH, now)
            return current

        self._update(run.run_id, mark)

    def run_dispatch_job(self, job: dict[str, Any]) -> None:
        """Dispatch the workflow for one task, at most once."""
        run_id, number = str(job["run_id"]), int(job["issue"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state not in (RunState.APPROVED, RunState.EXECUTING):
                return  # cancelled or failed meanwhile
            task = run.task(number)
            if task.state in TASK_TERMINAL or "dispatched" in task.steps_done:
                return
            try:
                self._dispatch_workflow_once(run_id, number)
            except GitHubError as exc:
                self._fail_task(run_id, number, f"workflow dispatch failed: {exc}")

    def _dispatch_workflow_once(self, run_id: str, number: int) -> None:
        """Send the workflow dispatch at most once, even if this job runs twice.

        The attempt first *claims* the dispatch in a conditional write; only the winner
        sends. If GitHub's answer is lost (timeout, 5xx) the dispatch may or may not have
        happened: it is not sent again, and the task says so.
        """
        now = self.clock.now()
        claim = f"{CLAIM}{now}"

        def claim_it(run: Run) -> Run | None:
            task = run.task(number)
            if any(s.startswith(CLAIM) or s == "dispatched" for s in task.steps_done):
                return None
            return _with_task(run, replace(task, steps_done=(*task.steps_done, claim)))

        if self._update(run_id, claim_it) is None:
            self._resolve_earlier_claim(run_id, number, now)
            return
        executor = self.policy.executor
        try:
            self.github.dispatch_workflow(
                self.repo,
                str(executor.workflow),
                executor.ref,
                {"issue_number": str(number), "run_id": run_id},
            )
        except GitHubUnavailable as exc:
            if exc.request_sent:
                self._mark_step(
                    run_id,
                    number,
                    "dispatched",
                    event=TaskEvent.DISPATCH,
                    reason=_UNCONFIRMED.format(error=exc),
                )
                return
            self._update(
                run_id,
                lambda r: _with_task(
                    r,
                    replace(
                        r.task(number),
                        steps_done=tuple(s for s in r.task(number).steps_done if s != claim),
                    ),
                ),
            )
            raise  # nothing reached GitHub: the job is retried and claims again
        self._mark_step(run_id, number, "dispatched", event=TaskEvent.DISPATCH)

    def _resolve_earlier_claim(self, run_id: str, number: int, now: float) -> None:
        task = self.store.get_run(run_id).task(number)
        if "dispatched" in task.steps_done:
            return
        claimed_at = max(float(s[len(CLAIM) :]) for s in task.steps_done if s.startswith(CLAIM))
        if now - claimed_at < CLAIM_TIMEOUT:
            raise DispatchInProgress(f"#{number}: another attempt is dispatching; retry later")
        log.warning("dispatch of #%d was claimed at %s and never confirmed", number, claimed_at)
        self._mark_step(
            run_id,
            number,
            "dispatched",
            event=TaskEvent.DISPATCH,
            reason=_UNCONFIRMED.format(error="an earlier attempt stopped mid-way"),
        )


def _dispatch_comment(run: Run, executor: str) -> str:
    how = {"workflow": "a workflow run", "assign": "the assignee", "label": "whoever picks it up"}
    return (
        f"🤖 Valine run `{run.run_id}` is working on this issue (handed to "
        f"{how.get(executor, executor)}). Link a pull request with `Fixes #<issue>` "
        f"or a branch named `valine/{run.run_id}/<issue>`."
    )
