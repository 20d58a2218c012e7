"""Deployment after ship: dispatch the deploy workflow once, follow its workflow run.

A run that ships with ``[ship] deploy_workflow`` configured gets a pending deployment in
the same conditional save that makes it ``shipped``, and a deploy job. The job *claims*
the dispatch in a conditional write before sending it (like the executor's dispatch),
so two copies of the job, a redelivered webhook or a restart never dispatch twice.
``workflow_run`` webhooks and the reconcile move the deployment on; ``/deploy`` starts
one more attempt (registered here with its permission). The run stays ``shipped``
whatever the deployment does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from valine.core.errors import GitHubUnavailable, NotFound, QueueUnavailable, RunConflict
from valine.core.models import Deployment, Run, WorkflowRun, apply_deploy_event
from valine.core.policy import deploy_inputs
from valine.core.replies import Answer, announce, notice
from valine.core.states import (
    DEPLOY_DONE,
    Action,
    DeployEvent,
    DeployState,
    RunState,
    TaskState,
    allowed_actions,
)
from valine.logs import log_context
from valine.ports import GitHubError
from valine.usecases.base import (
    CLAIM_TIMEOUT,
    DEPLOY,
    STALL_AFTER,
    Actor,
    github_events,
    incident,
    jobs,
    log,
    wait_for_live_claim,
)
from valine.usecases.commanding import CommandingBase
from valine.usecases.router import GITHUB, Call, Router

if TYPE_CHECKING:
    # Loaded with the first workflow run's news, not with the use cases (a command never
    # reads one; docs/benchmarks.md, the Lambda cold start).
    from valine.core.events import Delivery, WorkflowRunChanged

#: The command of this module.
ROUTES = Router()

#: How many recent runs a ``workflow_run`` delivery or the reconcile looks through.
RECENT = 10
_UNCONFIRMED = (
    "GitHub did not confirm the dispatch ({error}); it was not sent again — its workflow "
    "run is looked for by workflow, branch and time"
)


def deploy_key(run_id: str, attempt: int) -> str:
    """The dedupe key of a deployment attempt's job."""
    return f"{DEPLOY}:{run_id}:{attempt}"


