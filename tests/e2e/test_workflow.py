"""The workflow end to end: plan -> approve -> execution -> tracking -> ship.

``valine serve`` runs as its own process against the GitHub and Discord stand-ins; the
tests act only through signed HTTP requests (slash commands, buttons, webhooks built
from @octokit/webhooks-examples) and assert what the stand-ins received and what
``/status`` reports.
"""

from __future__ import annotations

from typing import Any

import pytest

from world import REPO, World, wait_for

pytestmark = pytest.mark.e2e


def test_happy_path_plan_to_ship(world: World) -> None:
    for label in ("in-progress", "shipped"):  # a repository already set up for Valine
        world.github.add_label(REPO, label)
    issues = world.ready_issues(3)
    world.github.add_issue(REPO, "Blocked", ["ready", "blocked"])
    world.github.open_pull(REPO, "unrelated", "a PR carrying the ready label")  # excluded

    before = world.github_requests()
    run_id = world.plan()
    plan_requests = world.github_requests() - before
    assert plan_requests == 1  # the issues and the node ids in one GraphQL query
    plan = world.discord.original(world.tokens["plan"])
    assert plan is not None
    assert [c["custom_id"] for c in plan["components"][0]["components"]] == [
        f"approve:{run_id}",
        f"cancel:{run_id}",
    ]
    for number in issues:
        assert f"#{number}" in plan["embeds"][0]["description"]

    before = world.github_requests()
    world.command("status", run_id=run_id)
    world.command("status")
    assert world.github_requests() == before  # /status never calls GitHub

    world.approve(run_id, 3)
    for dispatch in world.github.dispatches(REPO):
        assert dispatch.workflow == "agent.yml"
        assert dispatch.inputs["run_id"] == run_id
    for number in issues:
        issue = world.github.issue(REPO, number)
        assert "in-progress" in issue.labels
        assert "ready" not in issue.labels
        wait_for(
            "the run comment",
            lambda n=number: any(run_id in c for c in world.github.comments(REPO, n)),
        )

    before = world.github_requests()
    shas = {}
    for number in issues:
        pr, sha = world.open_pr(run_id, number)
        world.checks(pr, sha, "success")
        shas[pr] = sha
    world.wait_state(run_id, "ready_to_ship")
    # Pull request webhooks cost nothing; each check_suite.completed one read of the PR's
    # whole picture (one GraphQL query).
    assert world.github_requests() == before + 3
    wait_for(
        "the ready-to-ship announcement",
        lambda: world.posted("Ready to ship"),
    )

    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    for pr, sha in shas.items():
        assert world.github.pull(REPO, pr).merged
        merge = next(
            r
            for r in world.github.requests
            if r.method == "PUT" and r.path.endswith(f"/pulls/{pr}/merge")
        )
        assert merge.body["sha"] == sha
        assert merge.body["merge_method"] == "squash"
    for number in issues:
        issue = world.github.issue(REPO, number)
        assert issue.state == "closed"
        assert "shipped" in issue.labels
        assert "in-progress" not in issue.labels
    wait_for(
        "the ship summary",
        lambda: world.posted("Shipped **3**"),
    )
    # The whole run: see test_a_whole_run_costs_at_most_4n_plus_3_requests.
    assert world.github_requests() == 3 * 3 + 4 <= 4 * 3 + 3


def test_the_first_run_creates_the_labels_it_needs(world: World) -> None:
    run_id, issues = world.start(1)
    assert "in-progress" in world.github.labels(REPO)
    pr, sha = world.open_pr(run_id, issues[0])
    world.checks(pr, sha, "success")
    world.wait_state(run_id, "ready_to_ship")
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    assert "shipped" in world.github.issue(REPO, issues[0]).labels
    assert world.github_requests() == 3 * 1 + 4 + 2  # + one createLabel each, once ever


