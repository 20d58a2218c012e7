"""What we send Discord, checked against Discord's own published schemas (README "Testing").

The schemas are the zod build of ``discord-api-spec`` (generated from Discord's OpenAPI
description), run by ``tests/material/validate_discord.mjs``; see ``discord_schema.py``.
Validation is strict: a key the schema does not know fails (zod alone would drop it).

The schemas check structure and types, not every documented limit, so the command
limits (name pattern, lengths, counts) are tested here too.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey

from discord_schema import validate, validate_each
from helpers import discord_headers, interaction
from valine.core.commands import CHAT_INPUT, registration_payload
from valine.discord.client import DiscordClient
from valine.discord.interactions import DEFERRED_CHANNEL_MESSAGE, EPHEMERAL, PONG, ephemeral
from valine.http import Request
from valine.runtime.config import Settings
from valine.runtime.wiring import Services
from valine.testing.discord_standin import DiscordStandIn

#: The request body each route takes, per Discord's OpenAPI description (``Paths`` in
#: ``build/discord-api-spec.ts``); PUT .../commands takes a list of the update schema.
REQUEST_SCHEMAS: Mapping[tuple[str, str], str] = {
    (
        "PATCH",
        "/webhooks/{application_id}/{token}/messages/@original",
    ): "IncomingWebhookUpdateRequestPartialSchema",
    ("POST", "/webhooks/{application_id}/{token}"): "IncomingWebhookRequestPartialSchema",
    ("POST", "/channels/{channel_id}/messages"): "MessageCreateRequestSchema",
    (
        "PATCH",
        "/channels/{channel_id}/messages/{message_id}",
    ): "MessageEditRequestPartialSchema",
    (
        "POST",
        "/channels/{channel_id}/messages/{message_id}/threads",
    ): "CreateTextThreadWithMessageRequestSchema",
    ("PATCH", "/channels/{channel_id}"): "UpdateThreadRequestPartialSchema",
    ("PUT", "/applications/{application_id}/commands"): "ApplicationCommandUpdateRequestSchema",
    (
        "PUT",
        "/applications/{application_id}/guilds/{guild_id}/commands",
    ): "ApplicationCommandUpdateRequestSchema",
}

#: The schema of each interaction callback type we answer with.
CALLBACK_SCHEMAS: Mapping[int, str] = {
    1: "PongInteractionCallbackRequestSchema",
    4: "CreateMessageInteractionCallbackRequestSchema",
    5: "CreateMessageInteractionCallbackRequestSchema",
    6: "UpdateMessageInteractionCallbackRequestSchema",
    7: "UpdateMessageInteractionCallbackRequestSchema",
    8: "ApplicationCommandAutocompleteCallbackRequestSchema",
    9: "ModalInteractionCallbackRequestSchema",
}

CHANNEL = "1300000000000000001"
RUN_ID = "r20261125-k3f9qa"


def plan_message(run_id: str = RUN_ID) -> dict[str, Any]:
    """A plan as the bot shows it: an embed with fields, and Approve / Cancel buttons."""
    return {
        "content": "",
        "embeds": [
            {
                "title": f"Plan {run_id}",
                "description": "2 tasks from issues labelled `ready`",
                "color": 0x5865F2,
                "fields": [
                    {"name": "#12 Fix login redirect", "value": "pending", "inline": False},
                    {"name": "#15 Add audit export", "value": "pending", "inline": False},
                ],
                "footer": {"text": "valine"},
                "timestamp": "2026-11-25T09:00:00.000Z",
            }
        ],
        "components": [
            {
                "type": 1,
                "components": [
                    {"type": 2, "style": 3, "label": "Approve", "custom_id": f"approve:{run_id}"},
                    {"type": 2, "style": 4, "label": "Cancel", "custom_id": f"cancel:{run_id}"},
                ],
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def assert_valid(results: list[Any]) -> None:
    """Fail with every invalid result explained."""
    bad = [r.explain() for r in results if not r.ok]
    assert not bad, "\n".join(bad)


@pytest.fixture
def standin() -> Iterator[DiscordStandIn]:
    """A running Discord stand-in."""
    with DiscordStandIn() as running:
        yield running


# -- (a) every body the client sends ------------------------------------------------------


def test_every_body_the_client_sends_matches_discords_request_schema(
    standin: DiscordStandIn,
) -> None:
    token = "aW50ZXJhY3Rpb246" + "x" * 60
    with DiscordClient(
        standin.url, standin.application_id, standin.bot_token, sleep=lambda _: None
    ) as client:
        standin.defer(token)
        client.edit_original(standin.application_id, token, plan_message())
        client.followup(
            standin.application_id, token, {"content": "Approved by <@42>.", "flags": EPHEMERAL}
        )
        message_id = client.create_message(
            CHANNEL, {**plan_message(), "nonce": "valine-r1-plan", "enforce_nonce": True}
        )
        shipped = plan_message()
        shipped["embeds"][0]["color"] = 0x57F287
        for button in shipped["components"][0]["components"]:
            button["disabled"] = True
        client.edit_message(CHANNEL, message_id, shipped)
        thread_id = client.start_thread(CHANNEL, message_id, f"Run {RUN_ID} · octo/widgets")
        client.create_message(thread_id, {"content": "PR #5 opened", "nonce": "n5"})
        client.archive_thread(thread_id)
        client.register_commands(registration_payload())
        client.register_commands(registration_payload(), guild_id="1400000000000000004")

    items: list[tuple[str, Any]] = []
    for request in standin.requests:
        if request.json is None:
            continue
        schema = REQUEST_SCHEMAS.get((request.method, request.route))
        assert schema, f"no schema mapped for {request.method} {request.route}: add it"
        documents = request.json if isinstance(request.json, list) else [request.json]
        items += [(schema, doc) for doc in documents]
        if isinstance(request.json, dict):
            items += [("RichEmbedSchema", e) for e in request.json.get("embeds") or []]
    assert {s for s, _ in items} >= set(REQUEST_SCHEMAS.values()) | {"RichEmbedSchema"}
    assert_valid(validate_each(items))


def test_the_standin_answers_with_discords_response_shapes(standin: DiscordStandIn) -> None:
    token = "aW50ZXJhY3Rpb246" + "y" * 60
    with DiscordClient(standin.url, standin.application_id, standin.bot_token) as client:
        client.edit_original(standin.application_id, token, plan_message())
        client.followup(standin.application_id, token, {"content": "f", "flags": EPHEMERAL})
        client.create_message(CHANNEL, plan_message())
        client.create_message(
            CHANNEL, {**plan_message(), "nonce": "valine-r1-ready", "enforce_nonce": True}
        )
        thread_id = client.start_thread(
            CHANNEL, client.create_message(CHANNEL, plan_message()), "t"
        )
        client.create_message(thread_id, {"content": "in the thread"})
        commands = client.register_commands(registration_payload())
    bot = {"Authorization": f"Bot {standin.bot_token}"}
    with httpx.Client(timeout=10) as http:
        archived = http.patch(
            f"{standin.url}/channels/{thread_id}", headers=bot, json={"archived": True}
        )
        fetched = http.get(f"{standin.url}/channels/{thread_id}", headers=bot)
    threads = [standin.threads()[0], archived.json(), fetched.json()]
    assert any(m.get("nonce") == "valine-r1-ready" for m in standin.messages())
    assert any("thread" in m for m in standin.messages())
    assert archived.json()["thread_metadata"]["archived"] is True
    assert_valid(validate("MessageResponseSchema", standin.messages()))
    assert_valid(validate("ThreadResponseSchema", threads))
    assert_valid(validate("ApplicationCommandResponseSchema", commands))


def test_the_standins_errors_match_discords_error_schemas(standin: DiscordStandIn) -> None:
    standin.expire_token("expired")
    base = standin.url
    bot = {"Authorization": f"Bot {standin.bot_token}"}
    with httpx.Client(timeout=10) as http:
        standin.rate_limit_next(0.01, global_=True)
        limited = http.get(f"{base}/channels/{CHANNEL}/messages/1", headers=bot)
        errors = [
            http.patch(f"{base}/webhooks/{standin.application_id}/expired/messages/@original"),
            http.get(f"{base}/channels/{CHANNEL}/messages/1", headers=bot),
            http.get(f"{base}/channels/{CHANNEL}/messages/1"),
            http.post(f"{base}/channels/{CHANNEL}/messages", headers=bot, json={}),
        ]
        message = http.post(
            f"{base}/channels/{CHANNEL}/messages", headers=bot, json={"content": "x"}
        )
        threads = f"{base}/channels/{CHANNEL}/messages/{message.json()['id']}/threads"
        http.post(threads, headers=bot, json={"name": "t"})
        errors.append(http.post(threads, headers=bot, json={"name": "t"}))
        standin.deny("create_public_threads")
        errors.append(http.post(threads, headers=bot, json={"name": "t"}))
        errors.append(http.post(threads, headers=bot, json={"name": ""}))
    assert limited.status_code == 429
    assert [e.status_code for e in errors] == [401, 404, 401, 400, 400, 403, 403]
    assert [e.json()["code"] for e in errors] == [50027, 10008, 0, 50006, 160004, 50013, 50013]
    assert_valid(
        validate_each(
            [("RatelimitedResponseSchema", limited.json())]
            + [("ErrorResponseSchema", e.json()) for e in errors]
        )
    )


# -- (b) the interaction callbacks our endpoint produces ----------------------------------


def test_interaction_callbacks_match_discords_callback_schemas(
    tmp_path: Path, public_key_hex: str, signing_key: SigningKey
) -> None:
    settings = Settings(discord_public_key=public_key_hex, store_url=f"sqlite:///{tmp_path}/v.db")
    app = Services(settings).app()
    callbacks = []
    for body in (
        interaction(kind=1),  # PING
        interaction(name="help"),
        interaction(name="plan"),  # settings missing: an ephemeral explanation
        interaction(name="approve"),  # required option missing
        interaction(name="no-such-command"),
        interaction(kind=3),  # a button press, not handled yet
    ):
        headers = discord_headers(signing_key, body)
        response = app.handle(Request("POST", "/discord", headers, body))
        assert response.status == 200
        callbacks.append(json.loads(response.body))
    callbacks += [
        {"type": PONG},
        ephemeral("Only you can see this."),
        {"type": DEFERRED_CHANNEL_MESSAGE},
        {"type": DEFERRED_CHANNEL_MESSAGE, "data": {"flags": EPHEMERAL}},
    ]
    assert callbacks[0] == {"type": PONG}
    assert_valid(validate_each([(CALLBACK_SCHEMAS[c["type"]], c) for c in callbacks]))


# -- (c) the registration payload ---------------------------------------------------------


def test_registration_payload_matches_discords_command_schemas() -> None:
    payload = registration_payload()
    assert_valid(
        validate("ApplicationCommandCreateRequestSchema", payload)  # POST one command
        + validate("ApplicationCommandUpdateRequestSchema", payload)  # PUT bulk overwrite
    )


def _name_ok(name: Any) -> bool:
    """Discord's ``^[-_\\p{L}\\p{N}]{1,32}$``, lower-case for slash commands and options."""
    return (
        isinstance(name, str)
        and 1 <= len(name) <= 32
        and all(c in "-_" or unicodedata.category(c)[0] in "LN" for c in name)
        and name == name.lower()
    )