class DeployingMixin(CommandingBase):
    """Dispatch a shipped run's deployment once and track it to its conclusion."""

    def redeploy(self, run_id: str, actor: Actor) -> Answer:
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
            return notice(
                "No deployment is configured: set `[ship] deploy_workflow` in valine.toml."
            )
        if Action.DEPLOY not in allowed_actions(run.state):
            self._audit(actor, "deploy", f"refused: run is {run.state.value}", run_id)
            return notice(
                f"Run `{run_id}` is `{run.state.value}`: only a shipped run can be deployed."
            )
        if run.deploy is not None and run.deploy.state not in DEPLOY_DONE:
            self._audit(actor, "deploy", "refused: deployment in flight", run_id)
            return notice(
                f"Run `{run_id}`'s deployment (attempt {run.deploy.attempt}) is "
                f"`{run.deploy.state.value}`: wait for its outcome."
            )
        now = self.clock.now()
        try:
            saved = self.store.save_run(self.start_deployment(run, now, actor.user_id))
        except RunConflict:
            self._audit(actor, "deploy", "refused: lost a race", run_id)
            return notice(f"Run `{run_id}` changed at the same moment; try again.")
        assert saved.deploy is not None
        self._audit(actor, "deploy", f"ok: attempt {saved.deploy.attempt}", run_id)
        try:
            self.enqueue_deployment(saved)
        except QueueUnavailable as exc:
            log.error("enqueue of the deployment failed (the reconcile retries): %s", exc)
        self.notify(saved)
        return announce(
            f"🚀 <@{actor.user_id}> is deploying run `{run_id}` again "
            f"(attempt {saved.deploy.attempt}, `{saved.deploy.workflow}`)."
        )

    def start_deployment(self, run: Run, now: float, requested_by: str | None = None) -> Run:
        """``run`` with a new pending deployment attempt (the caller saves it)."""
        rules = self.policy.ship
        old = run.deploy
        attempt = old.attempt + 1 if old is not None else 1
        earlier = () if old is None else old.earlier_runs
        if old is not None and old.workflow_run_id is not None:
            earlier = (*earlier, old.workflow_run_id)
        return replace(
            run,
            deploy=Deployment(
                state=DeployState.PENDING,
                attempt=attempt,
                workflow=str(rules.deploy_workflow),
                ref=rules.ref,
                requested_by=requested_by,
                since=now,
                earlier_runs=earlier[-20:],
            ),
        )

    def enqueue_deployment(self, run: Run) -> None:
        """Enqueue the job of the run's pending deployment attempt (once per attempt)."""
        if run.deploy is not None and run.deploy.state is DeployState.PENDING:
            self.queue.enqueue(
                DEPLOY,
                {"run_id": run.run_id},
                dedupe_key=deploy_key(run.run_id, run.deploy.attempt),
            )

    @jobs.register(DEPLOY)
    def run_deploy_job(self, job: dict[str, Any]) -> None:
        """Dispatch the deploy workflow of a shipped run, at most once per attempt."""
        run_id = str(job["run_id"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            deploy = run.deploy
            if run.state is not RunState.SHIPPED or deploy is None:
                return
            if deploy.state is not DeployState.PENDING:
                return
            now = self.clock.now()
            attempt = deploy.attempt

            def claim(current: Run) -> Run | None:
                d = current.deploy
                if d is None or d.attempt != attempt or d.claimed_at is not None:
                    return None
                return replace(current, deploy=replace(d, claimed_at=now))

            if self._update(run_id, claim) is None:
                self._resolve_deploy_claim(run_id, attempt, now)
                return
            self._send_deployment(self.store.get_run(run_id), attempt)

    def _send_deployment(self, run: Run, attempt: int) -> None:
        assert run.deploy is not None
        merged = [t for t in run.tasks if t.state is TaskState.MERGED]
        inputs = deploy_inputs(
            self.policy.ship,
            run.run_id,
            [t.pr_number for t in merged if t.pr_number is not None],
            [t.issue_number for t in merged],
        )
        try:
            started = self.github.dispatch_deployment(
                self.repo, run.deploy.workflow, run.deploy.ref, inputs
            )
        except GitHubUnavailable as exc:
            if not exc.request_sent:
                self._set_deploy(run.run_id, attempt, lambda d: replace(d, claimed_at=None))
                raise  # nothing reached GitHub: the job is retried and claims again
            ref = incident("deploy dispatch unconfirmed", exc)
            self._deploy_event(
                run.run_id,
                attempt,
                DeployEvent.DISPATCHED,
                reason=_UNCONFIRMED.format(error=f"ref {ref}"),
            )
            return
        except GitHubError as exc:
            ref = incident("deploy dispatch refused", exc)
            self._deploy_event(
                run.run_id,
                attempt,
                DeployEvent.FAILED,
                reason=f"GitHub refused the dispatch of `{run.deploy.workflow}` (ref {ref})",
                finished_at=self.clock.now(),
            )
            return
        fields: dict[str, Any] = {"dispatched_at": self.clock.now(), "reason": None}
        if started is not None:
            fields.update(workflow_run_id=started.id, url=started.url or None)
        log.info("deployment %d of run %s dispatched", attempt, run.run_id)
        self._deploy_event(run.run_id, attempt, DeployEvent.DISPATCHED, **fields)

    def _resolve_deploy_claim(self, run_id: str, attempt: int, now: float) -> None:
        """Another attempt claimed this dispatch: wait for it, or give up on it (unconfirmed)."""
        deploy = self.store.get_run(run_id).deploy
        if deploy is None or deploy.attempt != attempt or deploy.state is not DeployState.PENDING:
            return
        claimed = deploy.claimed_at or 0.0
        wait_for_live_claim(claimed, now, f"deployment {attempt} of {run_id} is being dispatched")
        log.warning("deployment %d of run %s was claimed and never confirmed", attempt, run_id)
        self._deploy_event(
            run_id,
            attempt,
            DeployEvent.DISPATCHED,
            reason=_UNCONFIRMED.format(error="an earlier attempt stopped mid-way"),
        )

    def _deploy_event(self, run_id: str, attempt: int, event: DeployEvent, **fields: Any) -> None:
        now = self.clock.now()

        def decide(run: Run) -> Run | None:
            if run.deploy is None or run.deploy.attempt != attempt:
                return None
            if run.deploy.state is not DeployState.PENDING:
                # a workflow_run event got here first: keep its news, add what we learnt
                known = {k: v for k, v in fields.items() if getattr(run.deploy, k) is None}
                updated = replace(run, deploy=replace(run.deploy, **known))
                return None if updated.deploy == run.deploy else updated
            return apply_deploy_event(run, event, now, **fields)

        saved = self._update(run_id, decide)
        if saved is not None:
            self.notify(saved)

    def _set_deploy(self, run_id: str, attempt: int, change: Any) -> None:
        def decide(run: Run) -> Run | None:
            if run.deploy is None or run.deploy.attempt != attempt:
                return None
            return replace(run, deploy=change(run.deploy))

        self._update(run_id, decide)

    # -- news of workflow runs: webhooks and the reconcile ------------------------------

    @github_events.register("WorkflowRunChanged")
    def _on_workflow_run(self, event: WorkflowRunChanged, delivery: Delivery) -> None:
        """A workflow run's webhook: news for a deployment, if it is one's."""
        self.apply_workflow_run(event.run)

    def apply_workflow_run(self, seen: WorkflowRun) -> Run | None:
        """Apply a workflow run's news to the deployment it belongs to (if any)."""
        from valine.core import deploy as deploying

        if not self.policy.ship.deploy_workflow:
            return None  # every CI run sends workflow_run too: read nothing for them
        owner = deploying.owner_of(self._deploying_runs(), seen)
        if owner is None:
            return None
        now = self.clock.now()
        attempt = owner.deploy.attempt if owner.deploy else 0

        def decide(run: Run) -> Run | None:
            if run.deploy is None or run.deploy.attempt != attempt:
                return None
            if not deploying.could_be(run.deploy, run.run_id, seen):
                return None
            return deploying.observe(run, seen, now)

        saved = self._update(owner.run_id, decide)
        if saved is not None and saved.deploy is not None:
            log.info(
                "deployment %d of run %s: %s",
                saved.deploy.attempt,
                saved.run_id,
                saved.deploy.state.value,
                extra={"deployment": saved.deploy.state.value},
            )
            self.notify(saved)
        return saved

    def _deploying_runs(self) -> Sequence[Run]:
        """Recent shipped runs with a deployment (the ones a workflow run may concern)."""
        return [
            r
            for r in self.store.recent_runs(self.repo, limit=RECENT)
            if r.state is RunState.SHIPPED and r.deploy is not None
        ]

    def reconcile_deployments(self) -> int:
        """Re-read the workflow runs of deployments in flight; expire overdue ones.

        One request per deployment in flight: its workflow run by id when known, else
        the workflow's dispatched runs on its branch since the claim; each run read is
        applied as the ``WorkflowRunChanged`` event its webhook would have been. A deployment whose
        job was lost (pending, unclaimed, for a while) has its job enqueued again.
        Returns how many requests were sent.
        """
        from valine.core.events import Delivery, WorkflowRunChanged

        sent = 0
        for run in self._deploying_runs():
            deploy = run.deploy
            assert deploy is not None
            if deploy.state in DEPLOY_DONE:
                continue
            if deploy.state is DeployState.PENDING:
                self._carry_deployment_on(run)
                continue
            sent += 1
            for seen in self._read_workflow_runs(run, deploy):
                news = WorkflowRunChanged(seen)  # what its workflow_run webhook says
                self.apply_news(news, Delivery("", self.repo, news, "reconcile"))
            self._expire_deployment(run.run_id)
        return sent

    def _read_workflow_runs(self, run: Run, deploy: Deployment) -> Sequence[WorkflowRun]:
        from valine.core import deploy as deploying

        try:
            if deploy.workflow_run_id is not None:
                return [self.github.workflow_run(self.repo, deploy.workflow_run_id)]
            since = (deploy.claimed_at or deploy.since or run.updated_at) - deploying.CLOCK_SKEW
            return self.github.dispatched_runs(self.repo, deploy.workflow, deploy.ref, since)
        except (GitHubError, GitHubUnavailable, NotFound) as exc:
            log.warning("reconcile could not read the deployment of %s: %s", run.run_id, exc)
            return []

    def _carry_deployment_on(self, run: Run) -> None:
        deploy = run.deploy
        assert deploy is not None
        now = self.clock.now()
        if deploy.claimed_at is None and now - (deploy.since or run.updated_at) >= STALL_AFTER:
            period = int(now // STALL_AFTER)
            self.queue.enqueue(
                DEPLOY,
                {"run_id": run.run_id},
                dedupe_key=f"{deploy_key(run.run_id, deploy.attempt)}:carry-on:{period}",
            )
        elif deploy.claimed_at is not None and now - deploy.claimed_at >= CLAIM_TIMEOUT:
            self.queue.enqueue(
                DEPLOY,
                {"run_id": run.run_id},
                dedupe_key=f"{deploy_key(run.run_id, deploy.attempt)}:resolve",
            )

    def _expire_deployment(self, run_id: str) -> None:
        from valine.core import deploy as deploying

        now = self.clock.now()
        timeout = float(self.policy.ship.deploy_timeout)
        saved = self._update(run_id, lambda r: deploying.expire(r, now, timeout))
        if saved is not None:
            log.warning("deployment of run %s: no conclusion in time", run_id)
            self.notify(saved)


@ROUTES.command("deploy", action="deploy", needs=GITHUB)
def _deploy(uc: DeployingMixin, call: Call) -> Answer:
    return uc.redeploy(call.run_id, call.actor)
