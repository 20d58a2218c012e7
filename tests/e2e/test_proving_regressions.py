"""Defects the proving ground found (docs/reliability.md, "What the proving ground found").

Each test states the behaviour the product promises, at the smallest scale that showed
the defect.
"""

from __future__ import annotations

import pytest

from helpers import check_suite_event, pr_event
from world import REPO, World, wait_for

pytestmark = pytest.mark.e2e


def test_a_check_concluding_before_its_pull_request_event_is_not_lost(world: World) -> None:
    issue = world.github.add_issue(REPO, "Task", ["ready", "P1"])
    run_id = world.plan()
    world.command("approve", run_id=run_id)
    wait_for("the dispatch", lambda: len(world.github.dispatches(REPO)) == 1)
    world.wait_state(run_id, "executing")
    number, sha = world.github.open_pull(REPO, f"fix-{issue}", f"Fixes #{issue}")
    world.github.report_checks(REPO, sha, "success")
    checks = check_suite_event(
        world.examples, "completed", repo=REPO, head_sha=sha, conclusion="success", pulls=[number]
    )
    opened = pr_event(
        world.examples,
        "opened",
        repo=REPO,
        number=number,
        body=f"Fixes #{issue}",
        head_ref=f"fix-{issue}",
        head_sha=sha,
    )
    assert world.deliver("check_suite", checks) == 202  # GitHub: checks can finish first
    assert world.deliver("pull_request", opened) == 202
    world.wait_state(run_id, "ready_to_ship", timeout=10)
