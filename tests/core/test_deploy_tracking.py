"""Deployment tracking decided in the core: which workflow run is whose, and what it does."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valine.core import deploy
from valine.core.models import Deployment, Run, WorkflowRun
from valine.core.states import DeployState, RunState

T0 = 1_800_000_000.0


def shipped(run_id: str = "r20270115-aaaaaa", **fields: object) -> Run:
    d = Deployment(
        state=DeployState.DISPATCHED, workflow="deploy.yml", ref="main", claimed_at=T0, since=T0
    )
    return Run(
        run_id=run_id,
        repo="o/r",
        created_at=T0 - 3600,
        state=RunState.SHIPPED,
        deploy=replace(d, **fields),  # type: ignore[arg-type]
    )


def seen(**fields: object) -> WorkflowRun:
    base = WorkflowRun(
        id=7,
        status="in_progress",
        conclusion=None,
        url="https://github.com/o/r/actions/runs/7",
        event="workflow_dispatch",
        head_branch="main",
        created_at=T0 + 2,
        workflow=".github/workflows/deploy.yml",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "matches"),
    [
        ({}, True),
        ({"event": "push"}, False),
        ({"workflow": ".github/workflows/other.yml"}, False),
        ({"head_branch": "feature"}, False),
        ({"created_at": T0 - 3600}, False),  # older than the claim (beyond the skew)
        ({"created_at": T0 - 30}, True),  # within the clock skew
        ({"event": "push", "display_title": "deploy r20270115-aaaaaa"}, True),  # run-name
        (  # the executor's run of the same run id is not the deployment
            {"workflow": ".github/workflows/agent.yml", "display_title": "r20270115-aaaaaa #3"},
            False,
        ),
    ],
)
def test_an_unbound_deployment_matches_what_github_documents(
    change: dict[str, object], matches: bool
) -> None:
    run = shipped()
    assert deploy.could_be(run.deploy, run.run_id, seen(**change)) is matches  # type: ignore[arg-type]


def test_a_bound_deployment_matches_its_run_only_and_earlier_runs_never() -> None:
    bound = shipped(workflow_run_id=7)
    assert deploy.could_be(bound.deploy, bound.run_id, seen())  # type: ignore[arg-type]
    assert not deploy.could_be(bound.deploy, bound.run_id, seen(id=8))  # type: ignore[arg-type]
    again = shipped(earlier_runs=(7,))
    assert not deploy.could_be(again.deploy, again.run_id, seen())  # type: ignore[arg-type]


def test_of_two_candidates_the_latest_claim_owns_a_new_workflow_run() -> None:
    older = shipped("r20270115-aaaaaa", claimed_at=T0 - 10)
    newer = shipped("r20270115-bbbbbb", claimed_at=T0)
    assert deploy.owner_of([older, newer], seen()) is newer
    bound = shipped("r20270115-cccccc", workflow_run_id=7, claimed_at=T0 - 500)
    assert deploy.owner_of([older, newer, bound], seen()) is bound


@pytest.mark.parametrize(
    ("status", "conclusion", "state"),
    [
        ("queued", None, DeployState.RUNNING),
        ("in_progress", None, DeployState.RUNNING),
        ("completed", "success", DeployState.DEPLOYED),
        ("completed", "failure", DeployState.FAILED),
        ("completed", "cancelled", DeployState.FAILED),
        ("completed", "skipped", DeployState.FAILED),  # skipped is not deployed
    ],
)
def test_observing_a_workflow_run(status: str, conclusion: str | None, state: DeployState) -> None:
    after = deploy.observe(shipped(), seen(status=status, conclusion=conclusion), T0 + 60)
    assert after is not None and after.deploy is not None
    assert after.deploy.state is state
    assert after.deploy.workflow_run_id == 7
    assert after.state is RunState.SHIPPED  # whatever the deployment does
    if state is DeployState.FAILED:
        assert after.deploy.reason == f"the workflow run concluded {conclusion}"


@given(st.permutations(["queued", "in_progress", "completed"]))
def test_events_in_any_order_end_at_the_conclusion(order: list[str]) -> None:
    run = shipped()
    for status in order:
        conclusion = "success" if status == "completed" else None
        run = deploy.observe(run, seen(status=status, conclusion=conclusion), T0 + 5) or run
    assert run.deploy is not None and run.deploy.state is DeployState.DEPLOYED


def test_an_overdue_deployment_fails_saying_why() -> None:
    run = shipped(dispatched_at=T0)
    assert deploy.expire(run, T0 + 3599, 3600) is None
    expired = deploy.expire(run, T0 + 3600, 3600)
    assert expired is not None and expired.deploy is not None
    assert expired.deploy.state is DeployState.FAILED
    assert "no workflow run of `deploy.yml` on `main` seen within 60 min" in str(
        expired.deploy.reason
    )
    done = shipped(state=DeployState.DEPLOYED)
    assert deploy.expire(done, T0 + 10**6, 3600) is None


def test_the_label_status_shows() -> None:
    assert deploy.label(None) is None
    assert deploy.label(shipped().deploy) == "deploying"
    assert deploy.label(shipped(state=DeployState.FAILED).deploy) == "deploy failed"
    assert deploy.label(shipped(state=DeployState.DEPLOYED).deploy) == "deployed"


def test_a_deployment_survives_its_stored_form() -> None:
    run = shipped(workflow_run_id=9, url="u", earlier_runs=(3, 4), reason="why")
    assert Run.from_dict(run.to_dict()) == run
