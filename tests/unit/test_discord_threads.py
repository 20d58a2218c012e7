"""Threads: DiscordClient.start_thread / archive_thread against the stand-in's thread model.

Over real loopback HTTP; the model follows Discord's Threads topic (one thread per
message sharing its id, 160004 on a second start, a post unarchives an unlocked thread, a
locked one refuses it, permissions as a switch). Nothing waits for real.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from valine.core.errors import DiscordUnavailable
from valine.discord.client import DiscordClient
from valine.ports import THREAD_LOCKED, DiscordError
from valine.testing.clock import ManualClock
from valine.testing.discord_standin import DiscordStandIn
from valine.testing.faults import Match

CHANNEL = "1300000000000000001"
THREADS = "/channels/{channel_id}/messages/{message_id}/threads"


@pytest.fixture
def standin() -> Iterator[DiscordStandIn]:
    """A running Discord stand-in."""
    with DiscordStandIn() as running:
        yield running


@pytest.fixture
def client(standin: DiscordStandIn) -> Iterator[DiscordClient]:
    """A client of the stand-in that never really sleeps."""
    clock = ManualClock(1000.0)
    with DiscordClient(
        standin.url,
        standin.application_id,
        standin.bot_token,
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda: 0.5,
    ) as made:
        yield made


def plan(client: DiscordClient) -> str:
    """A plan message in the channel; its id."""
    return client.create_message(CHANNEL, {"content": "Run r1 · planned"})


def test_a_thread_started_from_a_message_shares_its_id_and_the_message_shows_it(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    message_id = plan(client)

    thread_id = client.start_thread(CHANNEL, message_id, "Run r1 · octo/widgets", 1440)

    assert thread_id == message_id
    thread = standin.thread(thread_id)
    assert thread is not None
    assert (thread["parent_id"], thread["name"], thread["type"]) == (
        CHANNEL,
        "Run r1 · octo/widgets",
        11,
    )
    assert thread["thread_metadata"]["auto_archive_duration"] == 1440
    starter = standin.message(message_id)
    assert starter is not None and starter["thread"]["id"] == thread_id
    assert starter["content"] == "Run r1 · planned"  # the plan stays as it was
    request = standin.requests[-1]
    assert (request.method, request.route, request.status) == ("POST", THREADS, 201)
    assert request.json == {"name": "Run r1 · octo/widgets", "auto_archive_duration": 1440}


def test_a_second_start_finds_the_first_thread_instead_of_making_another(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    message_id = plan(client)
    first = client.start_thread(CHANNEL, message_id, "Run r1")

    again = client.start_thread(CHANNEL, message_id, "Run r1")

    assert again == first
    assert len(standin.threads()) == 1
    start, read_back = standin.requests[-2:]
    assert (start.status, read_back.method, read_back.route) == (
        400,
        "GET",
        "/channels/{channel_id}/messages/{message_id}",
    )


def test_a_start_whose_answer_was_lost_is_retried_into_the_same_thread(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    message_id = plan(client)
    standin.apply_then_fail_next(502, match=Match(method="POST", path="/threads$"))

    thread_id = client.start_thread(CHANNEL, message_id, "Run r1")

    assert thread_id == message_id
    assert len(standin.threads()) == 1
    statuses = [r.status for r in standin.requests if r.route != "/channels/{channel_id}/messages"]
    assert statuses == [502, 400, 200]  # made, answer lost; 160004; the message read back


def test_posts_go_into_the_thread_and_archiving_is_undone_by_the_next_post(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    thread_id = client.start_thread(CHANNEL, plan(client), "Run r1")
    posted = client.create_message(thread_id, {"content": "PR #5 opened"})

    client.archive_thread(thread_id)
    client.archive_thread(thread_id)  # idempotent
    archived = standin.thread(thread_id)
    client.create_message(thread_id, {"content": "deployed"})
    reopened = standin.thread(thread_id)

    assert next(m["id"] for m in standin.channel_messages(thread_id)) == posted
    assert [m["channel_id"] for m in standin.channel_messages(thread_id)] == [thread_id] * 2
    assert len(standin.channel_messages(CHANNEL)) == 1  # only the plan in the channel
    assert archived is not None and archived["thread_metadata"]["archived"] is True
    assert reopened is not None and reopened["thread_metadata"]["archived"] is False
    assert reopened["message_count"] == 2
    patch = next(r for r in standin.requests if r.method == "PATCH")
    assert (patch.route, patch.json, patch.auth_scheme) == (
        "/channels/{channel_id}",
        {"archived": True},
        "Bot",
    )


def test_a_locked_thread_refuses_the_bots_post(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    thread_id = client.start_thread(CHANNEL, plan(client), "Run r1")
    standin.lock_thread(thread_id)

    with pytest.raises(DiscordError) as refused:
        client.create_message(thread_id, {"content": "too late"})

    assert refused.value.code == THREAD_LOCKED
    assert standin.channel_messages(thread_id) == []
    thread = standin.thread(thread_id)
    assert thread is not None and thread["thread_metadata"]["archived"] is True


@pytest.mark.parametrize(
    ("denied", "code"),
    [("create_public_threads", 50013), ("view_channel", 50001)],
)
def test_without_the_permission_starting_a_thread_is_refused(
    client: DiscordClient, standin: DiscordStandIn, denied: str, code: int
) -> None:
    message_id = plan(client)
    standin.deny(denied, channel_id=CHANNEL)

    with pytest.raises(DiscordError) as refused:
        client.start_thread(CHANNEL, message_id, "Run r1")

    assert (refused.value.status, refused.value.code, refused.value.refused) == (403, code, True)
    assert standin.threads() == []


def test_without_send_messages_in_threads_a_post_in_the_thread_is_refused(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    thread_id = client.start_thread(CHANNEL, plan(client), "Run r1")
    standin.deny("send_messages_in_threads")

    with pytest.raises(DiscordError) as refused:
        client.create_message(thread_id, {"content": "x"})
    client.create_message(CHANNEL, {"content": "the channel still takes posts"})

    assert refused.value.refused
    assert standin.channel_messages(thread_id) == []


def test_the_standin_refuses_bad_thread_bodies_and_unknown_messages(
    standin: DiscordStandIn, client: DiscordClient
) -> None:
    message_id = plan(client)
    bot = {"Authorization": f"Bot {standin.bot_token}"}
    url = f"{standin.url}/channels/{CHANNEL}/messages"
    with httpx.Client(timeout=10) as http:
        answers = [
            http.post(f"{url}/{message_id}/threads", headers=bot, json={"name": ""}),
            http.post(
                f"{url}/{message_id}/threads",
                headers=bot,
                json={"name": "x", "auto_archive_duration": 30},
            ),
            http.post(f"{url}/1/threads", headers=bot, json={"name": "x"}),
            http.post(f"{url}/{message_id}/threads", json={"name": "x"}),
            http.patch(f"{standin.url}/channels/{CHANNEL}", headers=bot, json={"archived": True}),
        ]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (400, 50035),
        (400, 50035),
        (404, 10008),
        (401, 0),
        (404, 10003),
    ]
    assert standin.threads() == []


def test_a_start_that_never_got_through_raises_unavailable_and_made_nothing(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    message_id = plan(client)
    standin.fail_next(8, status=503)

    with pytest.raises(DiscordUnavailable):
        client.start_thread(CHANNEL, message_id, "Run r1")

    assert standin.threads() == []


def test_the_invite_asks_for_the_thread_permissions_and_nothing_that_moderates() -> None:
    from valine.runtime.doctor import BOT_PERMISSIONS, invite_url

    permissions = int(invite_url("1100000000000000000").rsplit("=", 1)[1])
    assert permissions == sum(BOT_PERMISSIONS.values()) == 309237730304
    assert permissions & (1 << 35) and permissions & (1 << 38)  # the two thread permissions
    manage_threads, manage_messages, administrator = 1 << 34, 1 << 13, 1 << 3
    assert not permissions & (manage_threads | manage_messages | administrator)
