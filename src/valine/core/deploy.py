"""Deployment after ship, decided without I/O: which workflow run is a run's deployment,
what a workflow run's news does to it, and when a deployment has waited too long.

GitHub's ``workflow_dispatch`` answers either 200 with the new run's id
(``return_run_details``) or, on servers without that option, 204 with nothing. So a
deployment is matched to its workflow run by the id when known, else by the run's title
(a deploy workflow with ``run-name: deploy ${{ inputs.run_id }}`` names the run), else
by what GitHub documents of a dispatched run: event ``workflow_dispatch``, the workflow's
file, the branch, and created at or after the dispatch was claimed. The workflow's file
must match in every case: the executor's runs may carry the run id in their titles too.
When several deployments could claim one workflow run, the most recently claimed one
does (the runs of a repository ship one after another).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from valine.core.errors import IllegalTransition
from valine.core.models import Deployment, Run, WorkflowRun, apply_deploy_event
from valine.core.states import DEPLOY_DONE, DeployEvent, DeployState

#: Seconds of clock difference allowed between our claim and GitHub's ``created_at``.
CLOCK_SKEW = 60.0
#: Workflow run statuses that mean it has not concluded yet.
_UNDERWAY = frozenset({"requested", "queued", "in_progress", "waiting", "pending"})


def same_workflow(seen: str, configured: str) -> bool:
    """True if a workflow run's ``path`` (or id) is the configured workflow file (or id)."""
    if not seen or not configured:
        return False
    if seen == configured:
        return True
    return seen.rsplit("/", 1)[-1] == configured.rsplit("/", 1)[-1]


def could_be(deploy: Deployment, run_id: str, seen: WorkflowRun) -> bool:
    """True if ``seen`` may be the workflow run of ``deploy`` (of run ``run_id``)."""
    if deploy.workflow_run_id is not None:
        return seen.id == deploy.workflow_run_id
    if seen.id in deploy.earlier_runs:
        return False
    if deploy.state in DEPLOY_DONE or deploy.claimed_at is None:
        return False
    if not same_workflow(seen.workflow, deploy.workflow):
        return False  # the executor's runs may name the run id too
    if run_id in seen.display_title:
        return True
    return (
        seen.event == "workflow_dispatch"
        and (not seen.head_branch or seen.head_branch == deploy.ref)
        and seen.created_at + CLOCK_SKEW >= deploy.claimed_at
    )


def owner_of(runs: Sequence[Run], seen: WorkflowRun) -> Run | None:
    """The run whose deployment ``seen`` is, or None.

    A run bound to ``seen`` by id wins; a workflow run bound to another deployment is
    nobody else's; among unbound candidates the most recently claimed wins.
    """
    bound = [r for r in runs if r.deploy is not None and r.deploy.workflow_run_id == seen.id]
    if bound:
        return bound[0]
    candidates = [
        r
        for r in runs
        if r.deploy is not None
        and r.deploy.workflow_run_id is None
        and could_be(r.deploy, r.run_id, seen)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.deploy.claimed_at or 0.0) if r.deploy else 0.0)


def observe(run: Run, seen: WorkflowRun, now: float) -> Run | None:
    """``run`` after its deployment's workflow run was seen as ``seen``; None if no news.

    News that the table does not allow (an ``in_progress`` arriving after
    ``completed``) is no news: the deployment keeps what it knows.
    """
    deploy = run.deploy
    if deploy is None:
        return None
    url = seen.url or deploy.url
    changes: dict[str, Any] = {}
    if seen.status == "completed":
        conclusion = seen.conclusion or "unknown"
        ok = conclusion == "success"
        event = DeployEvent.SUCCEEDED if ok else DeployEvent.FAILED
        changes = {
            "conclusion": conclusion,
            "reason": None if ok else f"the workflow run concluded {conclusion}",
            "finished_at": now,
        }
    elif seen.status in _UNDERWAY:
        event = DeployEvent.STARTED
    else:
        return None
    try:
        updated = apply_deploy_event(run, event, now, workflow_run_id=seen.id, url=url, **changes)
    except IllegalTransition:
        if deploy.workflow_run_id is None:  # at least remember which run it is
            bound = replace(deploy, workflow_run_id=seen.id, url=url)
            return replace(run, deploy=bound, updated_at=now)
        return None
    return None if updated.deploy == deploy else updated


def overdue(deploy: Deployment, now: float, timeout: float) -> bool:
    """True if a deployment that was sent has not concluded within ``timeout`` seconds."""
    if deploy.state not in (DeployState.DISPATCHED, DeployState.RUNNING):
        return False
    started = deploy.dispatched_at or deploy.claimed_at or deploy.since or now
    return now - started >= timeout


def expire(run: Run, now: float, timeout: float) -> Run | None:
    """``run`` with an overdue deployment failed (saying why), or None."""
    deploy = run.deploy
    if deploy is None or not overdue(deploy, now, timeout):
        return None
    minutes = round(timeout / 60)
    why = (
        f"no conclusion within {minutes} min of the dispatch"
        if deploy.workflow_run_id is not None
        else f"no workflow run of `{deploy.workflow}` on `{deploy.ref}` seen within {minutes} min"
    )
    return apply_deploy_event(run, DeployEvent.FAILED, now, reason=why, finished_at=now)


def label(deploy: Deployment | None) -> str | None:
    """The word ``/status`` and the run's title show after *shipped*, or None."""
    if deploy is None:
        return None
    return {
        DeployState.PENDING: "deploying",
        DeployState.DISPATCHED: "deploying",
        DeployState.RUNNING: "deploying",
        DeployState.DEPLOYED: "deployed",
        DeployState.FAILED: "deploy failed",
    }[deploy.state]
