"""Execution jobs: start an approved run, relabel and comment its issues, dispatch.

What differs between executor kinds is in :mod:`valine.core.executors` (whose user ids
to assign, who the comment names, whether a dispatch job hands a task over); what a
kind's dispatch job does is registered here, one handler per kind
(``@dispatchers.register``).

The workflow dispatch is the one effect that must not happen twice: it is claimed in a
conditional write (``StampedStep.DISPATCH_CLAIM``) before it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from valine.core.errors import GitHubUnavailable
from valine.core.executors import ASSIGN, LABEL, WORKFLOW, ExecutorKind, kind_of
from valine.core.models import Run, Task, apply_run_event, apply_task_event
from valine.core.states import (
    TASK_TERMINAL,
    RunEvent,
    RunState,
    StampedStep,
    Step,
    TaskEvent,
    TaskState,
)
from valine.logs import log_context
from valine.ports import GitHubError, IssueUpdate
from valine.usecases.base import (
    CANCEL,
    CLAIM_TIMEOUT,
    DISPATCH,
    START,
    DispatchInProgress,
    UseCaseBase,
    _with_task,
    dispatch_key,
    incident,
    jobs,
    log,
    wait_for_live_claim,
)
from valine.usecases.registry import Registry

#: What the dispatch job of each executor kind does, by ``[executor] kind``.
dispatchers: Registry[str] = Registry("executor kind")

_UNCONFIRMED = (
    "GitHub did not confirm the workflow dispatch ({error}); it was not sent "
    "again. If no workflow run started for this issue, start one by hand."
)


class ExecutionMixin(UseCaseBase):
    """Hand an approved run's tasks to the executor, each effect at most once."""

    @jobs.register(START)
    def run_start_job(self, job: dict[str, Any]) -> None:
        """approved -> executing: relabel and comment every issue in one GraphQL request,
        then hand each task to the executor (a workflow dispatch job per task).

        The relabelling is claimed on the run first, in a write that only succeeds while
        the run is approved or executing: a cancel that won the race finds nothing to
        wait for, and a cancel that lost it waits for the claim (see ``run_cancel_job``),
        so no issue is left ``in-progress`` without ``ready``.
        """
        run_id = str(job["run_id"])
        with log_context(run_id=run_id):
            todo = self._claim_labelling(run_id)
            if todo is None:
                return  # cancelled or failed meanwhile
            if todo:
                try:
                    self._label_and_comment(self.store.get_run(run_id), todo)
                except Exception:
                    # The job is retried (after a lost answer it reads back first): let
                    # the retry claim again instead of waiting for this claim to expire.
                    self._release_labelling(run_id, [t.issue_number for t in todo])
                    raise
            from valine.core import tracking

            now = self.clock.now()
            fail_run = self.policy.on_task_failure == "fail_run"
            saved = self._update(
                run_id,
                lambda r: (
                    tracking.settle(apply_run_event(r, RunEvent.START, now), now, fail_run)
                    if r.state is RunState.APPROVED
                    else None
                ),
            )
            run = self.store.get_run(run_id)
            if run.state is RunState.CANCELLING:
                self.queue.enqueue(
                    CANCEL, {"run_id": run_id}, dedupe_key=f"{CANCEL}:{run_id}:{run.version}"
                )
            elif run.state is RunState.EXECUTING:
                self._enqueue_dispatches(run)
            if saved is not None:
                self.notify(saved)

    def _claim_labelling(self, run_id: str) -> list[Task] | None:
        """Claim the relabelling of every task that still needs it; None if the run moved on.

        Raises ``DispatchInProgress`` while another attempt holds a fresh claim.
        """
        now = self.clock.now()
        claimed: list[int] = []
        busy: dict[int, float] = {}

        def claim(run: Run) -> Run | None:
            claimed.clear()
            busy.clear()
            if run.state not in (RunState.APPROVED, RunState.EXECUTING):
                return None
            for task in run.tasks:
                if task.state in TASK_TERMINAL or Step.LABELLED in task.steps_done:
                    continue
                claims = StampedStep.LABEL_CLAIM
                fresh = [at for at in claims.times(task.steps_done) if now - at < CLAIM_TIMEOUT]
                if fresh:
                    busy[task.issue_number] = max(fresh) + CLAIM_TIMEOUT
                    continue
                steps = (*claims.without(task.steps_done), claims.at(now))
                run = _with_task(run, replace(task, steps_done=steps))
                claimed.append(task.issue_number)
            return run

        saved = self._update(run_id, claim)
        if saved is None:
            return None
        if busy:
            raise DispatchInProgress(
                f"{sorted(busy)}: another attempt is relabelling; waiting for its claim",
                until=max(busy.values()),
            )
        return [t for t in saved.tasks if t.issue_number in claimed]

    def _release_labelling(self, run_id: str, numbers: list[int]) -> None:
        """Drop the relabelling claims of ``numbers`` that are not done yet."""
        wanted = set(numbers)

        def release(run: Run) -> Run:
            for task in run.tasks:
                if task.issue_number in wanted and Step.LABELLED not in task.steps_done:
                    steps = StampedStep.LABEL_CLAIM.without(task.steps_done)
                    run = _with_task(run, replace(task, steps_done=steps))
            return run

        self._update(run_id, release)

    def _enqueue_dispatches(self, run: Run) -> None:
        """One dispatch job per pending task (executors that dispatch; once per retry)."""
        if not kind_of(self.policy.executor).dispatches:
            return
        for task in run.tasks:
            if task.state is TaskState.PENDING:
                self.queue.enqueue(
                    DISPATCH,
                    {"run_id": run.run_id, "issue": task.issue_number},
                    dedupe_key=dispatch_key(run.run_id, task),
                )

    def _label_and_comment(self, run: Run, todo: list[Task]) -> None:
        labels = self.policy.labels
        kind = kind_of(self.policy.executor)
        ids = self._label_ids(run.run_id, [labels.ready, labels.in_progress])
        assignees = self._assignee_ids(run, todo, kind)
        if assignees is None:
            return
        comment = _dispatch_comment(run, kind)
        wanted = {
            t.issue_number: IssueUpdate(
                t.node_id,
                add_labels=(ids[labels.in_progress],),
                remove_labels=(ids[labels.ready],),
                assignees=assignees,
                comment=comment,
            )
            for t in todo
        }
        # An earlier attempt may have applied some of it (its answer was lost): read back.
        uncertain = [t.issue_number for t in todo if Step.RELABEL_SENT in t.steps_done]
        wanted.update(self._still_missing(run, {n: wanted[n] for n in uncertain}, ids))
        self._mark_sent(
            run.run_id, [t.issue_number for t in todo if Step.RELABEL_SENT not in t.steps_done]
        )
        try:
            failed = self._send_updates(run, wanted, ids)
        except GitHubError as exc:
            ref = incident("relabelling the run's issues failed", exc)
            for task in todo:
                self._fail_task(run.run_id, task.issue_number, f"relabelling failed (ref {ref})")
            return
        for task in todo:
            if task.node_id in failed:
                reason = f"relabelling failed: {failed[task.node_id]}"
                self._fail_task(run.run_id, task.issue_number, reason)
        todo = [t for t in todo if t.node_id not in failed]
        hand_over = not kind.dispatches  # a label or an assignee is the hand-over
        now = self.clock.now()
        numbers = {t.issue_number for t in todo}

        def mark(current: Run) -> Run:
            for task in current.tasks:
                if task.issue_number not in numbers or Step.LABELLED in task.steps_done:
                    continue
                new_labels = tuple(n for n in task.labels if n != labels.ready)
                new_labels += (labels.in_progress,)
                current = _with_task(
                    current,
                    replace(
                        task,
                        labels=new_labels,
                        steps_done=(*task.steps_done, Step.LABELLED, Step.COMMENTED),
                    ),
                )
                if hand_over and task.state is TaskState.PENDING:
                    current = apply_task_event(current, task.issue_number, TaskEvent.DISPATCH, now)
            return current

        self._update(run.run_id, mark)

    def _assignee_ids(
        self, run: Run, todo: list[Task], kind: ExecutorKind
    ) -> tuple[str, ...] | None:
        """The node ids of the users the executor kind assigns the issues to (the plan
        read them); None, and every task of ``todo`` failed, when one is not known."""
        found = []
        for login in kind.assignees(self.policy.executor):
            user = run.github_ids.get(f"user:{login}")
            if user is None:
                for task in todo:
                    self._fail_task(
                        run.run_id, task.issue_number, f"no GitHub user {login!r} to assign"
                    )
                return None
            found.append(user)
        return tuple(found)

    def _send_updates(
        self, run: Run, wanted: dict[int, IssueUpdate], ids: dict[str, str]
    ) -> Mapping[str, str]:
        """Send the updates; after an ambiguous failure read back and send what is missing.

        Returns GitHub's refusals by node id. A second ambiguous failure is raised: the
        job is retried, and its next attempt reads back again.
        """
        pending = [u for u in wanted.values() if _changes(u)]
        try:
            return self.github.update_issues(self.repo, pending, partial=True)
        except GitHubUnavailable as exc:
            if not exc.request_sent:
                raise
            log.warning("relabelling of run %s unconfirmed (%s): reading back", run.run_id, exc)
        missing = self._still_missing(run, wanted, ids)
        return self.github.update_issues(
            self.repo, [u for u in missing.values() if _changes(u)], partial=True
        )

    def _still_missing(
        self, run: Run, updates: dict[int, IssueUpdate], ids: dict[str, str]
    ) -> dict[int, IssueUpdate]:
        """``updates`` reduced to what the issues, read back from GitHub, do not have yet."""
        names = {node: name for name, node in ids.items()}
        users = {
            v: k.removeprefix("user:") for k, v in run.github_ids.items() if k.startswith("user:")
        }
        marker = comment_marker(run.run_id)
        reduced = {}
        for number, update in updates.items():
            now = self.github.read_issue(self.repo, number)
            present = {n.lower() for n in now.labels}
            reduced[number] = replace(
                update,
                add_labels=tuple(
                    i for i in update.add_labels if names.get(i, "").lower() not in present
                ),
                remove_labels=tuple(
                    i for i in update.remove_labels if names.get(i, "").lower() in present
                ),
                assignees=tuple(a for a in update.assignees if users.get(a) not in now.assignees),
                comment=None if any(marker in c for c in now.comments) else update.comment,
            )
        return reduced

    def _mark_sent(self, run_id: str, numbers: list[int]) -> None:
        """Record, before sending, that the relabelling of ``numbers`` may reach GitHub."""
        if not numbers:
            return
        wanted = set(numbers)

        def mark(current: Run) -> Run:
            for task in current.tasks:
                if task.issue_number in wanted and Step.RELABEL_SENT not in task.steps_done:
                    steps = (*task.steps_done, Step.RELABEL_SENT)
                    current = _with_task(current, replace(task, steps_done=steps))
            return current

        self._update(run_id, mark)

    @jobs.register(DISPATCH)
    def run_dispatch_job(self, job: dict[str, Any]) -> None:
        """Hand one task to the executor, at most once: the handler of its kind does it."""
        run_id, number = str(job["run_id"]), int(job["issue"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state not in (RunState.APPROVED, RunState.EXECUTING):
                return  # cancelled or failed meanwhile
            task = run.task(number)
            if task.state is not TaskState.PENDING or Step.DISPATCHED in task.steps_done:
                # Handed over already, or past it: a pull request got linked while this
                # job waited (e.g. for a claim its attempt killed mid-dispatch left).
                return
            dispatch = dispatchers.get(self, self.policy.executor.kind)
            if dispatch is None:
                raise LookupError(f"no dispatch for executor kind {self.policy.executor.kind!r}")
            dispatch(run, task)

    @dispatchers.register(WORKFLOW.name)
    def _dispatch_workflow(self, run: Run, task: Task) -> None:
        """Dispatch the workflow for ``task`` (once); a refusal fails the task."""
        try:
            self._dispatch_workflow_once(run.run_id, task.issue_number)
        except GitHubError as exc:
            ref = incident(f"workflow dispatch for #{task.issue_number} failed", exc)
            self._fail_task(run.run_id, task.issue_number, f"workflow dispatch failed (ref {ref})")

    @dispatchers.register(ASSIGN.name, LABEL.name)
    def _hand_over_again(self, run: Run, task: Task) -> None:
        """A retried task of a label or assign executor: relabel if needed, else re-mark."""
        if task.state is not TaskState.PENDING:
            return
        if Step.LABELLED not in task.steps_done:
            self._label_and_comment(run, [task])
            return
        step = StampedStep.HANDED_OVER.at(task.retries)
        self._mark_step(run.run_id, task.issue_number, step, event=TaskEvent.DISPATCH)

    def _dispatch_workflow_once(self, run_id: str, number: int) -> None:
        """Send the workflow dispatch at most once, even if this job runs twice.

        The attempt first *claims* the dispatch in a conditional write; only the winner
        sends. If GitHub's answer is lost (timeout, 5xx) the dispatch may or may not have
        happened: it is not sent again, and the task says so.
        """
        now = self.clock.now()
        claim = StampedStep.DISPATCH_CLAIM.at(now)

        def claim_it(run: Run) -> Run | None:
            task = run.task(number)
            steps = task.steps_done
            if StampedStep.DISPATCH_CLAIM.recorded(steps) or Step.DISPATCHED in steps:
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
                    Step.DISPATCHED,
                    event=TaskEvent.DISPATCH,
                    reason=_UNCONFIRMED.format(
                        error=f"ref {incident('workflow dispatch unconfirmed', exc)}"
                    ),
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
        self._mark_step(run_id, number, Step.DISPATCHED, event=TaskEvent.DISPATCH)

    def _resolve_earlier_claim(self, run_id: str, number: int, now: float) -> None:
        task = self.store.get_run(run_id).task(number)
        if Step.DISPATCHED in task.steps_done:
            return
        claimed_at = max(StampedStep.DISPATCH_CLAIM.times(task.steps_done))
        wait_for_live_claim(
            claimed_at, now, f"#{number}: another attempt is dispatching; waiting for its claim"
        )
        log.warning("dispatch of #%d was claimed at %s and never confirmed", number, claimed_at)
        self._mark_step(
            run_id,
            number,
            Step.DISPATCHED,
            event=TaskEvent.DISPATCH,
            reason=_UNCONFIRMED.format(error="an earlier attempt stopped mid-way"),
        )


def comment_marker(run_id: str) -> str:
    """The hidden marker in the run's comment, by which a read-back finds it."""
    return f"<!-- valine:{run_id} -->"


def _changes(update: IssueUpdate) -> bool:
    """True if ``update`` still changes something."""
    return bool(update.add_labels or update.remove_labels or update.assignees or update.comment)


def _dispatch_comment(run: Run, kind: ExecutorKind) -> str:
    return (
        f"🤖 Valine run `{run.run_id}` is working on this issue (handed to "
        f"{kind.handed_to}). Link a pull request with `Fixes #<issue>` "
        f"or a branch named `valine/{run.run_id}/<issue>`.\n\n{comment_marker(run.run_id)}"
    )
