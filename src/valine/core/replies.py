"""What the use cases answer and post, in the product's terms.

A command or a button press is answered with a :class:`Reply` (a message, shown to
everyone or only to whoever asked) or :class:`Deferred` (the answer follows from a
job). A message is text, cards (one run, the status list, the digest) and rows of
:class:`Button` -- an action on a run, never a wire format. ``valine.discord`` renders
these to Discord's interaction responses and message bodies (callback types, flags,
components, ``allowed_mentions``); nothing in the core or the use cases knows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Style(StrEnum):
    """How a button looks: the usual action, a good outcome, or a destructive one."""

    PRIMARY = "primary"
    SUCCESS = "success"
    DANGER = "danger"


@dataclass(frozen=True, slots=True)
class Button:
    """A button that does ``action`` to a run (and, for a retry, to one of its tasks)."""

    action: str
    run_id: str
    label: str
    style: Style = Style.PRIMARY
    issue: int | None = None


@dataclass(frozen=True, slots=True)
class Card:
    """A titled block of text (a run, the status list, the digest, /help)."""

    title: str
    description: str
    colour: int
    url: str | None = None
    footer: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A message: text, cards, and rows of buttons (no one is ever mentioned by it)."""

    text: str = ""
    cards: tuple[Card, ...] = ()
    rows: tuple[tuple[Button, ...], ...] = ()

    def with_text(self, text: str) -> Message:
        """The same message with ``text`` instead of its own."""
        return Message(text, self.cards, self.rows)

    def without_buttons(self) -> Message:
        """The same message with no buttons (a read-only view of it)."""
        return Message(self.text, self.cards, ())


@dataclass(frozen=True, slots=True)
class Reply:
    """An interaction's answer: ``message``, seen by everyone or only by whoever asked."""

    message: Message
    private: bool = False

    @property
    def text(self) -> str:
        """The message's text."""
        return self.message.text


@dataclass(frozen=True, slots=True)
class Deferred:
    """An interaction answered later (a job edits the answer in)."""


#: What an interaction handler returns.
Answer = Reply | Deferred


def notice(text: str) -> Reply:
    """A short answer only whoever asked sees (refusals, problems, confirmations)."""
    return Reply(Message(text), private=True)


def announce(text: str) -> Reply:
    """A short answer everyone in the channel sees (what was done, and by whom)."""
    return Reply(Message(text))
