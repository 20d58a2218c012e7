"""GET /metrics after a whole run through `valine serve`: the run's counters and durations."""

from __future__ import annotations

import http.client
import re

import pytest

from world import REPO, World, wait_for

pytestmark = pytest.mark.e2e


def scrape(world: World) -> tuple[str, dict[str, float]]:
    """The content type and every sample of ``GET /metrics`` by its full series name."""
    conn = http.client.HTTPConnection("127.0.0.1", world.service.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        text = response.read().decode()
        content_type = response.getheader("content-type") or ""
    finally:
        conn.close()
    samples = {}
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return content_type, samples


def test_a_whole_run_shows_in_the_metrics(world: World) -> None:
    number = world.github.add_issue(REPO, "Add a countdown", ["ready", "P1"])
    run_id = world.plan()
    world.command("approve", run_id=run_id)
    world.wait_state(run_id, "executing")
    # executing comes before the hand-over: wait for it, or the PR may beat the dispatch
    wait_for("the hand-over", lambda: "`dispatched`" in world.described(run_id))
    pr, sha = world.open_pr(run_id, number)
    world.checks(pr, sha, "success")
    world.wait_state(run_id, "ready_to_ship")
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    wait_for(
        "the task merged in the metrics",
        lambda: scrape(world)[1].get('valine_tasks_total{state="merged"}') == 1,
    )
    content_type, samples = scrape(world)
    assert content_type.startswith("text/plain; version=0.0.4")
    # The run: planned and shipped once, each step's duration observed once.
    assert samples['valine_runs_total{state="planned"}'] == 1
    assert samples['valine_runs_total{state="shipped"}'] == 1
    for step in ("plan_to_approve", "approve_to_ready", "ready_to_shipped"):
        assert samples[f"valine_run_{step}_seconds_count"] == 1, step
        assert samples[f"valine_run_{step}_seconds_sum"] >= 0
        assert samples[f'valine_run_{step}_seconds_bucket{{le="+Inf"}}'] == 1
    # The task: from hand-over to its pull request, then to green.
    assert samples["valine_task_dispatch_to_pr_seconds_count"] == 1
    assert samples["valine_task_pr_to_green_seconds_count"] == 1
    # The traffic that carried it.
    assert samples['valine_commands_total{command="plan",outcome="deferred"}'] == 1
    ships = {k: v for k, v in samples.items() if 'command="ship"' in k}
    assert sum(ships.values()) == 1, ships
    assert samples['valine_commands_total{command="approve",outcome="answered"}'] == 1
    assert samples['valine_deliveries_total{event="pull_request",outcome="accepted"}'] == 1
    assert samples['valine_deliveries_total{event="check_suite",outcome="accepted"}'] == 1
    assert samples['valine_github_requests_total{kind="graphql"}'] >= 3
    assert samples['valine_github_requests_total{kind="rest"}'] >= 2
    assert 0 < samples['valine_github_rate_limit_remaining{resource="core"}'] <= 100
    # the shipped announcement follows the save within the notify window: wait for it
    wait_for(
        "three Discord requests", lambda: scrape(world)[1]["valine_discord_requests_total"] >= 3
    )
    assert sum(v for k, v in samples.items() if k.startswith("valine_job_attempts_total")) >= 5
    assert any(re.match(r'valine_job_age_seconds_count\{kind="\w+"\}', k) for k in samples)
    assert samples["valine_active_run_age"] == 0  # the run is over
    assert "valine_dead_letters_total" not in str(samples)


def test_the_active_run_age_grows_while_a_run_is_open(world: World) -> None:
    world.github.add_issue(REPO, "Add a countdown", ["ready", "P1"])
    world.plan()
    _, samples = scrape(world)
    assert samples["valine_active_run_age"] >= 0
    assert samples['valine_runs_total{state="planned"}'] == 1
