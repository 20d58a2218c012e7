"""Two repositories served by one deployment: ``valine serve`` with ``[[repositories]]``.

Each repository has its channel (where ``/plan`` plans it) and its own rules; their runs
move at once, their webhooks interleaved, and neither touches the other's.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from valine.testing.examples import check_suite_event, pr_event
from valine.testing.world import (
    DEFAULT_CONFIG,
    REPO,
    World,
    interaction,
    start_world,
    stop_world,
    wait_for,
)

WIDGETS, GADGETS = REPO, "octo/gadgets"
CHANNEL = {WIDGETS: "1300000000000000001", GADGETS: "1300000000000000002"}
CONFIG = (
    DEFAULT_CONFIG
    + f"""
[[repositories]]
name = "{WIDGETS}"
channel_id = "{CHANNEL[WIDGETS]}"

[[repositories]]
name = "{GADGETS}"
channel_id = "{CHANNEL[GADGETS]}"
[repositories.labels]
ready = "todo"
[repositories.merge]
method = "rebase"
"""
)
READY = {WIDGETS: "ready", GADGETS: "todo"}


@pytest.fixture
def world(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> Iterator[World]:
    running = start_world(tmp_path, signing_key, webhook_examples, config=CONFIG)
    running.github.add_repo(GADGETS)
    for repo in (WIDGETS, GADGETS):
        for label in ("in-progress", "shipped"):
            running.github.add_label(repo, label)
    try:
        yield running
    finally:
        stop_world(running)


def command(world: World, name: str, channel: str, **options: str) -> dict[str, Any]:
    """A slash command from user 42 in ``channel``; the answer (its token kept by name)."""
    document = json.loads(interaction(2, name, **options))
    document["channel_id"] = channel
    world.tokens[f"{name}:{channel}"] = document["token"]
    status, answer = world.send(document)
    assert status == 200, answer
    result: dict[str, Any] = json.loads(answer)
    return result


def plan(world: World, channel: str, **options: str) -> str:
    """``/plan`` in ``channel``; the run id of the plan its deferred answer becomes."""
    assert command(world, "plan", channel, **options) == {"type": 5}
    token = world.tokens[f"plan:{channel}"]

    def titled() -> str | None:
        message = world.discord.original(token) or {}
        title = (message.get("embeds") or [{}])[0].get("title", "")
        found = re.search(r"Run (r\d{8}-\w+)", title)
        return found.group(1) if found else None

    return wait_for("the plan message", titled)


def status(world: World, run_id: str) -> tuple[str, str]:
    """``(state, repository)`` of a run as ``/status run_id`` shows it."""
    embed = command(world, "status", CHANNEL[WIDGETS], run_id=run_id)["data"]["embeds"][0]
    return embed["title"].split("·")[1].strip().replace(" ", "_"), embed["footer"]["text"]


def wait_state(world: World, run_id: str, state: str) -> None:
    wait_for(f"{run_id} {state}", lambda: status(world, run_id)[0] == state)


def open_pr(world: World, repo: str, run_id: str, issue: int) -> tuple[int, str]:
    """A member's pull request fixing ``issue`` in ``repo``, and its ``opened`` delivery."""
    body = f"Fixes #{issue}"
    number, sha = world.github.open_pull(repo, f"fix-{issue}", body)
    payload = pr_event(
        world.examples, "opened", repo=repo, number=number, body=body, head_ref=f"fix-{issue}",
        head_sha=sha, author="octocat", author_association="MEMBER", user_type="User",
    )  # fmt: skip
    assert world.deliver("pull_request", payload) == 202
    return number, sha


def green(world: World, repo: str, pr: int, sha: str) -> None:
    """CI passes on ``sha`` of ``repo`` and its ``check_suite.completed`` is delivered."""
    suite = world.github.report_checks(repo, sha, "success", app="ci")
    payload = check_suite_event(
        world.examples, "completed", repo=repo, head_sha=sha, conclusion="success", pulls=[pr]
    )
    payload["check_suite"]["id"] = suite
    payload["check_suite"]["updated_at"] = f"{time.time():.6f}"
    assert world.deliver("check_suite", payload) == 202


