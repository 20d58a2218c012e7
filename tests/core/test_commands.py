"""The one command schema: registration payload and parser cannot drift apart."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import SEED_COMMANDS
from valine.core.commands import (
    COMMANDS,
    OPTION_INTEGER,
    OPTION_STRING,
    CommandError,
    UnknownCommand,
    parse_command,
    registration_payload,
)

SAMPLE = {OPTION_STRING: "r20261125-abc123", OPTION_INTEGER: 3}


def _data(name: str, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": 1,
        "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()],
    }


def test_registration_payload_lists_the_seed_commands() -> None:
    payload = {c["name"]: c for c in registration_payload()}
    assert set(payload) == SEED_COMMANDS
    for name, required in (("approve", True), ("ship", True), ("cancel", True), ("status", False)):
        (option,) = payload[name]["options"]
        assert option == {
            **option,
            "name": "run_id",
            "type": OPTION_STRING,
            "required": required,
            "autocomplete": True,
        }


@pytest.mark.parametrize("command", registration_payload(), ids=lambda c: c["name"])
def test_every_registered_option_parses_with_its_declared_type(command: dict[str, Any]) -> None:
    options = {o["name"]: SAMPLE[o["type"]] for o in command["options"]}
    parsed = parse_command(_data(command["name"], **options))
    assert dict(parsed.options) == options
    for option in command["options"]:
        wrong = 12345 if option["type"] == OPTION_STRING else "text"
        with pytest.raises(CommandError, match=option["name"]):
            parse_command(_data(command["name"], **{**options, option["name"]: wrong}))


@pytest.mark.parametrize("command", registration_payload(), ids=lambda c: c["name"])
def test_no_option_beyond_the_registered_ones_parses(command: dict[str, Any]) -> None:
    with pytest.raises(CommandError, match="no option"):
        parse_command(_data(command["name"], surprise="x"))


def test_missing_required_option_names_it() -> None:
    with pytest.raises(CommandError, match="needs the option `run_id`"):
        parse_command(_data("approve"))


def test_unknown_command_is_refused_with_a_pointer_to_help() -> None:
    with pytest.raises(UnknownCommand, match="/help"):
        parse_command(_data("rollback"))
    with pytest.raises(UnknownCommand):
        parse_command({})


def test_names_and_descriptions_respect_discord_limits() -> None:
    # Discord: names 1-32 lower-case characters, descriptions 1-100 characters.
    import re

    for spec in COMMANDS:
        for item in (spec, *spec.options):
            assert re.fullmatch(r"[-_a-z0-9]{1,32}", item.name)
            assert 1 <= len(item.description) <= 100