@pytest.mark.parametrize(("count", "suites"), [(1, 1), (3, 1), (3, 3)])
def test_a_whole_run_costs_at_most_4n_plus_3_requests(
    world: World, count: int, suites: int
) -> None:
    """Every GitHub request of a whole run, plan to ship, in a repository set up for Valine.

    plan 1 (the ready issues and every node id in one GraphQL query), approve 1 + N (one
    GraphQL relabel-and-comment, a dispatch each), one checks read per concluded check
    suite (N x suites), ship 1 + N + 1 (the re-check of every PR's checks in one query,
    the merges, one GraphQL relabel-and-close): 3N + 4 with one suite per pull request,
    2N + 4 + N x suites in general. Pull request webhooks cost nothing.
    """
    for label in ("in-progress", "shipped"):
        world.github.add_label(REPO, label)
    run_id, issues = world.start(count)
    for number in issues:
        pr, sha = world.open_pr(run_id, number)
        # CI concludes after the PR is linked, as in a real run: a suite that beat the
        # link is read once with the link, which would make the count vary with timing
        wait_for(f"PR #{pr} linked", lambda pr=pr: f"PR #{pr}" in world.described(run_id))
        running = [
            world.github.report_checks(REPO, sha, None, status="in_progress", app=f"app{i}")
            for i in range(suites)
        ]  # every App's suite starts with the push; each concludes on its own
        for suite in running:
            world.github.complete_checks(REPO, suite, "success")
            world.deliver_suite(pr, sha, "success", suite_id=suite)
    world.wait_state(run_id, "ready_to_ship")
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")

    expected = 2 * count + 4 + count * suites
    assert world.github_requests() == expected
    if suites == 1:
        assert expected <= 4 * count + 3


def test_red_checks_then_a_fixing_push(world: World) -> None:
    run_id, issues = world.start(2)
    pr1, sha1 = world.open_pr(run_id, issues[0], link="branch")
    pr2, sha2 = world.open_pr(run_id, issues[1])
    world.checks(pr1, sha1, "failure")
    world.checks(pr2, sha2, "success")
    wait_for(
        "red task shown",
        lambda: (
            "checks_failed"
            in world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
        ),
    )
    assert world.status(run_id) == "executing"
    fixed = world.push(pr1)
    world.checks(pr1, sha1, "success")  # late result for the old head: ignored
    assert world.status(run_id) == "executing"
    world.checks(pr1, fixed, "success")
    world.wait_state(run_id, "ready_to_ship")
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    merge = next(r for r in world.github.requests if r.path.endswith(f"/pulls/{pr1}/merge"))
    assert merge.body["sha"] == fixed


def test_pr_closed_without_merging_then_replaced(world: World) -> None:
    run_id, issues = world.start(1)
    pr, sha = world.open_pr(run_id, issues[0])
    world.github.close_pull(REPO, pr)
    from helpers import pr_event

    assert (
        world.deliver(
            "pull_request", pr_event(world.examples, "closed", repo=REPO, number=pr, head_sha=sha)
        )
        == 202
    )
    wait_for(
        "task back to dispatched",
        lambda: (
            "closed without merging"
            in world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
        ),
    )
    pr2, sha2 = world.open_pr(run_id, issues[0])
    world.checks(pr2, sha2, "success")
    world.wait_state(run_id, "ready_to_ship")
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    assert not world.github.pull(REPO, pr).merged
    assert world.github.pull(REPO, pr2).merged


def test_issue_closed_by_a_person_skips_its_task(world: World) -> None:
    from helpers import issue_event

    run_id, issues = world.start(2)
    world.github.close_issue(REPO, issues[1])
    assert (
        world.deliver(
            "issues",
            issue_event(
                world.examples,
                "closed",
                repo=REPO,
                number=issues[1],
                labels=["in-progress"],
                sender="grace",
            ),
        )
        == 202
    )
    pr, sha = world.open_pr(run_id, issues[0])
    world.checks(pr, sha, "success")
    world.wait_state(run_id, "ready_to_ship")
    description = world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
    assert "skipped" in description
    assert "issue closed by grace" in description
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    merges = [r for r in world.github.requests if r.path.endswith("/merge")]
    assert len(merges) == 1


