"""A run's thread counts as its channel: buttons on its posts are in scope.

With ``[discord] channel_ids`` the bot answers only there; a press on a button posted in
a run's thread comes with the thread's id as ``channel_id`` and, in Discord's partial
``channel``, the thread's type and its ``parent_id``.
"""

from __future__ import annotations

import pytest

from valine.core.policy import DiscordScope
from valine.discord.interactions import Interaction

SCOPE = DiscordScope(guild_ids=("4",), channel_ids=("3",))


@pytest.mark.parametrize(
    ("channel", "parent", "served"),
    [
        ("3", None, True),  # the plan channel itself
        ("900", "3", True),  # a thread of it
        ("900", "8", False),  # a thread of another channel
        ("900", None, False),  # another channel
        (None, None, False),
    ],
)
def test_a_thread_is_served_where_its_channel_is(
    channel: str | None, parent: str | None, served: bool
) -> None:
    assert (SCOPE.refusal("4", channel, parent) is None) is served


def test_every_channel_is_served_without_channel_ids() -> None:
    assert DiscordScope(guild_ids=("4",)).refusal("4", "900", None) is None
    assert DiscordScope(guild_ids=("4",)).refusal("5", "900", "3") is not None  # other server


def press(channel: dict[str, object] | None) -> dict[str, object]:
    payload: dict[str, object] = {
        "id": "1",
        "type": 3,
        "token": "t",
        "application_id": "2",
        "guild_id": "4",
        "channel_id": "900",
        "member": {"user": {"id": "42", "username": "ada"}, "roles": []},
        "data": {"custom_id": "ship:r1", "component_type": 2},
    }
    if channel is not None:
        payload["channel"] = channel
    return payload


@pytest.mark.parametrize(
    ("channel", "parent"),
    [
        ({"id": "900", "type": 11, "parent_id": "3"}, "3"),  # a public thread
        ({"id": "900", "type": 12, "parent_id": "3"}, "3"),  # a private thread
        ({"id": "900", "type": 0, "parent_id": "77"}, None),  # a text channel in category 77
        (None, None),  # an older payload without ``channel``
    ],
)
def test_the_parent_of_a_thread_is_read_from_the_interactions_channel(
    channel: dict[str, object] | None, parent: str | None
) -> None:
    interaction = Interaction.from_payload(press(channel))
    assert interaction.parent_channel_id == parent
    assert interaction.fields()["parent_channel_id"] == parent