def limit_violations(commands: list[dict[str, Any]]) -> list[str]:
    """Documented limits the zod schemas do not check, for a bulk-overwrite payload."""
    problems = []
    names = [c.get("name") for c in commands]
    if len(set(names)) != len(names):
        problems.append("command names are not unique")
    if sum(1 for c in commands if c.get("type", CHAT_INPUT) == CHAT_INPUT) > 100:
        problems.append("more than 100 slash commands")
    for command in commands:
        problems += _command_violations(command)
    return problems


def _command_violations(command: dict[str, Any]) -> list[str]:
    where = f"/{command.get('name')}"
    problems = []
    options = command.get("options") or []
    if not _name_ok(command.get("name")):
        problems.append(f"{where}: name must match ^[-_\\p{{L}}\\p{{N}}]{{1,32}}$, lower-case")
    if not 1 <= len(command.get("description") or "") <= 100:
        problems.append(f"{where}: description must be 1-100 characters")
    if len(options) > 25:
        problems.append(f"{where}: more than 25 options")
    option_names = [o.get("name") for o in options]
    if len(set(option_names)) != len(option_names):
        problems.append(f"{where}: option names are not unique")
    required = [bool(o.get("required")) for o in options]
    if required != sorted(required, reverse=True):
        problems.append(f"{where}: required options must come before optional ones")
    texts = [command.get("name", ""), command.get("description", "")]
    for option in options:
        problems += _option_violations(f"{where} {option.get('name')}", option)
        texts += [option.get("name", ""), option.get("description", "")]
        texts += [f"{c.get('name', '')}{c.get('value', '')}" for c in option.get("choices") or []]
    if sum(len(str(t)) for t in texts) > 4000:
        problems.append(f"{where}: name, description and options exceed 4000 characters")
    return problems


