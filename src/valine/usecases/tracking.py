"""Tracking: webhook deliveries move tasks on; the reconcile re-reads what was lost."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from valine.core import liveness, tracking
from valine.core.errors import GitHubUnavailable, NotFound
from valine.core.models import PullRequest, Run, Task
from valine.core.states import TASK_TERMINAL, RunState, TaskState
from valine.core.tracking import DEQUEUED
from valine.logs import log_context
from valine.ports import GitHubError
from valine.usecases.base import (
    APPLIED,
    CANCEL,
    DISPATCH,
    QUEUED_AT,
    SHIP,
    START,
    UseCaseBase,
    dispatch_key,
    log,
)


class TrackingMixin(UseCaseBase):
    """Apply GitHub's news to the active run, each delivery at most once."""

    def run_github_event_job(self, job: dict[str, Any]) -> None:
        """Move tasks on from one webhook delivery; zero GitHub requests."""
        event, delivery_id, payload = job["event"], job["delivery_id"], job["payload"]
        with log_context(delivery_id=delivery_id):
            repo = ((payload.get("repository") or {}).get("full_name")) or ""
            if repo.lower() == self.repo.lower():
                self._apply_event(event, payload, delivery_id)

    def _apply_event(self, event: str, payload: dict[str, Any], delivery_id: str = "") -> None:
        """Apply one delivery to the active run, at most once.

        A job can run twice (at-least-once queues); applying an old ``synchronize`` again
        after newer events would undo them. So the ids of the deliveries that changed the
        run are kept in the run itself and written in the same conditional save.
        """
        run = self.store.active_run(self.repo)
        if run is None:
            return
        now = self.clock.now()
        fail_run = self.policy.on_task_failure == "fail_run"

        def decide(current: Run) -> Run | None:
            if delivery_id and delivery_id in current.applied:
                return None
            changes = tracking.changes_for(event, payload, current, self.policy.labels)
            updated = tracking.settle(tracking.apply_changes(current, changes, now), now, fail_run)
            if _same(updated, current):
                return None
            if delivery_id:
                updated = replace(updated, applied=(*current.applied, delivery_id)[-APPLIED:])
            return updated

        saved = self._update(run.run_id, decide)
        if saved is not None and saved.state is RunState.SHIPPING and _queue_moved(saved):
            # the merge queue merged a PR (close its issue) or ejected one: maybe finish
            self.queue.enqueue(
                SHIP, {"run_id": saved.run_id}, dedupe_key=f"{SHIP}:{saved.run_id}:{saved.version}"
            )
        if saved is not None:
            log.info(
                "%s.%s moved run %s (%s)",
                event,
                payload.get("action", ""),
                saved.run_id,
                saved.state.value,
            )
            self.notify(saved)

    def run_reconcile_job(self, job: dict[str, Any]) -> None:
        """The periodic reconcile, as a job (the local runtime schedules it every few minutes)."""
        self.reconcile()

    def reconcile(self) -> int:
        """Re-read the active run's open pull requests: what a lost webhook would have said.

        For every task with a linked pull request and no final state, one ``get_pull``;
        for every one still waiting on its checks, one ``check_conclusion`` of its head
        (GitHub economy: at most two requests per open PR per reconcile). A PR merged,
        closed or pushed to, and checks that concluded, since the run last heard of them
        are fed through the same tracking as the ``pull_request`` or ``check_suite``
        delivery that would have reported them, so a lost webhook never strands a run.
        Returns how many pull requests were read.
        """
        run = self.store.active_run(self.repo)
        if run is None:
            return 0
        read = 0
        with log_context(run_id=run.run_id):
            self._carry_on(run)
            for task in run.tasks:
                if task.pr_number is None or task.state in TASK_TERMINAL:
                    continue
                try:
                    pull = self.github.get_pull(self.repo, task.pr_number)
                except (GitHubError, GitHubUnavailable, NotFound) as exc:
                    log.warning("reconcile could not read PR #%d: %s", task.pr_number, exc)
                    continue
                read += 1
                payload = _lost_pull_request_event(self.repo, pull, task.head_sha)
                if payload is not None:
                    log.info("reconcile: PR #%d %s", pull.number, payload["action"])
                    self._apply_event("pull_request", payload)
            self._reconcile_checks(run.run_id)
            self._expire(run.run_id)  # after the late news: a result that came counts
        return read

    def _carry_on(self, run: Run) -> None:
        """Re-enqueue the job of a run that has waited on its own job for STALL_AFTER.

        A state is saved before its job is enqueued; if the enqueue was lost (a crash,
        a queue outage) the saved state still says which job carries the run on:
        ``approved`` the start job, ``shipping`` the ship job, ``cancelling`` the cancel
        job, and a pending task of an executing run its dispatch job. Every job is
        idempotent, so a second copy does nothing. One copy per STALL_AFTER period.
        """
        now = self.clock.now()
        period = int(now // STALL_AFTER)
        kind = _CARRIED_BY.get(run.state)
        if kind is not None and now - run.updated_at >= STALL_AFTER:
            added = self.queue.enqueue(
                kind,
                {"run_id": run.run_id},
                dedupe_key=f"{kind}:{run.run_id}:{run.version}:carry-on:{period}",
            )
            if added:
                log.warning("reconcile: run %s waited on its %s job; re-enqueued", run.run_id, kind)
        if run.state is not RunState.EXECUTING:
            return
        for task in run.tasks:
            waited = now - (task.since or run.updated_at)
            if task.state is TaskState.PENDING and waited >= STALL_AFTER:
                self.queue.enqueue(
                    DISPATCH,
                    {"run_id": run.run_id, "issue": task.issue_number},
                    dedupe_key=f"{dispatch_key(run.run_id, task)}:carry-on:{period}",
                )

    def _expire(self, run_id: str) -> None:
        """Mark overdue tasks stale and apply ``[policy] on_stale``; queue re-dispatches."""
        now = self.clock.now()
        fail_run = self.policy.on_task_failure == "fail_run"
        again: list[int] = []

        def decide(run: Run) -> Run | None:
            again.clear()
            if run.state is RunState.SHIPPING:
                return _queue_timeouts(run, now, self.policy.liveness.checks_timeout)
            if run.state is not RunState.EXECUTING:
                return None
            expired, redo = liveness.expire(run, now, self.policy)
            if _same(expired, run):
                return None
            again.extend(redo)
            return tracking.settle(expired, now, fail_run)

        saved = self._update(run_id, decide)
        if saved is None:
            return
        stale = [t.issue_number for t in saved.tasks if t.state is TaskState.STALE]
        log.warning("run %s: stale task(s) %s, re-dispatching %s", run_id, stale, again)
        for number in again:
            self.queue.enqueue(
                DISPATCH,
                {"run_id": run_id, "issue": number},
                dedupe_key=dispatch_key(run_id, saved.task(number)),
            )
        if saved.state is RunState.SHIPPING:
            self.queue.enqueue(
                SHIP, {"run_id": run_id}, dedupe_key=f"{SHIP}:{run_id}:{saved.version}"
            )
        self.notify(saved)

    def _reconcile_checks(self, run_id: str) -> None:
        """Re-read the checks of every task still waiting on them (one request each)."""
        for task in self.store.get_run(run_id).tasks:
            if task.state not in _WAITING_ON_CHECKS or not task.head_sha or not task.pr_number:
                continue
            try:
                conclusion = self.github.check_conclusion(self.repo, task.head_sha)
            except (GitHubError, GitHubUnavailable, NotFound) as exc:
                log.warning("reconcile could not read the checks of #%d: %s", task.pr_number, exc)
                continue
            if conclusion is None:
                continue
            log.info("reconcile: checks of PR #%d concluded %s", task.pr_number, conclusion)
            self._apply_event(
                "check_suite",
                {
                    "action": "completed",
                    "repository": {"full_name": self.repo},
                    "check_suite": {
                        "head_sha": task.head_sha,
                        "conclusion": conclusion,
                        "pull_requests": [{"number": task.pr_number}],
                    },
                },
            )


#: Runs that wait on their own job, and the job that carries each on.
_CARRIED_BY = {RunState.APPROVED: START, RunState.SHIPPING: SHIP, RunState.CANCELLING: CANCEL}
#: How long a run may wait on its own job before the reconcile enqueues it again.
STALL_AFTER = 180.0


def _queue_moved(run: Run) -> bool:
    """True when the merge queue merged one of the run's PRs or ejected one."""
    return any(
        ("queued" in t.steps_done and t.state is TaskState.MERGED and "shipped" not in t.steps_done)
        or (DEQUEUED in t.steps_done and t.state is TaskState.CHECKS_PASSED)
        for t in run.tasks
    )


def _queue_timeouts(run: Run, now: float, timeout: float) -> Run | None:
    """Treat a pull request that sat in the merge queue past ``timeout`` as ejected.

    GitHub tells of an ejection only by the ``dequeued`` webhook; if that is lost the
    run would wait forever, so after the checks timeout the task leaves the queue.
    """
    changes = []
    for task in run.tasks:
        queued_at = _queued_at(task)
        if (
            queued_at is not None
            and now - queued_at >= timeout
            and task.state is TaskState.CHECKS_PASSED
        ):
            why = f"not merged {round((now - queued_at) / 60)} min after it joined the queue"
            changes += tracking.dequeued(task, why)
    return tracking.apply_changes(run, changes, now) if changes else None


def _queued_at(task: Task) -> float | None:
    if "queued" not in task.steps_done:
        return None
    times = [float(s[len(QUEUED_AT) :]) for s in task.steps_done if s.startswith(QUEUED_AT)]
    return max(times, default=None)


#: Task states whose next news is a check result.
_WAITING_ON_CHECKS = frozenset({TaskState.PR_OPEN, TaskState.CHECKS_PENDING})


def _same(a: Run, b: Run) -> bool:
    return a.state is b.state and a.tasks == b.tasks


def _lost_pull_request_event(
    repo: str, pull: PullRequest, known_head: str | None
) -> dict[str, Any] | None:
    """The ``pull_request`` delivery that would report ``pull``'s change, or None.

    Closed (merged or not) gives ``closed``; an open PR whose head is no longer
    ``known_head`` gives ``synchronize``; anything else has nothing to report.
    """
    if pull.state == "closed":
        action = "closed"
    elif known_head is not None and pull.head_sha != known_head:
        action = "synchronize"
    else:
        return None
    return {
        "action": action,
        "number": pull.number,
        "pull_request": {
            "number": pull.number,
            "state": pull.state,
            "merged": pull.merged,
            "body": pull.body,
            "html_url": pull.url,
            "head": {"sha": pull.head_sha, "ref": pull.head_ref},
        },
        "repository": {"full_name": repo},
    }
