"""Deployment after ship, end to end: ``valine serve`` and the stand-ins over HTTP.

The deploy workflow is dispatched once however often the shipping news arrives and
across a restart; its ``workflow_run`` webhooks move the deployment on; a failed one is
reported and ``/deploy`` runs it again, exactly once; the digest counts the stored runs
without a single GitHub request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from helpers import pr_event
from valine.testing import wait_for
from world import DEFAULT_CONFIG, REPO, World, start_world, stop_world

DEPLOY_CONFIG = (
    DEFAULT_CONFIG
    + """
[ship]
deploy_workflow = "deploy.yml"
ref = "production"
inputs = { run_id = "{run_id}", pull_requests = "{pull_requests}", environment = "prod" }
"""
)


@pytest.fixture
def world(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> Iterator[World]:
    """A world with a deploy workflow, reconciling every second."""
    running = start_world(
        tmp_path,
        signing_key,
        webhook_examples,
        config=DEPLOY_CONFIG,
        env={"VALINE_RECONCILE_EVERY": "1"},
    )
    try:
        yield running
    finally:
        stop_world(running)


def deploys(world: World) -> list[Any]:
    return [d for d in world.github.dispatches(REPO) if d.workflow == "deploy.yml"]


def deploy_runs(world: World) -> list[Any]:
    return [w for w in world.github.workflow_runs(REPO) if w.path.endswith("/deploy.yml")]


def ship(world: World, count: int) -> tuple[str, dict[int, tuple[int, str]]]:
    """Plan, approve, green PRs, ship: the run id and each issue's (PR, head SHA)."""
    issues = [world.github.add_issue(REPO, f"Task {i}", ["ready"]) for i in range(count)]
    run_id = world.plan()
    world.command("approve", run_id=run_id)
    world.wait_state(run_id, "executing")
    prs = {n: world.open_pr(run_id, n) for n in issues}
    for pr, sha in prs.values():
        world.checks(pr, sha, "success")
    world.wait_state(run_id, "ready_to_ship")
    assert "Shipping run" in world.command("ship", run_id=run_id)["data"]["content"]
    world.wait_state(run_id, "shipped")
    return run_id, prs


def deployments_measured(world: World) -> dict[str, float]:
    """``valine_deployments_total`` by outcome, as ``GET /metrics`` shows it."""
    status, body = world.service.request("GET", "/metrics")
    assert status == 200
    found = {}
    for line in body.decode().splitlines():
        if line.startswith("valine_deployments_total{"):
            series, _, value = line.rpartition(" ")
            found[series.split('"')[1]] = float(value)
    return found


def posted(world: World, text: str) -> list[str]:
    """Every announcement of the run (in its thread) that contains ``text``."""
    return [str(m.get("content")) for m in world.posted() if text in str(m.get("content"))]