def _option_violations(at: str, option: dict[str, Any]) -> list[str]:
    problems = []
    if not _name_ok(option.get("name")):
        problems.append(f"{at}: option name must match the pattern, lower-case")
    if not 1 <= len(option.get("description") or "") <= 100:
        problems.append(f"{at}: option description must be 1-100 characters")
    choices = option.get("choices") or []
    if len(choices) > 25:
        problems.append(f"{at}: more than 25 choices")
    if choices and option.get("autocomplete"):
        problems.append(f"{at}: autocomplete cannot be combined with choices")
    return problems


def test_registration_payload_keeps_the_limits_the_schema_does_not_check() -> None:
    assert limit_violations(registration_payload()) == []


def test_the_limit_checks_catch_what_the_schema_lets_through() -> None:
    bad = {
        "name": "Plan Now",
        "type": CHAT_INPUT,
        "description": "",
        "options": [
            {"name": "later", "description": "optional first", "type": 3},
            {"name": "first", "description": "required second", "type": 3, "required": True},
        ]
        + [{"name": f"o{i}", "description": "d", "type": 3} for i in range(24)],
    }
    (zod,) = validate("ApplicationCommandCreateRequestSchema", [{**bad, "options": []}])
    assert zod.ok, "the schema accepts the bad name and the empty description"
    problems = "\n".join(limit_violations([bad, {**bad, "options": []}]))
    for expected in (
        "name must match",
        "description must be 1-100",
        "more than 25 options",
        "required options must come before",
        "not unique",
    ):
        assert expected in problems


