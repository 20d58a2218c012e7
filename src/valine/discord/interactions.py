"""The Discord interactions endpoint: verify, parse, answer.

Discord waits at most 3 seconds for the first answer, so this module only verifies the
signature, parses the interaction against the command schema and answers; anything that
needs GitHub is handed to the job queue by the command handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from valine.discord.verify import InteractionVerifier
from valine.http import Request, Response, error_response, json_response, parse_json_object
from valine.logs import log_context

if TYPE_CHECKING:
    from valine.core.commands import Command

log = logging.getLogger("valine.discord")

# Interaction types (Discord API: Interaction Object).
PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5
# Interaction callback types.
PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
AUTOCOMPLETE_RESULT = 8
EPHEMERAL = 1 << 6
#: Discord shows at most 25 autocomplete choices.
MAX_CHOICES = 25


class Interaction(NamedTuple):
    """The parts of a Discord interaction the product uses."""

    id: str
    type: int
    token: str
    application_id: str
    user_id: str
    user_name: str
    roles: tuple[str, ...] = ()
    channel_id: str | None = None
    guild_id: str | None = None
    data: Mapping[str, Any] = MappingProxyType({})

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Interaction:
        """The interaction of a decoded request body (``member`` in guilds, ``user`` in DMs)."""
        member = payload.get("member") or {}
        user = member.get("user") or payload.get("user") or {}
        return cls(
            id=str(payload.get("id", "")),
            type=int(payload.get("type", 0)),
            token=str(payload.get("token", "")),
            application_id=str(payload.get("application_id", "")),
            user_id=str(user.get("id", "")),
            user_name=str(user.get("username", "")),
            roles=tuple(str(r) for r in member.get("roles") or ()),
            channel_id=payload.get("channel_id"),
            guild_id=payload.get("guild_id"),
            data=payload.get("data") or {},
        )


class InteractionHandlers(Protocol):
    """What answers verified interactions (the use cases, in production)."""

    def answer_command(self, interaction: Interaction, command: Command) -> dict[str, Any]:
        """The callback document answering a schema-checked slash command."""
        ...

    def press_button(self, interaction: Interaction, custom_id: str) -> dict[str, Any]:
        """The callback document answering a button press."""
        ...

    def autocomplete(self, interaction: Interaction, focused: str, value: str) -> list[str]:
        """Suggestions for the focused option (at most 25 are sent)."""
        ...


def ephemeral(content: str) -> dict[str, Any]:
    """An interaction callback with a message only the invoking user sees."""
    return {"type": CHANNEL_MESSAGE, "data": {"content": content, "flags": EPHEMERAL}}


class DiscordEndpoint:
    """``POST /discord``: the interactions endpoint."""

    def __init__(self, verifier: InteractionVerifier | None, handlers: InteractionHandlers) -> None:
        self._verifier = verifier
        self._handlers = handlers

    def __call__(self, request: Request) -> Response:
        """Answer one interaction request."""
        if self._verifier is None:
            return error_response(503, "DISCORD_PUBLIC_KEY is not set: cannot verify requests")
        signature = request.header("x-signature-ed25519")
        timestamp = request.header("x-signature-timestamp")
        if not self._verifier.verify(signature, timestamp, request.body):
            log.warning("rejected interaction: bad signature")
            return error_response(401, "invalid request signature")
        payload = parse_json_object(request.body)
        if payload is None:
            return error_response(400, "body is not a JSON object")
        interaction = Interaction.from_payload(payload)
        with log_context(interaction_id=interaction.id):
            return json_response(200, self._answer(interaction))

    def _answer(self, interaction: Interaction) -> dict[str, Any]:
        if interaction.type == PING:
            return {"type": PONG}
        if interaction.type == MESSAGE_COMPONENT:
            custom_id = str(interaction.data.get("custom_id", ""))
            log.info("button %s from %s", custom_id, interaction.user_id)
            return self._handlers.press_button(interaction, custom_id)
        if interaction.type == AUTOCOMPLETE:
            return self._autocomplete(interaction)
        if interaction.type != APPLICATION_COMMAND:
            return ephemeral("This kind of interaction is not supported.")
        from valine.core.commands import CommandError, parse_command

        try:
            command = parse_command(interaction.data)
        except CommandError as exc:
            log.info("refused command: %s", exc)
            return ephemeral(str(exc))
        log.info("command /%s from %s", command.name, interaction.user_id)
        return self._handlers.answer_command(interaction, command)

    def _autocomplete(self, interaction: Interaction) -> dict[str, Any]:
        options = interaction.data.get("options") or []
        focused = next((o for o in options if isinstance(o, dict) and o.get("focused")), {})
        values = self._handlers.autocomplete(
            interaction, str(focused.get("name", "")), str(focused.get("value", ""))
        )
        choices = [{"name": v, "value": v} for v in values[:MAX_CHOICES]]
        return {"type": AUTOCOMPLETE_RESULT, "data": {"choices": choices}}