def test_ship_dispatches_the_deployment_once_and_reports_it_deployed(world: World) -> None:
    run_id, prs = ship(world, 2)
    wait_for("the deploy dispatch", lambda: len(deploys(world)) == 1)
    (sent,) = deploys(world)
    numbers = sorted(pr for pr, _ in prs.values())
    assert sent.ref == "production"
    assert sent.inputs == {
        "run_id": run_id,
        "pull_requests": ",".join(str(n) for n in numbers),
        "environment": "prod",
    }
    # The shipping news again: every merge webhook redelivered (same delivery id and
    # body), a second copy under new ids, then a restart of the service.
    for pr, sha in prs.values():
        payload = pr_event(
            world.examples, "closed", repo=REPO, number=pr, head_sha=sha, merged=True
        )
        for delivery in ("merge-" + str(pr), "merge-" + str(pr), None):
            assert world.deliver("pull_request", payload, delivery) in (200, 202)
    world.restart()
    time.sleep(3)  # three reconciles of the restarted service
    assert len(deploys(world)) == 1
    assert world.deploy_status(run_id) == "deploying"

    # The executor's own workflow runs (agent.yml) concluding say nothing of the deployment.
    for agent in [w for w in world.github.workflow_runs(REPO) if w not in deploy_runs(world)]:
        assert world.workflow_run(agent.id, "completed", "failure") == 202
    time.sleep(1.5)
    assert world.deploy_status(run_id) == "deploying"
    (workflow_run,) = deploy_runs(world)
    assert world.workflow_run(workflow_run.id, "queued") == 202
    assert world.workflow_run(workflow_run.id, "in_progress") == 202
    assert world.workflow_run(workflow_run.id, "completed", "success") == 202
    wait_for("deployed", lambda: world.deploy_status(run_id) == "deployed")
    assert world.status(run_id) == "shipped"
    link = f"/{REPO}/actions/runs/{workflow_run.id}"
    wait_for("the deployed announcement", lambda: posted(world, "shipped · deployed"))
    (announcement,) = posted(world, "shipped · deployed")
    assert link in announcement
    detail = world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
    assert "Deployment `deploy.yml` — deployed" in detail and link in detail
    listing = world.command("status")["data"]["embeds"][0]["description"]
    assert f"`{run_id}` — shipped · deployed" in listing
    # the completed event again changes nothing and posts nothing more
    assert world.workflow_run(workflow_run.id, "completed", "success") in (200, 202)
    time.sleep(1.5)
    assert len(posted(world, "shipped · deployed")) == 1
    assert len(deploys(world)) == 1
    assert deployments_measured(world) == {"deployed": 1}  # counted once, the repeat not

    # The digest, from stored state: not one GitHub request.
    before = world.github_requests()
    digest = world.command("digest")["data"]
    text = digest["embeds"][0]["description"]
    assert "Runs shipped: **1** of 1 run(s) today" in text
    assert "Pull requests merged: **2**" in text
    for number in numbers:
        assert f"[PR #{number}]" in text
    assert "Failed or stale tasks: **0**" in text
    assert f"`{run_id}` deployed" in text
    assert "Approval to ship: 0 min" in text
    assert world.github_requests() == before


def test_a_failed_deployment_is_reported_and_deploy_runs_it_again_once(world: World) -> None:
    world.github.supports_run_details = False  # an older server: 204, no run id
    run_id, _ = ship(world, 1)
    wait_for("the deploy dispatch", lambda: len(deploys(world)) == 1)
    (first,) = deploy_runs(world)
    assert world.workflow_run(first.id, "completed", "failure") == 202
    wait_for("deploy failed", lambda: world.deploy_status(run_id) == "deploy failed")
    wait_for("the failure announcement", lambda: posted(world, "deploy failed"))
    (failure,) = posted(world, "deploy failed")
    assert f"/actions/runs/{first.id}" in failure and f"`/deploy {run_id}`" in failure
    assert world.status(run_id) == "shipped"  # the merges stay

    # Who may not deploy, and runs that do not exist, change nothing.
    refused = world.command("deploy", user="43", run_id=run_id)["data"]
    assert refused["flags"] == 64 and "You may not deploy runs" in refused["content"]
    missing = world.command("deploy", run_id="r20990101-zzzzzz")["data"]
    assert missing["flags"] == 64 and "There is no run `r20990101-zzzzzz`" in missing["content"]
    bad = world.command("deploy", run_id="not-a-run")["data"]
    assert bad["flags"] == 64 and "is not a run id" in bad["content"]
    time.sleep(1.5)
    assert len(deploys(world)) == 1

    again = world.command("deploy", run_id=run_id)["data"]
    assert "deploying run" in again["content"] and "attempt 2" in again["content"]
    twice = world.command("deploy", run_id=run_id)["data"]
    assert twice["flags"] == 64 and "wait for its outcome" in twice["content"]
    wait_for("the second dispatch", lambda: len(deploys(world)) == 2)
    second = deploy_runs(world)[-1]
    assert second.id != first.id
    # a late event of the first run does not touch the second attempt
    assert world.workflow_run(first.id, "completed", "failure") in (200, 202)
    assert world.workflow_run(second.id, "completed", "success") == 202
    wait_for("deployed", lambda: world.deploy_status(run_id) == "deployed")
    time.sleep(1.5)
    assert len(deploys(world)) == 2
    assert deployments_measured(world) == {"failed": 1, "deployed": 1}
    trail = [
        " ".join(line.split()[2:]) for line in world.cli("audit", "--run", run_id).splitlines()
    ]
    assert f"user 42 deploy {run_id} ok: attempt 2" in trail, trail
    assert f"user 43 deploy {run_id} refused: not permitted" in trail, trail
    assert f"user 42 deploy {run_id} refused: deployment in flight" in trail, trail