def test_head_moved_before_ship_fails_then_retry_ships_the_rest(world: World) -> None:
    run_id, issues, prs = world.to_ready_to_ship(3)
    moved_pr, _ = prs[issues[1]]
    new_sha = world.github.push(REPO, moved_pr)  # pushed; its webhook has not arrived yet
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "ship_failed")
    status = world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
    assert "head moved" in status
    assert world.github.pull(REPO, prs[issues[0]][0]).merged
    assert world.github.pull(REPO, prs[issues[2]][0]).merged
    assert not world.github.pull(REPO, moved_pr).merged
    wait_for(
        "the ship failure announcement",
        lambda: world.posted("did not ship completely"),
    )

    from helpers import pr_event

    world.deliver(
        "pull_request",
        pr_event(world.examples, "synchronize", repo=REPO, number=moved_pr, head_sha=new_sha),
    )
    world.checks(moved_pr, new_sha, "success")
    wait_for(  # as a person would: /ship again once the new head is green
        "the new head green",
        lambda: (
            "`checks_pending`"
            not in world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
        ),
    )
    merges_before = len([r for r in world.github.requests if r.path.endswith("/merge")])
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    retried = [r for r in world.github.requests if r.path.endswith("/merge")][merges_before:]
    assert [r.path for r in retried] == [f"/repos/{REPO}/pulls/{moved_pr}/merge"]
    assert retried[0].body["sha"] == new_sha
    for number in issues:
        assert world.github.issue(REPO, number).state == "closed"


def test_duplicate_and_out_of_order_deliveries(world: World) -> None:
    from helpers import check_suite_event, pr_event

    run_id, issues = world.start(1)
    number, sha = world.github.open_pull(REPO, "fix", f"Fixes #{issues[0]}")
    opened = pr_event(
        world.examples, "opened", repo=REPO, number=number, body=f"Fixes #{issues[0]}", head_sha=sha
    )
    green = check_suite_event(
        world.examples, "completed", repo=REPO, head_sha=sha, conclusion="success", pulls=[number]
    )
    world.github.report_checks(REPO, sha, "success")
    # The check result arrives before the PR is known: the run remembers the commit,
    # and linking the PR at it reads its checks then.
    assert world.deliver("check_suite", green, delivery="d-green") == 202
    wait_for("the unclaimed commit remembered", lambda: _unclaimed(world, run_id) == [sha])
    assert world.deliver("pull_request", opened, delivery="d-open") == 202
    assert world.deliver("pull_request", opened, delivery="d-open") == 200  # duplicate
    world.wait_state(run_id, "ready_to_ship")
    assert world.deliver("check_suite", green, delivery="d-green") == 200  # still a duplicate
    # The same body under another delivery id is another delivery, applied idempotently...
    assert world.deliver("check_suite", green, delivery="d-green-copy") == 202
    # ... and so is a new event for the same suite (a re-run: another id and time).
    rerun = {**green, "check_suite": {**green["check_suite"], "updated_at": "2099-01-01T00:00:00Z"}}
    assert world.deliver("check_suite", rerun, delivery="d-green-rerun") == 202
    world.wait_state(run_id, "ready_to_ship")
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")


def _unclaimed(world: World, run_id: str) -> list[str]:
    """The commits whose checks concluded before a PR was linked, as the store has them."""
    import json

    return list(json.loads(world.cli("runs", "show", run_id)).get("unclaimed_checks", []))


