"""What a bulk overwrite of the slash commands would change."""

from __future__ import annotations

import copy

from valine.core.commands import command_changes, registration_payload


def test_nothing_to_change_when_discord_has_the_same_commands() -> None:
    wanted = registration_payload()
    registered = copy.deepcopy(wanted)
    for command in registered:  # Discord adds ids and leaves out default falses
        command["id"] = "123"
        for option in command["options"]:
            if not option["required"]:
                del option["required"]
    assert command_changes(registered, wanted) == []


def test_new_changed_and_removed_commands_are_listed() -> None:
    wanted = registration_payload()
    registered = copy.deepcopy([c for c in wanted if c["name"] != "help"])
    registered[0]["description"] = "old words"
    registered.append({"name": "rollback", "description": "gone", "options": []})
    changes = command_changes(registered, wanted)
    assert "+ /help (new)" in changes
    assert f"~ /{registered[0]['name']} (changed)" in changes
    assert "- /rollback (removed)" in changes
    assert len(changes) == 3
