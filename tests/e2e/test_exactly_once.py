"""Side effects exactly once, end to end: ``valine serve`` against stand-ins that inject
faults (a mutation applied then answered 502, GraphQL RATE_LIMITED, a spent primary limit,
redelivered and late webhooks)."""

from __future__ import annotations

import time

from helpers import check_suite_event
from valine.testing import wait_for
from valine.testing.faults import Match, github_primary_limit
from world import REPO, World


def _ready(world: World, count: int) -> list[int]:
    for label in ("in-progress", "shipped"):  # a repository already set up for Valine
        world.github.add_label(REPO, label)
    return world.ready_issues(count, labels=["ready"])


def test_a_mutation_applied_then_answered_502_leaves_exactly_one_comment(world: World) -> None:
    issues = _ready(world, 3)
    run_id = world.plan()
    world.github.apply_then_fail_next(502, match=Match(graphql="addComment"))

    world.approve(run_id, 3)

    for number in issues:
        comments = world.github.comments(REPO, number)
        assert len(comments) == 1, f"#{number}: {comments}"
        assert f"<!-- valine:{run_id} -->" in comments[0]
        assert world.github.issue(REPO, number).labels == ["in-progress"]
    mutations = [r for r in world.github.requests if "addComment" in str(r.body)]
    assert [r.status for r in mutations] == [502], "the mutation was sent again"


def test_graphql_rate_limited_and_a_primary_limit_finish_after_the_reset(world: World) -> None:
    _ready(world, 2)
    run_id = world.plan()
    world.github.graphql_rate_limit_next(reset_in=2, match=Match(graphql="addComment"))

    world.command("approve", run_id=run_id)
    wait_for("the rate-limited mutation", lambda: any(r.fault for r in world.github.requests))
    # ... and then the REST budget is spent, for the workflow dispatches
    world.github.faults.add(github_primary_limit(time.time() + 2, match=Match(path="^/repos/")))
    wait_for("dispatches", lambda: len(world.github.dispatches(REPO)) == 2)
    world.wait_state(run_id, "executing")

    requests = world.github.requests
    resets = {f.name: float(f.headers["x-ratelimit-reset"]) for _, f in world.github.faults.history}
    for resource, name in (("/graphql", "graphql-rate-limited"), ("/repos/", "primary-limit")):
        ours = [r for r in requests if r.path.startswith(resource)]
        limited = [r for r in ours if r.fault == name]
        assert len(limited) == 1, f"{name}: {len(limited)} requests met the limit"
        later = ours[ours.index(limited[0]) + 1 :]
        assert later, f"nothing was sent after {name}"
        assert all(r.at >= resets[name] for r in later), f"a request before {name} reset"
    status = world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
    assert "failed" not in status


def test_every_announcement_is_posted_once_over_redelivered_and_late_webhooks(
    world: World,
) -> None:
    issues = _ready(world, 2)
    run_id = world.plan()

    def said(text: str) -> int:
        return sum(text in _text(m) for m in world.posted())

    world.approve(run_id, 2)
    prs = [world.open_pr(run_id, number) for number in issues]
    for pr, sha in prs:
        world.github.report_checks(REPO, sha, "success")  # what the service reads back
        green = check_suite_event(
            world.examples, "completed", repo=REPO, head_sha=sha, conclusion="success", pulls=[pr]
        )
        for delivery in (f"d-{pr}", f"d-{pr}", f"late-{pr}"):  # redelivered, then a late copy
            world.deliver("check_suite", green, delivery=delivery)
    world.wait_state(run_id, "ready_to_ship")
    # (a run shipped before its notify window passes never says "Ready to ship": wait)
    wait_for("the ready announcement", lambda: said("Ready to ship"))
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    for pr, sha in prs:  # late webhooks after the run ended
        late = check_suite_event(
            world.examples, "completed", repo=REPO, head_sha=sha, conclusion="success", pulls=[pr]
        )
        world.deliver("check_suite", late)

    wait_for("the announcements", lambda: said("Shipped **") and said("Ready to ship"))
    time.sleep(1.0)  # five notify windows: a repeat would have been posted by now
    assert said("Ready to ship") == 1
    assert said("Shipped **") == 1


def _text(message: dict[str, object]) -> str:
    embeds = message.get("embeds") or []
    assert isinstance(embeds, list)
    parts = [str(message.get("content") or "")]
    parts += [f"{e.get('title', '')} {e.get('description', '')}" for e in embeds]
    return " ".join(parts)
