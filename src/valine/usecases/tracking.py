"""Tracking: GitHub's news moves tasks on; the reconcile re-reads what was lost.

News arrives as domain events (:mod:`valine.core.events`): a webhook delivery read by
``github/`` (:meth:`TrackingMixin.on_delivery`), or what the reconcile reads back
(:func:`~valine.core.events.from_pull_read`). Each kind of event has its handler,
registered where it is written (``@github_events.register``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from valine.core.errors import GitHubUnavailable, NotFound
from valine.core.models import Run
from valine.core.states import TASK_TERMINAL, TASK_WITH_PR, RunState, Step, TaskState
from valine.logs import log_context
from valine.ports import AuditEntry, GitHubError
from valine.usecases.base import (
    APPLIED,
    CANCEL,
    DISPATCH,
    NOTIFY,
    RECONCILE,
    RELEASE,
    SHIP,
    STALL_AFTER,
    START,
    dispatch_key,
    github_events,
    jobs,
    log,
    release_key,
    to_release,
)
from valine.usecases.deploying import DeployingMixin

if TYPE_CHECKING:
    # The webhook side (the events, the tracking rules, the check pictures) loads on the
    # first news, not with the use cases: a command never needs it (docs/benchmarks.md).
    from valine.core import tracking
    from valine.core.checks import CheckPicture
    from valine.core.events import CheckEvent, Delivery, GitHubEvent


class TrackingMixin(DeployingMixin):
    """Apply GitHub's news to the active run, each delivery at most once."""

    def on_delivery(self, delivery: Delivery) -> None:
        """Move tasks on from one webhook delivery (read by ``github/`` into an event).

        A malformed delivery is logged (naming the field) and ignored: retrying cannot
        make it well-formed. A delivery of another repository, or one that is no news,
        changes nothing. The event goes to the handler registered for its kind.
        """
        with log_context(delivery_id=delivery.delivery_id):
            if delivery.problem is not None:
                log.warning("ignored malformed %s delivery: %s", delivery.label, delivery.problem)
                return
            if delivery.event is None or (delivery.repo or "").lower() != self.repo.lower():
                return
            self.apply_news(delivery.event, delivery)

    @github_events.register("CheckSuiteCompleted", "CommitStatusChanged")
    def _apply_check_event(self, event: CheckEvent, delivery: Delivery) -> None:
        """Re-read the checks of the pull requests a check event concerns (one query).

        Pull request and issue events cost no GitHub request; a check event costs one:
        the whole picture of the pull requests it concerns, judged by the one rule.
        """
        from valine.core import tracking

        run = self.store.active_run(self.repo)
        if run is None:
            return
        numbers = tracking.check_targets(event, run)
        if not numbers:
            # Checks of a commit no task is on (yet: the PR's own webhook may be running
            # right now). Remember the commit; linking a PR at it reads its checks then.
            linked: list[int] = []

            def remember(current: Run) -> Run | None:
                # The PR may have been linked since our read: then read it now, and
                # do not remember (exactly one of this job and the linking job reads).
                linked[:] = tracking.check_targets(event, current)
                return None if linked else tracking.remember_unclaimed(current, event.sha)

            self._update(run.run_id, remember)
            numbers = tuple(linked)
            if not numbers:
                return
        pictures = self.github.pull_checks(self.repo, numbers)
        self._apply_pictures(run.run_id, pictures, delivery.delivery_id, label=delivery.label)

    def _apply_pictures(
        self,
        run_id: str,
        pictures: Sequence[CheckPicture],
        delivery_id: str = "",
        label: str = "",
        before: Run | None = None,
    ) -> Run | None:
        """Apply fresh check pictures to the run (webhook and reconcile share it).

        Pictures that say whether each PR is still in its merge queue (the reconcile's
        read of a shipping run) also apply :func:`~valine.core.tracking.left_queue`
        against ``before``, the run as read before them.
        """
        from valine.core import tracking

        if not pictures:
            return None
        required = self.policy.required_checks

        def changes(current: Run) -> list[tracking.Change]:
            found = tracking.check_changes(current, pictures, required)
            if before is not None:
                found += tracking.left_queue(current, pictures, before)
            return found

        return self._save_changes(run_id, changes, delivery_id, label or "checks")

    @github_events.register(
        "PullRequestOpened",
        "PullRequestPushed",
        "PullRequestMerged",
        "PullRequestClosed",
        "PullRequestDequeued",
        "MergeGroupChecked",
        "IssueChanged",
        "IssueClosed",
        "IssueUnlabelled",
    )
    def _apply_event(self, event: GitHubEvent, delivery: Delivery) -> None:
        """Apply one pull request or issue event to the active run, at most once."""
        from valine.core import tracking

        run = self.store.active_run(self.repo)
        if run is None:
            return
        trusted = self.policy.executor.trusted_logins

        def changes(current: Run) -> list[tracking.Change]:
            return tracking.changes_for(event, current, self.policy.labels, trusted)

        saved = self._save_changes(run.run_id, changes, delivery.delivery_id, delivery.label)
        late = tracking.claimed_late(saved, run) if saved is not None else ()
        if saved is not None and late:
            log.info("checks concluded before PR(s) %s were linked: reading them", late)
            pictures = self.github.pull_checks(self.repo, late)
            self._apply_pictures(saved.run_id, pictures, label="checks of a late link")

    def _save_changes(
        self,
        run_id: str,
        changes_of: Callable[[Run], list[tracking.Change]],
        delivery_id: str,
        label: str,
    ) -> Run | None:
        """Decide and save a run's changes, at most once per delivery; then follow up.

        A job can run twice (at-least-once queues); applying an old ``synchronize`` again
        after newer events would undo them. So the ids of the deliveries that changed the
        run are kept in the run itself and written in the same conditional save.
        """
        from valine.core import tracking

        now = self.clock.now()
        fail_run = self.policy.on_task_failure == "fail_run"
        notes: list[str] = []

        def decide(current: Run) -> Run | None:
            notes.clear()
            if delivery_id and delivery_id in current.applied:
                return None
            changes = changes_of(current)
            updated = tracking.settle(tracking.apply_changes(current, changes, now), now, fail_run)
            if _same(updated, current):
                return None
            notes.extend(c.note for c in changes if c.note)
            if delivery_id:
                updated = replace(updated, applied=(*current.applied, delivery_id)[-APPLIED:])
            return updated

        saved = self._update(run_id, decide)
        if saved is None:
            return None
        for note in notes:
            log.warning("%s", note)
            self.store.append_audit(
                AuditEntry(
                    at=now,
                    actor="github",
                    action="link_pr",
                    outcome=f"refused: {note}",
                    run_id=run_id,
                )
            )
        if saved.state is RunState.SHIPPING and _queue_moved(saved):
            # the merge queue merged a PR (close its issue) or ejected one: maybe finish
            self.queue.enqueue(
                SHIP, {"run_id": saved.run_id}, dedupe_key=f"{SHIP}:{saved.run_id}:{saved.version}"
            )
        log.info("%s moved run %s (%s)", label, saved.run_id, saved.state.value)
        self.notify(saved)
        return saved

    @jobs.register(RECONCILE)
    def run_reconcile_job(self, job: dict[str, Any]) -> None:
        """The periodic reconcile, as a job (the local runtime schedules it every few minutes)."""
        self.reconcile()

    def reconcile(self) -> int:
        """Re-read the active run's open pull requests: what a lost webhook would have said.

        For every task with a linked pull request and no final state, one ``get_pull``;
        then one ``pull_checks`` query for all of them (GitHub economy: N + 1 requests
        per reconcile for N open pull requests). A PR merged, closed or pushed to since
        the run last heard of it becomes the same event as the ``pull_request``
        delivery that would have reported it (:func:`~valine.core.events.from_pull_read`),
        and the checks go through
        the same rule as a check event, so a lost webhook never strands a run.
        Deployments in flight (``[ship] deploy_workflow``) are re-read first: one
        request each. Returns how many pull requests were read.
        """
        from valine.core.events import Delivery, from_pull_read

        recent = self.store.recent_runs(self.repo)
        self._carry_on_releases(recent)
        self._carry_on_archives(recent)
        if self.policy.ship.deploy_workflow:
            self.reconcile_deployments()
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
                news = from_pull_read(pull, task.head_sha)
                if news is not None:
                    label = f"reconcile: {type(news).__name__}"
                    log.info("reconcile: PR #%d %s", pull.number, type(news).__name__)
                    self.apply_news(news, Delivery("", self.repo, news, label))
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

    def _carry_on_releases(self, recent: Sequence[Run]) -> None:
        """Re-enqueue the release job of a recent failed run whose issues are still out.

        The run's record is the job's: a failed run with issues still ``in-progress``
        (the job's enqueue lost, or the job dead-lettered) gets it again after
        STALL_AFTER, one copy per period.
        """
        now = self.clock.now()
        period = int(now // STALL_AFTER)
        for run in recent:
            if (
                run.state is RunState.FAILED
                and to_release(run)
                and now - run.updated_at >= STALL_AFTER
            ):
                added = self.queue.enqueue(
                    RELEASE,
                    {"run_id": run.run_id},
                    dedupe_key=f"{release_key(run)}:carry-on:{period}",
                )
                if added:
                    log.warning("reconcile: failed run %s still holds issues", run.run_id)

    def _carry_on_archives(self, recent: Sequence[Run]) -> None:
        """Re-enqueue the notify job of a recent ended run whose thread is still open
        (:func:`~valine.usecases.notifications.awaits_archive`), one copy per STALL_AFTER
        period: it posts what a dead attempt had claimed (with the claim's nonce) and
        archives the thread."""
        from valine.usecases.notifications import awaits_archive

        now = self.clock.now()
        period = int(now // STALL_AFTER)
        for run in recent:
            if awaits_archive(run, now):
                added = self.queue.enqueue(
                    NOTIFY,
                    {"run_id": run.run_id},
                    dedupe_key=f"{NOTIFY}:{run.run_id}:archive:{period}",
                )
                if added:
                    log.warning("reconcile: run %s ended with its thread open", run.run_id)

    def _expire(self, run_id: str) -> None:
        """Mark overdue tasks stale and apply ``[policy] on_stale``; queue re-dispatches."""
        from valine.core import liveness, tracking

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
        """Re-read the checks of every task with an open pull request (one query).

        While the run ships through a merge queue the same query also reads whether
        each PR is still queued: one that left the queue unmerged (its ``dequeued``
        webhook lost) ends the attempt exactly as that webhook would have.
        """
        from valine.core.tracking import queued_since

        run = self.store.get_run(run_id)
        numbers = [
            t.pr_number for t in run.tasks if t.state in TASK_WITH_PR and t.pr_number is not None
        ]
        if not numbers:
            return
        queue = run.state is RunState.SHIPPING and any(
            queued_since(t) is not None for t in run.tasks
        )
        try:
            pictures = self.github.pull_checks(self.repo, numbers, merge_queue=queue)
        except (GitHubError, GitHubUnavailable, NotFound) as exc:
            log.warning("reconcile could not read the checks: %s", exc)
            return
        self._apply_pictures(run_id, pictures, label="reconcile", before=run if queue else None)


#: Runs that wait on their own job, and the job that carries each on.
_CARRIED_BY = {RunState.APPROVED: START, RunState.SHIPPING: SHIP, RunState.CANCELLING: CANCEL}


def _queue_moved(run: Run) -> bool:
    """True when the merge queue merged one of the run's PRs or ejected one."""
    return any(
        (
            Step.QUEUED in t.steps_done
            and t.state is TaskState.MERGED
            and Step.SHIPPED not in t.steps_done
        )
        or (Step.DEQUEUED in t.steps_done and t.state is TaskState.CHECKS_PASSED)
        for t in run.tasks
    )


def _queue_timeouts(run: Run, now: float, timeout: float) -> Run | None:
    """Treat a pull request that sat in the merge queue past ``timeout`` as ejected.

    GitHub tells of an ejection only by the ``dequeued`` webhook; if that is lost the
    run would wait forever, so after the checks timeout the task leaves the queue.
    """
    from valine.core import tracking
    from valine.core.tracking import queued_since

    changes = []
    for task in run.tasks:
        queued_at = queued_since(task)
        if (
            queued_at is not None
            and now - queued_at >= timeout
            and task.state is TaskState.CHECKS_PASSED
        ):
            why = f"not merged {round((now - queued_at) / 60)} min after it joined the queue"
            changes += tracking.dequeued(task, why)
    return tracking.apply_changes(run, changes, now) if changes else None


def _same(a: Run, b: Run) -> bool:
    return a.state is b.state and a.tasks == b.tasks