def test_two_approvals_at_the_same_moment_one_wins(world: World) -> None:
    import threading

    world.ready_issues(2)
    run_id = world.plan()
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def approve(user: str) -> None:
        barrier.wait()
        answers.append(world.command("approve", user=user, run_id=run_id))

    threads = [threading.Thread(target=approve, args=(u,)) for u in ("42", "43")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    public = [a for a in answers if not a["data"].get("flags")]
    refused = [a for a in answers if a["data"].get("flags") == 64]
    assert len(public) == 1
    assert len(refused) == 1
    assert "already approved" in refused[0]["data"]["content"]
    wait_for("dispatches", lambda: len(world.github.dispatches(REPO)) == 2)
    world.wait_state(run_id, "executing")
    assert len(world.github.dispatches(REPO)) == 2  # dispatched once each


def test_plan_reads_100_ready_issues_in_at_most_two_requests(world: World) -> None:
    for i in range(100):
        world.github.add_issue(REPO, f"Task {i}", ["ready"])
    before = world.github_requests()
    run_id = world.plan()
    assert world.github_requests() - before <= 2
    description = world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
    assert description.count("`pending`") == 5  # capped at planner.max_tasks


def test_plan_while_a_run_is_active_shows_it(world: World) -> None:
    world.ready_issues(1)
    run_id = world.plan()
    before = world.github_requests()
    answer = world.command("plan")
    assert answer["type"] == 4
    assert run_id in answer["data"]["content"]
    assert world.github_requests() == before


def test_no_ready_issue_says_so_and_stores_nothing(world: World) -> None:
    assert world.command("plan") == {"type": 5}
    token = world.tokens["plan"]
    wait_for(
        "the answer",
        lambda: "nothing to plan" in ((world.discord.original(token) or {}).get("content") or ""),
    )
    assert "No active run" in world.command("status")["data"]["embeds"][0]["description"]


def test_cancel_puts_issues_back_to_ready(world: World) -> None:
    run_id, issues = world.start(2)
    answer = world.press(f"cancel:{run_id}")
    assert "cancelled" in answer["data"]["content"]
    world.wait_state(run_id, "cancelled")
    for number in issues:
        wait_for("ready again", lambda n=number: "ready" in world.github.issue(REPO, n).labels)
        assert "in-progress" not in world.github.issue(REPO, number).labels
    assert world.command("plan") == {"type": 5}  # the repository is free again


def test_approve_button_and_wrong_state_messages(world: World) -> None:
    world.ready_issues(1)
    run_id = world.plan()
    assert "approved" in world.press(f"approve:{run_id}")["data"]["content"]
    stale = world.press(f"approve:{run_id}")
    assert stale["data"]["flags"] == 64
    assert "already approved" in stale["data"]["content"]
    early = world.command("ship", run_id=run_id)
    assert early["data"]["flags"] == 64
    assert "ready_to_ship" in early["data"]["content"]
    missing = world.command("approve", run_id="r20990101-nope00")
    assert "no run" in missing["data"]["content"]


def test_a_branch_with_a_merge_queue_ships_through_the_queue(world: World) -> None:
    from helpers import pr_event

    world.github.require_merge_queue(REPO)
    run_id, issues, _ = world.to_ready_to_ship(2)
    world.command("ship", run_id=run_id)
    wait_for("both PRs queued", lambda: len(world.github.merge_queue(REPO)) == 2)
    assert world.status(run_id) == "shipping"  # waiting for the queue, not failed
    wait_for(
        "the queue shown",
        lambda: (
            "is in the merge queue"
            in world.command("status", run_id=run_id)["data"]["embeds"][0]["description"]
        ),
    )

    for number, merge_sha in world.github.land_merge_queue(REPO):
        assert merge_sha
        head = world.github.pull(REPO, number).head_sha
        assert (
            world.deliver(
                "pull_request",
                pr_event(
                    world.examples, "closed", repo=REPO, number=number, head_sha=head, merged=True
                ),
            )
            == 202
        )
    world.wait_state(run_id, "shipped")
    for number in issues:
        issue = world.github.issue(REPO, number)
        assert issue.state == "closed"
        assert "shipped" in issue.labels


def test_a_pr_merged_by_a_person_still_ships_with_the_run(world: World) -> None:
    from helpers import pr_event

    run_id, issues = world.start(2)
    by_hand, sha = world.open_pr(run_id, issues[0])
    assert (
        world.deliver(
            "pull_request",
            pr_event(
                world.examples, "closed", repo=REPO, number=by_hand, head_sha=sha, merged=True
            ),
        )
        == 202
    )
    pr, sha2 = world.open_pr(run_id, issues[1])
    world.checks(pr, sha2, "success")
    world.wait_state(run_id, "ready_to_ship")
    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    merges = [r.path for r in world.github.requests if r.path.endswith("/merge")]
    assert merges == [f"/repos/{REPO}/pulls/{pr}/merge"]  # the other was merged already
    for number in issues:
        assert "shipped" in world.github.issue(REPO, number).labels
        assert world.github.issue(REPO, number).state == "closed"
