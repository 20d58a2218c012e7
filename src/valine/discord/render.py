"""Domain replies and messages as Discord's wire format.

The use cases answer with :mod:`valine.core.replies` values; this module is the one
place that knows how Discord spells them: interaction callback types (4: a message,
5: deferred), the ephemeral flag (64), action rows (component type 1) of buttons
(type 2, style 1/3/4, ``custom_id`` ``action:run_id[:issue]``), embeds, and
``allowed_mentions`` (never anyone: a message's ``<@id>`` shows the user without
pinging them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from valine.core.replies import Answer, Button, Card, Deferred, Message, Style

#: Interaction callback types (Discord API: Interaction Response Object).
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
#: Message flag: only the invoking user sees it.
EPHEMERAL = 1 << 6
ACTION_ROW, BUTTON = 1, 2
BUTTON_STYLES: Mapping[Style, int] = {Style.PRIMARY: 1, Style.SUCCESS: 3, Style.DANGER: 4}
#: Discord's limits: 5 buttons a row, 5 rows a message, a custom id of 100 characters.
ROW_WIDTH = MAX_ROWS = 5
MAX_CUSTOM_ID = 100


def custom_id(button: Button) -> str:
    """The ``custom_id`` a press of ``button`` comes back with: ``action:run_id[:issue]``."""
    parts = [button.action, button.run_id, *([str(button.issue)] if button.issue else [])]
    return ":".join(parts)[:MAX_CUSTOM_ID]


def components(rows: tuple[tuple[Button, ...], ...]) -> list[dict[str, Any]]:
    """The action rows of ``rows`` (empty rows left out; Discord's limits kept)."""
    return [
        {
            "type": ACTION_ROW,
            "components": [
                {
                    "type": BUTTON,
                    "style": BUTTON_STYLES[b.style],
                    "label": b.label,
                    "custom_id": custom_id(b),
                }
                for b in row[:ROW_WIDTH]
            ],
        }
        for row in rows[:MAX_ROWS]
        if row
    ]


def embed(card: Card) -> dict[str, Any]:
    """The embed of ``card``."""
    document: dict[str, Any] = {
        "title": card.title,
        "description": card.description,
        "color": card.colour,
    }
    if card.url:
        document["url"] = card.url
    if card.footer:
        document["footer"] = {"text": card.footer}
    return document


def message_body(message: Message, *, private: bool = False) -> dict[str, Any]:
    """A message body (create, edit, follow-up, or an interaction's ``data``).

    Every field is sent, empty ones too: an edit replaces the text, the embeds and the
    buttons of what was shown before (a run that moved on loses its buttons).
    """
    body: dict[str, Any] = {
        "content": message.text,
        "embeds": [embed(c) for c in message.cards],
        "components": components(message.rows),
        "allowed_mentions": {"parse": []},
    }
    if private:
        body["flags"] = EPHEMERAL
    return body


def interaction_response(answer: Answer) -> dict[str, Any]:
    """The interaction response of a use case's answer."""
    if isinstance(answer, Deferred):
        return {"type": DEFERRED_CHANNEL_MESSAGE}
    return {
        "type": CHANNEL_MESSAGE,
        "data": message_body(answer.message, private=answer.private),
    }