def start_both(world: World, count: int) -> dict[str, tuple[str, list[int]]]:
    """Ready issues in both repositories, each planned in its channel and approved."""
    issues = {
        repo: [
            world.github.add_issue(repo, f"{repo} task {i}", [READY[repo]]) for i in range(count)
        ]
        for repo in (WIDGETS, GADGETS)
    }
    world.github.add_issue(GADGETS, "labelled ready, not todo", ["ready"])  # not gadgets' label
    runs = {repo: plan(world, CHANNEL[repo]) for repo in (WIDGETS, GADGETS)}
    for run_id in runs.values():
        answer = command(world, "approve", CHANNEL[WIDGETS], run_id=run_id)  # any channel
        assert "approved by <@42>" in answer["data"]["content"], answer
    for repo, run_id in runs.items():
        wait_for(f"{repo} dispatches", lambda r=repo: len(world.github.dispatches(r)) == count)
        wait_state(world, run_id, "executing")
    return {repo: (runs[repo], issues[repo]) for repo in runs}


def interleaved_green(
    world: World, runs: dict[str, tuple[str, list[int]]]
) -> dict[str, dict[int, tuple[int, str]]]:
    """Every task of both runs gets a green pull request, the two repositories' webhooks
    alternating; the pull requests by repository and issue."""
    prs: dict[str, dict[int, tuple[int, str]]] = {WIDGETS: {}, GADGETS: {}}
    pairs = list(zip(runs[WIDGETS][1], runs[GADGETS][1], strict=True))
    for ours, theirs in pairs:
        prs[WIDGETS][ours] = open_pr(world, WIDGETS, runs[WIDGETS][0], ours)
        prs[GADGETS][theirs] = open_pr(world, GADGETS, runs[GADGETS][0], theirs)
    for ours, theirs in pairs:
        green(world, WIDGETS, *prs[WIDGETS][ours])
        green(world, GADGETS, *prs[GADGETS][theirs])
    for run_id, _ in runs.values():
        wait_state(world, run_id, "ready_to_ship")
    return prs


def test_two_repositories_run_at_once_and_cancelling_one_leaves_the_other(world: World) -> None:
    runs = start_both(world, 2)
    (widgets_run, widgets_issues), (gadgets_run, gadgets_issues) = runs[WIDGETS], runs[GADGETS]
    # each plan in its own channel, of its own repository, with its own rules
    assert status(world, widgets_run) == ("executing", WIDGETS)
    assert status(world, gadgets_run) == ("executing", GADGETS)
    planned = world.discord.original(world.tokens[f"plan:{CHANNEL[GADGETS]}"])
    assert "labelled ready, not todo" not in json.dumps(planned)
    for number in gadgets_issues:
        labels = world.github.issue(GADGETS, number).labels
        assert "in-progress" in labels and "todo" not in labels
    # /status without a run id lists both active runs, each with its repository
    listed = command(world, "status", CHANNEL[GADGETS])["data"]["embeds"][0]["description"]
    assert f"`{widgets_run}` · {WIDGETS}" in listed
    assert f"`{gadgets_run}` · {GADGETS}" in listed

    prs = interleaved_green(world, runs)

    # a delivery of a repository the deployment does not serve changes nothing
    before = world.github_requests()
    stranger = pr_event(world.examples, "opened", repo="elsewhere/thing", number=1, body="x")
    body = json.dumps(stranger).encode()
    from valine.testing.world import github_headers

    code, answer = world.service.request(
        "POST", "/github/webhook", body, github_headers(body, "pull_request", str(uuid.uuid4()))
    )
    assert (code, json.loads(answer)["reason"]) == (202, "repository not served")

    # cancelling gadgets' run leaves widgets' untouched
    answer = command(world, "cancel", CHANNEL[GADGETS], run_id=gadgets_run)
    assert "cancel" in answer["data"]["content"].lower(), answer
    wait_state(world, gadgets_run, "cancelled")
    for number in gadgets_issues:
        labels = world.github.issue(GADGETS, number).labels
        assert "todo" in labels and "in-progress" not in labels
    assert status(world, widgets_run) == ("ready_to_ship", WIDGETS)
    for number in widgets_issues:
        assert "in-progress" in world.github.issue(WIDGETS, number).labels

    command(world, "ship", CHANNEL[WIDGETS], run_id=widgets_run)
    wait_state(world, widgets_run, "shipped")
    for pr, _sha in prs[WIDGETS].values():
        assert world.github.pull(WIDGETS, pr).merged
    for pr, _sha in prs[GADGETS].values():
        assert not world.github.pull(GADGETS, pr).merged
    # the stranger's delivery cost no request and moved nothing: every request since
    # was the cancel's and the ship's, all of the two served repositories
    paths = [r.path for r in world.github.requests[before:]]
    assert not any("elsewhere" in p for p in paths)


