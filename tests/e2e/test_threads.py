"""A thread per run, end to end: ``valine serve`` against the stand-ins over real HTTP.

The plan message stays in the channel, edited in place; pull requests opened, checks red
and green, the ready and ship announcements go into a thread started from it, each once;
the thread is archived when the run ends; a lost answer never makes a second thread;
without thread permissions the run posts where it did before threads and says so once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from valine.testing.faults import Match
from world import DEFAULT_CONFIG, GUILD, World, button, start_world, stop_world, wait_for

pytestmark = pytest.mark.e2e

CHANNEL = "3"  # the channel the world's interactions come from


def thread_posts(world: World, thread_id: str) -> list[str]:
    """The thread's messages as text (content, or an embed's description)."""
    return [
        str(m.get("content") or "".join(e.get("description", "") for e in m["embeds"]))
        for m in world.discord.channel_messages(thread_id)
    ]


def plan_thread(world: World, run_id: str) -> dict[str, Any]:
    """The run's thread, once started."""
    thread = wait_for("the run's thread", lambda: world.thread(run_id))
    assert thread is not None
    return thread


def test_a_runs_events_land_in_its_thread_and_the_thread_is_archived_at_the_end(
    world: World,
) -> None:
    run_id, issues = world.start(2)
    first, second = issues
    pr1, sha1 = world.open_pr(run_id, first)
    thread = plan_thread(world, run_id)
    world.checks(pr1, sha1, "failure")
    wait_for(
        "the red checks",
        lambda: any("checks failed" in p for p in thread_posts(world, thread["id"])),
    )
    fixed = world.push(pr1)
    world.checks(pr1, fixed, "success")
    pr2, sha2 = world.open_pr(run_id, second)
    world.checks(pr2, sha2, "success")
    world.wait_state(run_id, "ready_to_ship")
    wait_for("ready in the thread", lambda: world.posted("Ready to ship"))

    world.command("ship", run_id=run_id)
    world.wait_state(run_id, "shipped")
    archived = wait_for(
        "the archived thread",
        lambda: (t := world.discord.thread(thread["id"])) and t["thread_metadata"]["archived"],
    )

    plan = world.discord.original(world.tokens["plan"])
    assert plan is not None and plan["channel_id"] == CHANNEL
    assert thread["id"] == plan["id"] and thread["parent_id"] == CHANNEL
    assert plan["embeds"][0]["title"].startswith(f"Run {run_id}")  # edited in place
    assert archived is True
    posts = thread_posts(world, thread["id"])
    for text in (
        f"#{first} Task 0: [PR #{pr1}]",
        f"checks failed on PR #{pr1} at `{sha1[:7]}`",
        f"checks green on PR #{pr1} at `{fixed[:7]}`",
        f"#{second} Task 1: [PR #{pr2}]",
        f"checks green on PR #{pr2} at `{sha2[:7]}`",
        "Ready to ship",
        "Shipped **2**",
    ):
        assert sum(text in p for p in posts) == 1, (text, posts)
    assert len(posts) == 7, posts
    assert posts[-1].startswith("🚢 Shipped **2**")  # the summary last, then the archive
    assert world.discord.channel_messages(CHANNEL) == []  # nothing else in the channel
    assert world.discord.followups(world.tokens["plan"]) == []
    assert len(world.discord.threads()) == 1


def test_a_thread_start_whose_answer_was_lost_makes_one_thread(world: World) -> None:
    world.discord.apply_then_fail_next(502, match=Match(method="POST", path="/threads$"))
    run_id, (number,) = world.start(1)

    pr, sha = world.open_pr(run_id, number)
    thread = plan_thread(world, run_id)
    world.checks(pr, sha, "success")
    world.wait_state(run_id, "ready_to_ship")
    wait_for("ready in the thread", lambda: world.posted("Ready to ship"))

    assert len(world.discord.threads()) == 1
    starts = [r.status for r in world.discord.requests if r.route.endswith("/threads")]
    # made, its answer lost; every later start (a retry, a concurrent notify job) is
    # answered 160004 and reads the message's thread back
    assert starts[0] == 502 and set(starts[1:]) == {400}
    posts = thread_posts(world, thread["id"])
    assert sum("Ready to ship" in p for p in posts) == 1
    assert sum(f"[PR #{pr}]" in p for p in posts) == 1


def test_without_thread_permissions_the_run_posts_in_the_channel_and_says_so_once(
    world: World,
) -> None:
    world.discord.deny("create_public_threads", channel_id=CHANNEL)
    run_id, (number,) = world.start(1)
    pr, sha = world.open_pr(run_id, number)
    world.checks(pr, sha, "success")
    world.wait_state(run_id, "ready_to_ship")
    wait_for("ready in the channel", lambda: world.posted("Ready to ship"))
    world.command("cancel", run_id=run_id)
    world.wait_state(run_id, "cancelled")

    assert world.discord.threads() == []
    notices = world.posted("Create Public Threads")
    assert len(notices) == 1 and run_id in str(notices[0]["content"])
    assert len(world.posted("Ready to ship")) == 1
    assert world.posted(f"[PR #{pr}]") == []  # the events stay on the plan message
    starts = [r.status for r in world.discord.requests if r.route.endswith("/threads")]
    # asked before the refusal was recorded, not on every later notify (the run had 4 or
    # more): once, or once more by a notify job that ran beside the first on the other
    # worker thread (starting takes no claim; tests/unit/test_usecases_threads.py checks
    # the sequential case is exactly one request)
    assert starts in ([403], [403, 403]), starts


