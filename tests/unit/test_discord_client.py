"""DiscordClient over real loopback HTTP against the Discord stand-in.

Nothing here waits for real: the client's ``sleep`` (and, where rate-limit memory is
tested, its ``clock``) are injected, and the tests assert what it was asked to wait.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from helpers import free_port
from valine.core.commands import registration_payload
from valine.core.errors import ConfigurationError, DiscordUnavailable
from valine.discord.client import DEFAULT_MAX_ATTEMPTS, DiscordClient
from valine.ports import DiscordError
from valine.runtime.clients import discord_client
from valine.runtime.config import Settings
from valine.testing.clock import ManualClock
from valine.testing.discord_standin import DiscordStandIn

ORIGINAL = "/webhooks/{application_id}/{token}/messages/@original"
WEBHOOK = "/webhooks/{application_id}/{token}"
CHANNEL_MESSAGES = "/channels/{channel_id}/messages"
CHANNEL_MESSAGE = "/channels/{channel_id}/messages/{message_id}"
CHANNEL = "1300000000000000001"

PLAN_MESSAGE: dict[str, Any] = {
    "content": "",
    "embeds": [{"title": "Plan r20261125-k3f9qa", "description": "2 tasks", "color": 0x5865F2}],
    "components": [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 3, "label": "Approve", "custom_id": "approve:r1"},
                {"type": 2, "style": 4, "label": "Cancel", "custom_id": "cancel:r1"},
            ],
        }
    ],
}


def token() -> str:
    """A fresh interaction token, shaped like Discord's (long, URL-safe)."""
    return "aW50ZXJhY3Rpb246" + uuid.uuid4().hex + uuid.uuid4().hex


@pytest.fixture
def standin() -> Iterator[DiscordStandIn]:
    """A running Discord stand-in."""
    with DiscordStandIn() as running:
        yield running


@pytest.fixture
def fake_time() -> ManualClock:
    """Injected time that advances when the client sleeps."""
    return ManualClock(1000.0)


@pytest.fixture
def client(standin: DiscordStandIn, fake_time: ManualClock) -> Iterator[DiscordClient]:
    """A client of the stand-in that never really sleeps; its jitter is fixed at 0.5."""
    with DiscordClient(
        standin.url,
        standin.application_id,
        standin.bot_token,
        sleep=fake_time.sleep,
        clock=fake_time,
        jitter=lambda: 0.5,
    ) as made:
        yield made


# -- the routes ---------------------------------------------------------------------------


