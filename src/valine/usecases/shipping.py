"""Ending a run on GitHub: ``/ship`` and its buttons (Ship asks, Confirm ships), the ship
job (merge, merge queue, close the issues, finish), the cancel job and the release job
of a failed run (issues back to ready)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from valine.core import render
from valine.core.errors import NotFound
from valine.core.models import Run, Task, apply_run_event, apply_task_event
from valine.core.replies import Answer, Button, Message, Reply, Style, notice
from valine.core.states import (
    TASK_TERMINAL,
    Action,
    RunEvent,
    RunState,
    StampedStep,
    Step,
    TaskEvent,
    TaskState,
)
from valine.logs import log_context
from valine.ports import (
    GitHubError,
    HeadMoved,
    IssueUpdate,
    MergeQueueRequired,
    NotMergeable,
)
from valine.usecases.base import (
    CANCEL,
    CLAIM_TIMEOUT,
    RELEASE,
    SHIP,
    Actor,
    _with_task,
    incident,
    jobs,
    labelling_since,
    log,
    to_release,
)
from valine.usecases.commanding import states_of, wrong_state
from valine.usecases.deploying import DeployingMixin
from valine.usecases.router import GITHUB, Call, Router

#: The command and buttons of this module.
ROUTES = Router()


class ShippingMixin(DeployingMixin):
    """Merge the green pull requests and close their issues; or release a cancelled run."""

    def ship(self, run_id: str, actor: Actor) -> Answer:
        """``/ship``: ready_to_ship (or ship_failed) -> shipping, then a job merges."""
        now = self.clock.now()

        def decide(run: Run) -> Run:
            run = apply_run_event(run, RunEvent.SHIP, now, reason=None)
            return replace(run, tasks=tuple(_forget_dequeue(t) for t in run.tasks))

        return self._transition_from_discord(
            run_id,
            actor,
            action="ship",
            allowed=states_of(Action.SHIP),
            decide=decide,
            job_kind=SHIP,
            announcement="🚀 Shipping run `{id}` for <@{user}>: merging {n} pull request(s).",
        )

    def confirm_ship(self, run_id: str, actor: Actor) -> Answer:
        """The Ship button: check everything ``/ship`` checks, then ask for confirmation."""
        refusal = self._refusal(actor, "ship", None, run_id)
        if refusal is not None:
            return refusal
        try:
            run = self.store.get_run(run_id)
        except NotFound:
            return notice(f"There is no run `{run_id}`. `/status` lists the recent runs.")
        refusal = self._refusal(actor, "ship", run)
        if refusal is not None:
            return refusal
        allowed = states_of(Action.SHIP)
        if run.state not in allowed:
            return notice(wrong_state(run, "ship", allowed))
        shippable = [t for t in run.tasks if t.state is TaskState.CHECKS_PASSED]
        prs = ", ".join(f"#{t.pr_number}" for t in shippable)
        question = Message(
            f"Ship run `{run_id}`? This merges {len(shippable)} pull request(s) "
            f"({prs}) into `{self.repo}` and closes their issues.",
            rows=((Button("ship-confirm", run_id, "Confirm ship", Style.SUCCESS),),),
        )
        return Reply(question, private=True)

    @jobs.register(SHIP)
    def run_ship_job(self, job: dict[str, Any]) -> None:
        """Merge every green PR at the SHA its checks passed on, then close the issues."""
        run_id = str(job["run_id"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state is not RunState.SHIPPING:
                return
            run = self._recheck(run)
            for task in run.tasks:
                if task.state is TaskState.CHECKS_PASSED and not (
                    {Step.QUEUED, Step.DEQUEUED} & set(task.steps_done)
                ):
                    self._merge(run_id, task)
            run = self.store.get_run(run_id)
            merged = [
                t
                for t in run.tasks
                if t.state is TaskState.MERGED and Step.SHIPPED not in t.steps_done
            ]
            if merged:
                self._close_shipped_issues(run_id, merged)
            self._finish_ship(run_id)

    def _recheck(self, run: Run) -> Run:
        """Re-read the checks of every PR about to be merged (one query), by the one rule.

        A PR whose checks are no longer green (a check re-run and failed, a suite or a
        status added since) moves back to ``checks_failed`` or ``checks_pending`` with
        the check named in its reason, and is not merged; the run ends ``ship_failed``
        saying so.
        """
        numbers = [
            t.pr_number
            for t in run.tasks
            if t.state is TaskState.CHECKS_PASSED
            and not ({Step.QUEUED, Step.DEQUEUED} & set(t.steps_done))
            and t.pr_number is not None
        ]
        if not numbers:
            return run
        from valine.core import tracking

        pictures = self.github.pull_checks(self.repo, numbers)
        now = self.clock.now()
        required = self.policy.required_checks

        def decide(current: Run) -> Run | None:
            changes = [  # only regressions: a PR still green keeps what it says
                c
                for c in tracking.check_changes(current, pictures, required)
                if c.event is not TaskEvent.CHECKS_PASSED
                or c.fields.get("checks_sha") != current.task(c.issue_number).checks_sha
            ]
            updated = tracking.apply_changes(current, changes, now)
            return None if updated.tasks == current.tasks else updated

        saved = self._update(run.run_id, decide)
        if saved is not None:
            log.info("ship of run %s: checks re-read, not every PR is still green", run.run_id)
            return saved
        return run

    def _merge(self, run_id: str, task: Task) -> None:
        now = self.clock.now()
        assert task.pr_number is not None
        sha = str(task.checks_sha)
        try:
            self.github.merge_pull(self.repo, task.pr_number, sha, self.policy.merge_method)
        except HeadMoved:
            reason = (
                f"PR #{task.pr_number} head moved since its checks passed; "
                "not merged (the new push re-runs the checks)"
            )
        except MergeQueueRequired:
            self._enqueue(run_id, task, sha)
            return
        except GitHubError as exc:
            reason = f"PR #{task.pr_number} not merged: {_merge_refusal(exc)}"
        else:
            self._update(
                run_id,
                lambda r: (
                    apply_task_event(r, task.issue_number, TaskEvent.MERGED, now, reason=None)
                    if r.task(task.issue_number).state is not TaskState.MERGED
                    else None
                ),
            )
            return
        log.warning("ship of run %s: %s", run_id, reason)
        self._update(
            run_id, lambda r: _with_task(r, replace(r.task(task.issue_number), reason=reason))
        )

    def _enqueue(self, run_id: str, task: Task, sha: str) -> None:
        """The branch requires a merge queue: queue the PR; its merge webhook finishes it."""
        assert task.pr_number is not None
        try:
            self.github.enqueue_pull(self.repo, task.pr_number, sha)
        except GitHubError as exc:
            ref = incident(f"PR #{task.pr_number} could not join the merge queue", exc)
            reason = f"PR #{task.pr_number} could not join the merge queue (ref {ref})"
            self._update(
                run_id, lambda r: _with_task(r, replace(r.task(task.issue_number), reason=reason))
            )
            return
        now = self.clock.now()
        reason = f"PR #{task.pr_number} is in the merge queue"

        def mark(run: Run) -> Run | None:
            current = run.task(task.issue_number)
            if Step.QUEUED in current.steps_done:
                return None
            steps = (*current.steps_done, Step.QUEUED, StampedStep.QUEUED_AT.at(now))
            return _with_task(run, replace(current, steps_done=steps, reason=reason))

        self._update(run_id, mark)

    def _close_shipped_issues(self, run_id: str, merged: list[Task]) -> None:
        """Relabel ``shipped`` and close every merged task's issue in one request."""
        labels = self.policy.labels
        ids = self._label_ids(run_id, [labels.in_progress, labels.shipped])
        self.github.update_issues(
            self.repo,
            [
                IssueUpdate(
                    t.node_id,
                    remove_labels=(ids[labels.in_progress],),
                    add_labels=(ids[labels.shipped],),
                    close=True,
                )
                for t in merged
            ],
        )
        numbers = {t.issue_number for t in merged}

        def mark(run: Run) -> Run:
            for task in run.tasks:
                if task.issue_number in numbers and Step.SHIPPED not in task.steps_done:
                    kept = tuple(
                        n for n in task.labels if n not in (labels.in_progress, labels.ready)
                    )
                    run = _with_task(
                        run,
                        replace(
                            task,
                            labels=(*kept, labels.shipped),
                            steps_done=(*task.steps_done, Step.SHIPPED),
                        ),
                    )
            return run

        self._update(run_id, mark)

    def _finish_ship(self, run_id: str) -> None:
        """End the ship attempt: shipped, or ship_failed (then cancelling if asked)."""
        now = self.clock.now()

        def finish(run: Run) -> Run | None:
            if run.state is not RunState.SHIPPING:
                return None
            done = (TaskState.MERGED, TaskState.SKIPPED, TaskState.FAILED)
            left = [t for t in run.tasks if t.state not in done]
            if any(
                Step.QUEUED in t.steps_done and t.state is TaskState.CHECKS_PASSED for t in left
            ):
                return None  # the merge queue has the last word; its webhooks finish the run
            if any(
                t.state is TaskState.MERGED and Step.SHIPPED not in t.steps_done for t in run.tasks
            ):
                return None  # merged since this job read the run: the ship job it queued closes it
            if not left:
                shipped = apply_run_event(run, RunEvent.SHIPPED, now, finished_at=now, reason=None)
                if self.policy.ship.deploy_workflow:
                    shipped = self.start_deployment(shipped, now)
                return shipped
            reasons = "; ".join(f"#{t.issue_number}: {t.reason or t.state.value}" for t in left)
            run = apply_run_event(
                run,
                RunEvent.SHIP_FAILED,
                now,
                reason=f"{len(left)} task(s) not shipped — {reasons}. "
                "`/ship` again retries only these.",
            )
            if run.cancel_requested_by is None:
                return run
            return apply_run_event(
                run,
                RunEvent.CANCEL,
                now,
                reason=f"cancelled by <@{run.cancel_requested_by}> while shipping",
            )

        saved = self._update(run_id, finish)
        if saved is None:
            return
        if saved.state is RunState.CANCELLING:
            self.queue.enqueue(
                CANCEL, {"run_id": run_id}, dedupe_key=f"{CANCEL}:{run_id}:{saved.version}"
            )
        self.enqueue_deployment(saved)
        self.notify(saved)

    @jobs.register(CANCEL)
    def run_cancel_job(self, job: dict[str, Any]) -> None:
        """End a cancelling run: merged issues stay shipped, the others go back to ready.

        If the start job is relabelling issues right now (a fresh claim), the cancel
        waits for it (the job comes back after the claim's timeout) so no issue is left
        ``in-progress`` without ``ready``. Then one request relabels every issue the run
        touched, and ``released`` ends the run and frees the repository's lock.
        """
        run_id = str(job["run_id"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state is not RunState.CANCELLING:
                return
            now = self.clock.now()
            busy = [
                t
                for t in run.tasks
                if t.state not in TASK_TERMINAL and labelling_since(t) > now - CLAIM_TIMEOUT
            ]
            if busy:
                self.queue.enqueue(
                    CANCEL,
                    {"run_id": run_id},
                    dedupe_key=f"{CANCEL}:{run_id}:{run.version}:wait",
                    delay=CLAIM_TIMEOUT,
                )
                return
            unshipped = [
                t
                for t in run.tasks
                if t.state is TaskState.MERGED and Step.SHIPPED not in t.steps_done
            ]
            if unshipped:
                self._close_shipped_issues(run_id, unshipped)
            try:
                self._release(self.store.get_run(run_id))
            except GitHubError as exc:  # refused for good: end the run all the same
                log.error("run %s: issues could not be put back to ready: %s", run_id, exc)
                self._end_cancel(run_id, f"issues not relabelled ({exc.message})")
                return
            self._end_cancel(run_id)

    @jobs.register(RELEASE)
    def run_release_job(self, job: dict[str, Any]) -> None:
        """A run that ended ``failed``: its unshipped issues go back to ready, as a cancel's.

        Once per issue (the ``released`` step); the run's reason then says which went
        back. An issue a newer run has taken since (a person labelled it ready again and
        it was planned) is left to that run; one GitHub refuses for good is left for a
        person (the reason says so). Either way it is not tried again.
        """
        run_id = str(job["run_id"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state is not RunState.FAILED or not to_release(run):
                return
            active = self.store.active_run(self.repo)
            taken = {t.issue_number for t in active.tasks} if active is not None else set()
            for number in taken & {t.issue_number for t in to_release(run)}:
                self._mark_step(run_id, number, Step.NOT_RELEASED)
            try:
                released = self._release(self.store.get_run(run_id))
            except GitHubError as exc:  # refused for good: say so once, do not loop
                log.error("run %s: issues could not be put back to ready: %s", run_id, exc)
                for task in to_release(self.store.get_run(run_id)):
                    self._mark_step(run_id, task.issue_number, Step.NOT_RELEASED)
                note = f" Its issues could not be put back ({exc.message}); relabel them by hand."
            else:
                if not released:
                    return
                back = ", ".join(f"#{n}" for n in released)
                note = f" Back to `{self.policy.labels.ready}`: {back}."
                log.info("run %s failed: issue(s) %s back to ready", run_id, back)
            saved = self._update(
                run_id,
                lambda r: (
                    None
                    if note in (r.reason or "")
                    else replace(r, reason=f"{r.reason or 'failed'}{note}")
                ),
            )
            if saved is not None:
                self.notify(saved)

    def _release(self, run: Run) -> list[int]:
        """Put every issue the run relabelled (and did not ship or skip) back to ready,
        once; the numbers of the issues it put back."""
        labels = self.policy.labels
        release = to_release(run)
        if not release:
            return []
        ids = self._label_ids(run.run_id, [labels.ready, labels.in_progress])
        self.github.update_issues(
            self.repo,
            [
                IssueUpdate(
                    t.node_id,
                    remove_labels=(ids[labels.in_progress],),
                    add_labels=(ids[labels.ready],),
                )
                for t in release
            ],
        )
        for task in release:
            kept = tuple(n for n in task.labels if n not in (labels.in_progress, labels.ready))
            self._mark_step(
                run.run_id, task.issue_number, Step.RELEASED, labels=(*kept, labels.ready)
            )
        return [t.issue_number for t in release]

    def _end_cancel(self, run_id: str, problem: str | None = None) -> None:
        now = self.clock.now()

        def end(run: Run) -> Run | None:
            if run.state is not RunState.CANCELLING:
                return None
            reason = f"{run.reason or 'cancelled'}: {render.cancel_outcome(run)}"
            if problem:
                reason += f" — {problem}; relabel them by hand"
            return apply_run_event(run, RunEvent.RELEASED, now, finished_at=now, reason=reason)

        saved = self._update(run_id, end)
        if saved is not None:
            log.info("run %s cancelled; lock released", run_id)
            self.notify(saved)


def _merge_refusal(exc: GitHubError) -> str:
    """Why GitHub refused a merge, in the user's terms; GitHub's own text goes to the log."""
    ref = incident("GitHub refused a merge", exc)
    if isinstance(exc, HeadMoved):
        return f"its head changed after the checks passed (ref {ref})"
    if isinstance(exc, NotMergeable):
        return f"GitHub refused the merge: conflicts or branch protection (ref {ref})"
    return f"GitHub refused the merge (ref {ref})"


def _forget_dequeue(task: Task) -> Task:
    """A task whose merge-queue ejection no longer holds it back (a new ship attempt)."""
    if Step.DEQUEUED not in task.steps_done:
        return task
    return replace(task, steps_done=tuple(s for s in task.steps_done if s != Step.DEQUEUED))


@ROUTES.command("ship", action="ship", needs=GITHUB)
@ROUTES.button("ship-confirm", action="ship", needs=GITHUB)
def _ship(uc: ShippingMixin, call: Call) -> Answer:
    return uc.ship(call.run_id, call.actor)


@ROUTES.button("ship", action="ship", needs=GITHUB)
def _ask_to_ship(uc: ShippingMixin, call: Call) -> Answer:
    return uc.confirm_ship(call.run_id, call.actor)