# -- (d) negative controls: the validation can fail ---------------------------------------


#: Documents that must fail: if one passes, the validation cannot catch a mistake.
INVALID: list[tuple[str, dict[str, Any]]] = [
    ("RichEmbedSchema", {"title": 42}),
    ("IncomingWebhookUpdateRequestPartialSchema", {"embeds": [{"title": 42}]}),
    ("CreateMessageInteractionCallbackRequestSchema", {"type": "x"}),
    ("PongInteractionCallbackRequestSchema", {"type": 5}),
    ("MessageCreateRequestSchema", {"content": "x", "embed": {"title": "typo"}}),
    (
        "ButtonComponentForMessageRequestSchema",
        {"type": 2, "style": 1, "label": "x", "custom_id": "x" * 101},
    ),
    ("ApplicationCommandCreateRequestSchema", {"name": "x" * 33, "description": "d"}),
]


def test_invalid_documents_fail_validation() -> None:
    results = validate_each(INVALID)
    accepted = [f"{r.schema}: {doc}" for r, (_, doc) in zip(results, INVALID, strict=True) if r.ok]
    assert not accepted, "accepted invalid documents:\n" + "\n".join(accepted)


def test_unknown_keys_fail_only_in_strict_mode() -> None:
    typo = {"content": "x", "embed": {"title": "typo"}}
    (strict,) = validate("MessageCreateRequestSchema", [typo])
    (loose,) = validate("MessageCreateRequestSchema", [typo], strict=False)
    assert [i["code"] for i in strict.issues] == ["unrecognized_keys"]
    assert loose.ok


def test_an_unknown_schema_name_is_an_error_not_a_pass() -> None:
    with pytest.raises(LookupError, match="NoSuchSchema"):
        validate("NoSuchSchema", [{}])


def test_the_standins_application_matches_discords_schema(standin: DiscordStandIn) -> None:
    """``GET /applications/@me`` (``valine doctor`` reads the interactions endpoint there)."""
    standin.interactions_endpoint_url = "https://example.invalid/prod/discord"
    with DiscordClient(standin.url, standin.application_id, standin.bot_token) as client:
        application = client.get_application()
    assert application["interactions_endpoint_url"] == "https://example.invalid/prod/discord"
    assert_valid(validate("PrivateApplicationResponseSchema", [application]))