def test_plan_another_repository_by_option_and_autocomplete_it(world: World) -> None:
    world.github.add_issue(GADGETS, "gadget work", ["todo"])
    # the channel's own repository first, then the others, filtered by what was typed
    suggestions = autocomplete(world, "plan", CHANNEL[WIDGETS], "repository", "")
    assert suggestions == [WIDGETS, GADGETS]
    assert autocomplete(world, "plan", CHANNEL[WIDGETS], "repository", "gadg") == [GADGETS]
    refused = command(world, "plan", CHANNEL[WIDGETS], repository="octo/nothing")
    assert refused["data"]["flags"] == 64
    assert "`octo/nothing` is not a repository Valine serves here" in refused["data"]["content"]
    assert WIDGETS in refused["data"]["content"] and GADGETS in refused["data"]["content"]
    run_id = plan(world, CHANNEL[WIDGETS], repository=GADGETS)
    assert status(world, run_id) == ("planned", GADGETS)
    # widgets has no active run: its channel's /plan plans widgets, independently
    world.github.add_issue(WIDGETS, "widget work", ["ready"])
    widgets_run = plan(world, CHANNEL[WIDGETS])
    assert status(world, widgets_run) == ("planned", WIDGETS)
    # run-id autocomplete in gadgets' channel offers gadgets' run first
    assert autocomplete(world, "status", CHANNEL[GADGETS], "run_id", "")[:2] == [
        run_id,
        widgets_run,
    ]
    assert autocomplete(world, "status", CHANNEL[WIDGETS], "run_id", "")[:2] == [
        widgets_run,
        run_id,
    ]


def test_a_command_from_a_channel_no_repository_names_goes_to_none_of_them(
    world: World,
) -> None:
    """Not to the first repository by default: ``/plan`` and ``/digest`` are refused,
    naming both repositories and their channels; a named repository or a run still
    finds its own; ``/status`` lists both."""
    elsewhere = "1300000000000000009"
    world.github.add_issue(WIDGETS, "widget work", ["ready"])
    world.github.add_issue(GADGETS, "gadget work", ["todo"])
    before = world.github_requests()
    for name in ("plan", "digest"):
        refused = command(world, name, elsewhere)
        assert refused["type"] == 4 and refused["data"]["flags"] == 64, refused
        text = refused["data"]["content"]
        assert f"`{WIDGETS}` (<#{CHANNEL[WIDGETS]}>)" in text
        assert f"`{GADGETS}` (<#{CHANNEL[GADGETS]}>)" in text
        assert "/plan repository:" in text
    assert world.github_requests() == before
    run_id = plan(world, elsewhere, repository=GADGETS)
    assert status(world, run_id) == ("planned", GADGETS)
    answer = command(world, "approve", elsewhere, run_id=run_id)
    assert "approved by <@42>" in answer["data"]["content"], answer
    wait_state(world, run_id, "executing")
    listed = command(world, "status", elsewhere)["data"]["embeds"][0]["description"]
    assert f"`{run_id}` · {GADGETS}" in listed
    assert autocomplete(world, "approve", elsewhere, "run_id", "") == [run_id]


def test_two_runs_shipped_at_once_cost_what_each_costs_alone(world: World) -> None:
    """Every GitHub request of both runs: 3N + 4 each (test_workflow's count of one run)."""
    runs = start_both(world, 2)
    interleaved_green(world, runs)
    for repo, (run_id, _) in runs.items():
        command(world, "ship", CHANNEL[repo], run_id=run_id)
    for repo, (run_id, issues) in runs.items():
        wait_state(world, run_id, "shipped")
        for number in issues:
            assert world.github.issue(repo, number).state == "closed"
    merges = [r for r in world.github.requests if r.method == "PUT" and "/merge" in r.path]
    methods = {
        r.path.split("/pulls")[0].removeprefix("/repos/"): r.body["merge_method"] for r in merges
    }
    assert methods == {WIDGETS: "squash", GADGETS: "rebase"}  # each repository's rules
    assert world.github_requests() == 2 * (3 * 2 + 4)


def autocomplete(world: World, name: str, channel: str, focused: str, typed: str) -> list[str]:
    """The choices of an autocomplete interaction for option ``focused`` of ``/name``."""
    document = json.loads(interaction(4, name))
    document["channel_id"] = channel
    document["data"] = {
        "id": "1",
        "name": name,
        "type": 1,
        "options": [{"name": focused, "type": 3, "value": typed, "focused": True}],
    }
    status_code, answer = world.send(document)
    assert status_code == 200, answer
    return [choice["value"] for choice in json.loads(answer)["data"]["choices"]]
