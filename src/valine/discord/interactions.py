"""The Discord interactions endpoint: verify, parse, answer.

Discord waits at most 3 seconds for the first answer, so this module only verifies the
signature, parses the interaction against the command schema and answers; anything that
needs GitHub is handed to the job queue by the command handler.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from valine.core.records import Record
from valine.core.shape import (
    Arr,
    Bool,
    Int,
    Obj,
    Scalar,
    ShapeError,
    Snowflake,
    Str,
    check,
    parse_object,
)
from valine.http import Request, Response, error_response, json_response
from valine.infra.unit_of_work import record_answer
from valine.logs import get_logger, log_context

# The verifier is a type here only: PyNaCl (~1.2 MB) loads where it is built, with the key.
if TYPE_CHECKING:
    from valine.core.commands import Command
    from valine.core.replies import Answer
    from valine.discord.verify import InteractionVerifier

log = get_logger("valine.discord")

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


#: The fields of an interaction the service reads (Discord API: Interaction Object).
_USER = Obj({"id": Snowflake(), "username": Str(100, nullable=True)}, ("id",))
_OPTION = Obj(
    {
        "name": Str(100),
        "type": Int(1, 11),
        "value": Scalar(nullable=True),
        "focused": Bool(nullable=True),
    },
    ("name",),
)
INTERACTION_SHAPE = Obj(
    {
        "id": Snowflake(),
        "type": Int(1, 5),
        "token": Str(1_000, nullable=True),
        "application_id": Snowflake(nullable=True),
        "guild_id": Snowflake(nullable=True),
        "channel_id": Snowflake(nullable=True),
        "channel": Obj(
            {"id": Snowflake(), "type": Int(0, 100), "parent_id": Snowflake(nullable=True)},
            nullable=True,
        ),
        "member": Obj({"user": _USER, "roles": Arr(Snowflake(), 1_000)}, nullable=True),
        "user": Obj({"id": Snowflake(), "username": Str(100, nullable=True)}, nullable=True),
        "data": Obj(
            {
                "name": Str(100),
                "custom_id": Str(100),
                "component_type": Int(1, 20, nullable=True),
                "options": Arr(_OPTION, 25, nullable=True),
            },
            nullable=True,
        ),
    },
    ("id", "type"),
)
#: How far (seconds) ``X-Signature-Timestamp`` may be from the server's clock.
REPLAY_WINDOW = 300


class Interaction(Record):
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
    #: The channel a thread belongs to, when the interaction comes from a thread (a
    #: button on a post in a run's thread): the channel ``[discord] channel_ids`` names.
    parent_channel_id: str | None = None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Interaction:
        """The interaction of a body that fits :data:`INTERACTION_SHAPE`.

        ``member`` is sent in guilds, ``user`` in DMs. Raises ShapeError for a body that
        does not fit the shape, or an interaction other than a PING without a user.
        """
        check(INTERACTION_SHAPE, payload)
        member = payload.get("member") or {}
        user = member.get("user") or payload.get("user") or {}
        kind = payload["type"]
        if kind != PING and not user:
            raise ShapeError("member.user", "is required (or user, in a DM)")
        return cls(
            id=payload["id"],
            type=kind,
            token=payload.get("token") or "",
            application_id=payload.get("application_id") or "",
            user_id=user.get("id", ""),
            user_name=user.get("username") or "",
            roles=tuple(member.get("roles") or ()),
            channel_id=payload.get("channel_id"),
            guild_id=payload.get("guild_id"),
            data=payload.get("data") or {},
            parent_channel_id=_thread_parent(payload.get("channel")),
        )

    def fields(self) -> dict[str, Any]:
        """The fields the use cases read (and a plan job keeps to answer later)."""
        return {
            "id": self.id,
            "application_id": self.application_id,
            "token": self.token,
            "channel_id": self.channel_id,
            "parent_channel_id": self.parent_channel_id,
            "guild_id": self.guild_id,
            "user_id": self.user_id,
            "user_name": self.user_name,
            "roles": list(self.roles),
        }


#: Discord's thread channel types (announcement, public and private threads).
THREAD_TYPES = frozenset({10, 11, 12})


def _thread_parent(channel: Mapping[str, Any] | None) -> str | None:
    """The ``parent_id`` of the interaction's ``channel`` when that channel is a thread."""
    if not channel or channel.get("type") not in THREAD_TYPES:
        return None
    parent = channel.get("parent_id")
    return str(parent) if parent else None


class InteractionHandlers(Protocol):
    """What answers verified interactions (the use cases, in production)."""

    def answer_command(self, interaction: Interaction, command: Command) -> Answer:
        """The answer to a schema-checked slash command."""
        ...

    def press_button(self, interaction: Interaction, custom_id: str) -> Answer:
        """The answer to a button press."""
        ...

    def autocomplete(self, interaction: Interaction, focused: str, value: str) -> list[str]:
        """Suggestions for the focused option (at most 25 are sent)."""
        ...

    def first_time(self, interaction: Interaction) -> bool:
        """True the first time this interaction id is handled (False: a replay)."""
        ...


def ephemeral(content: str) -> dict[str, Any]:
    """An interaction callback with a message only the invoking user sees."""
    return {"type": CHANNEL_MESSAGE, "data": {"content": content, "flags": EPHEMERAL}}