def test_cancelling_a_run_says_so_in_its_thread_and_archives_it(world: World) -> None:
    run_id, (number,) = world.start(1)
    world.open_pr(run_id, number)
    thread = plan_thread(world, run_id)

    world.command("cancel", run_id=run_id)
    world.wait_state(run_id, "cancelled")

    wait_for(
        "the archived thread",
        lambda: (t := world.discord.thread(thread["id"])) and t["thread_metadata"]["archived"],
    )
    posts = thread_posts(world, thread["id"])
    assert len(posts) == 2
    assert f"Run `{run_id}` cancelled: cancelled by <@42>" in posts[-1]


def test_a_button_in_the_runs_thread_is_served_where_channel_ids_limit_the_bot(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> None:
    served = f'[discord]\nguild_ids = ["{GUILD}"]\nchannel_ids = ["{CHANNEL}"]\n'
    config = DEFAULT_CONFIG.replace(f'[discord]\nguild_ids = ["{GUILD}"]\n', served)
    assert "channel_ids" in config
    world = start_world(tmp_path, signing_key, webhook_examples, config)
    try:
        run_id, (number,) = world.start(1)
        pr, sha = world.open_pr(run_id, number)
        thread = plan_thread(world, run_id)
        world.checks(pr, sha, "success")
        world.wait_state(run_id, "ready_to_ship")

        in_thread = button(f"ship:{run_id}")
        in_thread["channel_id"] = thread["id"]
        in_thread["channel"] = {"id": thread["id"], "type": 11, "parent_id": CHANNEL}
        elsewhere = button(f"ship:{run_id}")
        elsewhere["channel_id"] = "901"
        elsewhere["channel"] = {"id": "901", "type": 11, "parent_id": "902"}
        answers = [json.loads(world.send(d)[1]) for d in (in_thread, elsewhere)]
    finally:
        stop_world(world)

    assert "answers only in" not in json.dumps(answers[0]), answers[0]
    assert "Ship" in json.dumps(answers[0])  # the confirmation, not a refusal
    assert f"Valine answers only in <#{CHANNEL}>" in answers[1]["data"]["content"]


def test_two_repositories_each_run_in_its_own_thread_in_its_own_channel(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> None:
    from test_two_repositories import (
        CHANNEL as CHANNELS,
    )
    from test_two_repositories import (
        CONFIG,
        GADGETS,
        WIDGETS,
        command,
        interleaved_green,
        start_both,
        wait_state,
    )

    world = start_world(tmp_path, signing_key, webhook_examples, CONFIG)
    world.github.add_repo(GADGETS)
    try:
        runs = start_both(world, 1)
        prs = interleaved_green(world, runs)
        command(world, "cancel", CHANNELS[GADGETS], run_id=runs[GADGETS][0])
        wait_state(world, runs[GADGETS][0], "cancelled")
        wait_for("ready in widgets' thread", lambda: world.posted("Ready to ship"))
        threads = {
            repo: wait_for(
                f"{repo}'s thread",
                lambda r=repo: (
                    world.discord.original(world.tokens[f"plan:{CHANNELS[r]}"]) or {}
                ).get("thread"),
            )
            for repo in (WIDGETS, GADGETS)
        }
        wait_for(
            "gadgets' thread archived",
            lambda: (world.discord.thread(threads[GADGETS]["id"]) or {})["thread_metadata"][
                "archived"
            ],
        )
        found = {repo: world.discord.thread(t["id"]) for repo, t in threads.items()}
        posts = {repo: thread_posts(world, t["id"]) for repo, t in threads.items()}
    finally:
        stop_world(world)

    for repo, thread in found.items():
        assert thread is not None and thread["parent_id"] == CHANNELS[repo]
        assert thread["name"] == f"Run {runs[repo][0]} · {repo}"
        ((pr, _),) = prs[repo].values()
        assert sum(f"/{repo}/pull/{pr})" in p for p in posts[repo]) == 1, posts[repo]
        other = GADGETS if repo == WIDGETS else WIDGETS
        assert not any(f"/{other}/pull/" in p for p in posts[repo])  # never the other's
    assert found[GADGETS]["thread_metadata"]["archived"] is True  # type: ignore[index]
    assert found[WIDGETS]["thread_metadata"]["archived"] is False  # type: ignore[index]
    assert any("Ready to ship" in p for p in posts[WIDGETS])
    assert "cancelled" in posts[GADGETS][-1]