def test_edit_original_patches_the_original_without_the_bot_token(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    tok = token()
    standin.defer(tok)
    message_id = client.edit_original(standin.application_id, tok, PLAN_MESSAGE)

    original = standin.original(tok)
    assert original is not None
    assert message_id == original["id"]
    assert original["embeds"][0]["title"] == "Plan r20261125-k3f9qa"
    assert original["components"][0]["components"][0]["custom_id"] == "approve:r1"
    (request,) = standin.requests
    assert (request.method, request.route, request.status) == ("PATCH", ORIGINAL, 200)
    assert request.params["token"] == tok
    assert request.json == PLAN_MESSAGE
    assert request.auth_scheme is None  # the interaction token authorises


def test_followup_posts_with_wait_and_returns_the_new_message_id(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    tok = token()
    message_id = client.followup(
        standin.application_id, tok, {"content": "Only you see this", "flags": 64}
    )

    (followup,) = standin.followups(tok)
    assert message_id == followup["id"]
    assert followup["flags"] == 64
    (request,) = standin.requests
    assert (request.method, request.route, request.query) == ("POST", WEBHOOK, {"wait": "true"})
    assert request.auth_scheme is None


def test_create_and_edit_channel_messages_with_the_bot_token(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    message_id = client.create_message(CHANNEL, PLAN_MESSAGE)
    client.edit_message(CHANNEL, message_id, {"content": "Shipped", "components": []})

    (message,) = standin.channel_messages(CHANNEL)
    assert message["id"] == message_id
    assert message["content"] == "Shipped"
    assert message["components"] == []
    assert message["edited_timestamp"] is not None
    assert [(r.method, r.route, r.auth_scheme) for r in standin.requests] == [
        ("POST", CHANNEL_MESSAGES, "Bot"),
        ("PATCH", CHANNEL_MESSAGE, "Bot"),
    ]


@pytest.mark.parametrize("guild_id", [None, "1400000000000000004"])
def test_register_commands_bulk_overwrites_and_get_commands_reads_them(
    client: DiscordClient, standin: DiscordStandIn, guild_id: str | None
) -> None:
    payload = registration_payload()
    registered = client.register_commands(payload, guild_id=guild_id)

    names = [c["name"] for c in payload]
    assert [c["name"] for c in registered] == names
    assert [c["name"] for c in standin.registered_commands(guild_id)] == names
    assert client.get_commands(guild_id=guild_id) == registered
    expected = "/applications/{application_id}" + ("/guilds/{guild_id}" if guild_id else "")
    assert [(r.method, r.route) for r in standin.requests] == [
        ("PUT", expected + "/commands"),
        ("GET", expected + "/commands"),
    ]
    assert standin.requests[0].json == payload


# -- rate limits --------------------------------------------------------------------------


def test_429_waits_retry_after_then_succeeds(
    client: DiscordClient, standin: DiscordStandIn, fake_time: ManualClock
) -> None:
    tok = token()
    standin.rate_limit_next(retry_after=0.05)

    message_id = client.edit_original(standin.application_id, tok, {"content": "hello"})

    assert fake_time.sleeps == [0.05]
    assert [r.status for r in standin.requests] == [429, 200]
    original = standin.original(tok)
    assert original is not None and original["id"] == message_id


def test_global_429_holds_every_route_but_a_route_limit_only_its_own(
    standin: DiscordStandIn,
) -> None:
    frozen = ManualClock(1000.0, sleep_moves=False)  # time stands still: limits stay in force
    client = DiscordClient(
        standin.url,
        standin.application_id,
        standin.bot_token,
        sleep=frozen.sleep,
        clock=frozen,
    )
    with client:
        standin.rate_limit_next(retry_after=0.25, global_=False)
        client.create_message(CHANNEL, {"content": "one"})
        client.followup(standin.application_id, token(), {"content": "other route"})
        assert frozen.sleeps == [0.25]  # the route limit did not hold the other route

        standin.rate_limit_next(retry_after=0.5, global_=True)
        client.create_message("1300000000000000002", {"content": "two"})
        client.followup(standin.application_id, token(), {"content": "held"})
        assert frozen.sleeps == [0.25, 0.5, 0.5]  # the global limit held the next request


def test_remaining_zero_waits_reset_after_before_the_next_request_on_that_bucket(
    client: DiscordClient, standin: DiscordStandIn, fake_time: ManualClock
) -> None:
    standin.bucket_empty_next(reset_after=2.5)
    first = client.create_message(CHANNEL, {"content": "one"})
    assert fake_time.sleeps == []

    client.create_message("1300000000000000009", {"content": "other channel"})
    assert fake_time.sleeps == []  # a different top-level resource is another bucket

    client.edit_message(CHANNEL, first, {"content": "edit: another route"})
    assert fake_time.sleeps == []

    client.create_message(CHANNEL, {"content": "two"})
    assert fake_time.sleeps == [2.5]
    assert all(r.status == 200 for r in standin.requests)


def test_rate_limit_longer_than_the_budget_fails_fast(standin: DiscordStandIn) -> None:
    fake = ManualClock(1000.0)
    with DiscordClient(
        standin.url, standin.application_id, standin.bot_token, sleep=fake.sleep,
        clock=fake, max_retry_wait=1.0,
    ) as client:  # fmt: skip
        standin.rate_limit_next(retry_after=30.0)
        with pytest.raises(DiscordUnavailable, match="rate limited"):
            client.create_message(CHANNEL, {"content": "x"})
    assert fake.sleeps == []  # no waiting in vain
    assert len(standin.requests) == 1


def test_endless_429s_are_bounded(
    client: DiscordClient, standin: DiscordStandIn, fake_time: ManualClock
) -> None:
    for _ in range(DEFAULT_MAX_ATTEMPTS + 3):
        standin.rate_limit_next(retry_after=0.01)
    with pytest.raises(DiscordUnavailable):
        client.edit_original(standin.application_id, token(), {"content": "x"})
    assert len(standin.requests) == DEFAULT_MAX_ATTEMPTS
    assert len(fake_time.sleeps) == DEFAULT_MAX_ATTEMPTS - 1


# -- server errors and the network --------------------------------------------------------


def test_5xx_is_retried_with_backoff_then_succeeds(
    client: DiscordClient, standin: DiscordStandIn, fake_time: ManualClock
) -> None:
    standin.fail_next(2, status=502)
    message = {"content": "after two 502s", "nonce": "n-after-502s", "enforce_nonce": True}
    message_id = client.create_message(CHANNEL, message)

    assert [r.status for r in standin.requests] == [502, 502, 200]
    # 0.5 s then 1 s, each drawn from its upper half (equal jitter; fixed at 0.5 here)
    assert fake_time.sleeps == [0.375, 0.75]
    assert standin.message(message_id) is not None


def test_a_post_that_may_have_arrived_is_not_sent_blindly_again(
    client: DiscordClient, standin: DiscordStandIn, fake_time: ManualClock
) -> None:
    token = "aW50ZXJhY3Rpb246" + "z" * 60
    standin.apply_then_fail_next(502, count=2)

    with pytest.raises(DiscordUnavailable, match="502") as plain:
        client.create_message(CHANNEL, {"content": "no nonce"})
    with pytest.raises(DiscordUnavailable, match="502") as followup:
        client.followup(standin.application_id, token, {"content": "a follow-up"})

    assert plain.value.request_sent and followup.value.request_sent
    assert len(standin.requests) == 2  # one each: never re-sent
    assert len(standin.channel_messages(CHANNEL)) == 1  # it did arrive, once
    assert len(standin.followups(token)) == 1
    assert fake_time.sleeps == []


def test_a_nonce_message_applied_then_502_is_retried_into_the_same_message(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    standin.apply_then_fail_next(502)
    message = {"content": "shipped", "nonce": "valine-shipped-1", "enforce_nonce": True}

    message_id = client.create_message(CHANNEL, message)

    assert [r.status for r in standin.requests] == [502, 200]
    assert [m["id"] for m in standin.channel_messages(CHANNEL)] == [message_id]


def test_a_rate_limit_that_outlasts_the_budget_was_not_sent(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    standin.rate_limit_next(retry_after=3600)
    with pytest.raises(DiscordUnavailable) as caught:
        client.create_message(CHANNEL, {"content": "later"})
    assert caught.value.request_sent is False


def test_5xx_that_persists_becomes_discord_unavailable(
    client: DiscordClient, standin: DiscordStandIn, fake_time: ManualClock
) -> None:
    standin.fail_next(DEFAULT_MAX_ATTEMPTS + 2, status=503)
    with pytest.raises(DiscordUnavailable, match="503"):
        client.edit_message(CHANNEL, "1", {"content": "x"})
    assert len(standin.requests) == DEFAULT_MAX_ATTEMPTS
    assert len(fake_time.sleeps) == DEFAULT_MAX_ATTEMPTS - 1


def test_server_down_becomes_discord_unavailable() -> None:
    fake = ManualClock(1000.0)
    url = f"http://127.0.0.1:{free_port()}/api/v10"
    with DiscordClient(url, "1", "bot-token", sleep=fake.sleep, clock=fake) as client:
        with pytest.raises(DiscordUnavailable, match="ConnectError"):
            client.create_message(CHANNEL, {"content": "x"})
        with pytest.raises(DiscordUnavailable):
            client.edit_original("1", token(), {"content": "x"})
    # connection refused: nothing was sent, so even the POST was retried
    assert len(fake.sleeps) == 2 * (DEFAULT_MAX_ATTEMPTS - 1)


def test_a_stopped_standin_is_unreachable_even_over_a_pooled_connection(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    client.edit_original(standin.application_id, token(), {"content": "warm the pool"})
    standin.stop()
    with pytest.raises(DiscordUnavailable):
        client.edit_original(standin.application_id, token(), {"content": "x"})


def _timeout_transport(calls: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ReadTimeout("timed out", request=request)

    return httpx.MockTransport(handler)


def test_a_post_that_may_have_arrived_is_not_repeated_but_a_patch_is() -> None:
    calls: list[str] = []
    fake = ManualClock(1000.0)
    with DiscordClient(
        "https://discord.invalid/api/v10", "1", "bot", sleep=fake.sleep, clock=fake,
        transport=_timeout_transport(calls),
    ) as client:  # fmt: skip
        with pytest.raises(DiscordUnavailable, match="ReadTimeout"):
            client.followup("1", token(), {"content": "x"})
        assert calls == ["POST"]
        with pytest.raises(DiscordUnavailable, match="ReadTimeout"):
            client.create_message(CHANNEL, {"content": "x", "nonce": "n1", "enforce_nonce": True})
        assert calls == ["POST"] * (1 + DEFAULT_MAX_ATTEMPTS)  # a nonce makes it safe
        calls.clear()
        with pytest.raises(DiscordUnavailable):
            client.edit_message(CHANNEL, "2", {"content": "x"})
        assert calls == ["PATCH"] * DEFAULT_MAX_ATTEMPTS


# -- errors retrying cannot fix -----------------------------------------------------------


def test_expired_interaction_token_is_discord_error_50027(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    tok = token()
    standin.expire_token(tok)
    with pytest.raises(DiscordError) as caught:
        client.edit_original(standin.application_id, tok, {"content": "too late"})
    assert (caught.value.status, caught.value.code) == (401, 50027)
    assert caught.value.message == "Invalid Webhook Token"
    assert len(standin.requests) == 1  # not retried


def test_unknown_message_is_discord_error_10008(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    with pytest.raises(DiscordError) as caught:
        client.edit_message(CHANNEL, "1300000000000000777", {"content": "x"})
    assert (caught.value.status, caught.value.code) == (404, 10008)


def test_wrong_bot_token_is_discord_error_401(standin: DiscordStandIn) -> None:
    client = DiscordClient(standin.url, standin.application_id, "not-the-token")
    with client, pytest.raises(DiscordError) as caught:
        client.create_message(CHANNEL, {"content": "x"})
    assert caught.value.status == 401


def test_invalid_form_body_names_the_fields(client: DiscordClient) -> None:
    duplicate = [{"name": "plan", "description": "a"}, {"name": "plan", "description": "b"}]
    with pytest.raises(DiscordError) as caught:
        client.register_commands(duplicate)
    assert (caught.value.status, caught.value.code) == (400, 50035)
    assert "Invalid Form Body" in caught.value.message


def test_empty_message_is_refused_like_discord(
    client: DiscordClient, standin: DiscordStandIn
) -> None:
    with pytest.raises(DiscordError) as caught:
        client.create_message(CHANNEL, {"content": ""})
    assert caught.value.code == 50006


# -- settings -----------------------------------------------------------------------------


def test_client_from_settings_needs_the_bot_token_only_for_bot_routes(
    standin: DiscordStandIn,
) -> None:
    settings = Settings(discord_api_url=standin.url)
    with discord_client(settings) as client:
        tok = token()
        assert client.followup(standin.application_id, tok, {"content": "ok"})
        with pytest.raises(ConfigurationError, match="DISCORD_BOT_TOKEN"):
            client.create_message(CHANNEL, {"content": "x"})
        with pytest.raises(ConfigurationError, match="DISCORD_APPLICATION_ID"):
            client.register_commands(registration_payload())
    assert len(standin.requests) == 1  # the refused operations sent nothing


def test_client_from_settings_can_require_settings_up_front(standin: DiscordStandIn) -> None:
    settings = Settings(discord_api_url=standin.url, discord_application_id="1")
    with pytest.raises(ConfigurationError, match="DISCORD_BOT_TOKEN"):
        discord_client(settings, require=("DISCORD_APPLICATION_ID", "DISCORD_BOT_TOKEN"))
    full = Settings(
        discord_api_url=standin.url,
        discord_application_id=standin.application_id,
        discord_bot_token=standin.bot_token,
    )
    with discord_client(full, require=("DISCORD_BOT_TOKEN",)) as client:
        assert client.get_commands() == []


# -- secrets never reach the logs ---------------------------------------------------------


def test_neither_the_bot_token_nor_interaction_tokens_are_logged(
    standin: DiscordStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = ManualClock(1000.0)
    tokens = [token() for _ in range(4)]
    errors: list[Exception] = []
    with DiscordClient(
        standin.url, standin.application_id, standin.bot_token, sleep=fake.sleep,
        clock=fake,
    ) as client:  # fmt: skip
        standin.rate_limit_next(0.01)
        client.edit_original(standin.application_id, tokens[0], PLAN_MESSAGE)
        standin.fail_next(1)
        with pytest.raises(DiscordUnavailable) as refused:  # a follow-up is never re-sent
            client.followup(standin.application_id, tokens[1], {"content": "f"})
        errors.append(refused.value)
        client.followup(standin.application_id, tokens[1], {"content": "f"})
        client.create_message(CHANNEL, {"content": "c"})
        client.register_commands(registration_payload())
        standin.expire_token(tokens[2])
        for call in (
            lambda: client.edit_original(standin.application_id, tokens[2], {"content": "x"}),
            lambda: client.edit_message(CHANNEL, "1", {"content": "x"}),
        ):
            with pytest.raises(DiscordError) as caught:
                call()
            errors.append(caught.value)
    down = f"http://127.0.0.1:{free_port()}/api/v10"
    with DiscordClient(down, "1", standin.bot_token, sleep=fake.sleep, clock=fake) as dead:
        with pytest.raises(DiscordUnavailable) as unavailable:
            dead.followup("1", tokens[3], {"content": "x"})
        errors.append(unavailable.value)

    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "httpx" in {r.name for r in caplog.records}  # the library's own request log ran
    assert "/webhooks/{application_id}/{token}" in logged  # routes are named by template
    for secret in [standin.bot_token, *tokens]:
        assert secret not in logged
        assert all(secret not in str(e) for e in errors)