class DiscordEndpoint:
    """``POST /discord``: the interactions endpoint."""

    def __init__(
        self,
        verifier: InteractionVerifier | None,
        handlers: InteractionHandlers,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._handlers = handlers
        self._clock = clock

    def __call__(self, request: Request) -> Response:
        """Answer one interaction request."""
        refusal = self._unverified(request)
        if refusal is not None:
            return refusal
        try:
            interaction = Interaction.from_payload(parse_object(request.body))
        except ShapeError as exc:
            log.info("refused interaction body: %s", exc)
            return error_response(400, str(exc))
        with log_context(interaction_id=interaction.id):
            answer = self._answer_once(interaction)
        outcome = answer.pop(_OUTCOME, None)
        if interaction.type != PING:  # the PING path loads nothing more
            # once the answer stands: a replay on the immediate path counts its own
            record_answer(lambda: _measure(interaction, answer, outcome))
        return json_response(200, answer)

    def _unverified(self, request: Request) -> Response | None:
        """The 503/401 for a request that cannot be verified, is mis-signed or stale."""
        if self._verifier is None:
            return error_response(503, "DISCORD_PUBLIC_KEY is not set: cannot verify requests")
        signature = request.header("x-signature-ed25519")
        timestamp = request.header("x-signature-timestamp")
        if not self._verifier.verify(signature, timestamp, request.body):
            log.warning("rejected interaction: bad signature")
            return error_response(401, "invalid request signature")
        assert timestamp is not None  # verify() refuses a missing one
        if abs(self._clock() - int(timestamp)) > REPLAY_WINDOW:
            log.warning("rejected interaction: timestamp %s outside the replay window", timestamp)
            return error_response(401, "X-Signature-Timestamp is outside the 5-minute window")
        return None

    def _answer_once(self, interaction: Interaction) -> dict[str, Any]:
        """The answer, unless the interaction id was handled before; never raises."""
        try:
            if interaction.type != PING and not self._handlers.first_time(interaction):
                log.warning("replayed interaction %s not acted on", interaction.id)
                return {**ephemeral("This request was already handled."), _OUTCOME: "replayed"}
            return self._answer(interaction)
        except Exception:
            # Internal detail (exception text, API paths, ARNs) stays in the log; the user
            # gets what happened and the id to find it there.
            import secrets  # only here: it costs the PING's cold start a few ms

            ref = secrets.token_hex(4)
            error = sys.exc_info()[1]
            record_answer(
                lambda: log.error(
                    "unhandled error answering the interaction [ref %s]", ref, exc_info=error
                )
            )
            answer = ephemeral(f"⚠️ Valine could not do that just now (ref {ref}). Try again.")
            answer[_OUTCOME] = "error"
            return answer

    def _answer(self, interaction: Interaction) -> dict[str, Any]:
        if interaction.type == PING:
            return {"type": PONG}
        if interaction.type == MESSAGE_COMPONENT:
            from valine.discord.render import interaction_response

            custom_id = str(interaction.data.get("custom_id", ""))
            record_answer(lambda: log.info("button %s from %s", custom_id, interaction.user_id))
            return interaction_response(self._handlers.press_button(interaction, custom_id))
        if interaction.type == AUTOCOMPLETE:
            return self._autocomplete(interaction)
        if interaction.type != APPLICATION_COMMAND:
            return ephemeral("This kind of interaction is not supported.")
        from valine.core.commands import CommandError, parse_command
        from valine.discord.render import interaction_response

        try:
            command = parse_command(interaction.data)
        except CommandError as exc:
            refusal = str(exc)
            record_answer(lambda: log.info("refused command: %s", refusal))
            return ephemeral(refusal)
        record_answer(lambda: log.info("command /%s from %s", command.name, interaction.user_id))
        return interaction_response(self._handlers.answer_command(interaction, command))

    def _autocomplete(self, interaction: Interaction) -> dict[str, Any]:
        options = interaction.data.get("options") or []
        focused: Mapping[str, Any] = next((o for o in options if o.get("focused")), {})
        values = self._handlers.autocomplete(
            interaction, str(focused.get("name", "")), str(focused.get("value", ""))[:100]
        )
        choices = [{"name": v, "value": v} for v in values[:MAX_CHOICES]]
        return {"type": AUTOCOMPLETE_RESULT, "data": {"choices": choices}}


#: A key the endpoint adds to an answer to say how it went; removed before it is sent.
_OUTCOME = "_valine_outcome"
#: Buttons counted by their action; anything else is "other" (bounded series).
_BUTTONS = frozenset({"approve", "ship", "ship-confirm", "cancel", "retry"})
#: Answers by type: a deferral means the work went to the queue.
_ANSWER_OUTCOMES = {DEFERRED_CHANNEL_MESSAGE: "deferred", 6: "deferred"}


def _measure(interaction: Interaction, answer: dict[str, Any], outcome: str | None) -> None:
    """Count the interaction by command (or button) and outcome."""
    from valine import metrics
    from valine.core.commands import COMMANDS_BY_NAME

    outcome = outcome or _ANSWER_OUTCOMES.get(int(answer.get("type") or 0), "answered")
    if interaction.type == APPLICATION_COMMAND:
        name = str(interaction.data.get("name", ""))
        command = name if name in COMMANDS_BY_NAME else "unknown"
    elif interaction.type == MESSAGE_COMPONENT:
        action = str(interaction.data.get("custom_id", "")).partition(":")[0]
        command = f"button:{action if action in _BUTTONS else 'other'}"
    elif interaction.type == AUTOCOMPLETE:
        command = "autocomplete"
    else:
        command = "other"
    metrics.count("commands", command=command, outcome=outcome)
