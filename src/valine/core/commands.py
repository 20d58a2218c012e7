"""The one schema of the slash commands.

The same table generates the Discord registration payload
(:func:`registration_payload`) and parses incoming application-command interactions
(:func:`parse_command`), so what users see offered and what the service accepts cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from valine.core.errors import ValineError

#: Discord application command option types (a subset: the ones the schema uses).
OPTION_STRING = 3
OPTION_INTEGER = 4
#: Discord application command type for slash commands.
CHAT_INPUT = 1
#: Interaction context GUILD and installation context GUILD_INSTALL: the commands are
#: offered in servers only (never in DMs or group DMs) and only by installing the bot
#: to a server.
GUILD_CONTEXTS = (0,)
GUILD_INSTALL = (0,)
#: The longest string option value the service reads (a run id is 16 characters).
MAX_VALUE = 100

_PYTHON_TYPES: Mapping[int, type] = {OPTION_STRING: str, OPTION_INTEGER: int}


class Need(StrEnum):
    """A setting a command or button needs before it can do anything."""

    #: The repository the service works on (``GITHUB_REPOSITORY``).
    REPOSITORY = "repository"
    #: A way to call GitHub (a token, or a GitHub App's id and key).
    GITHUB_AUTH = "github_auth"


class CommandError(ValineError):
    """An application command the schema does not accept; the message is for the user."""


class UnknownCommand(CommandError):
    """A command name the schema does not know."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option of a command."""

    name: str
    description: str
    type: int = OPTION_STRING
    required: bool = False
    autocomplete: bool = False
    max_length: int = MAX_VALUE


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One slash command: its name, what it does and its options."""

    name: str
    description: str
    options: tuple[OptionSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed, schema-checked command invocation."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


def _run_id(required: bool) -> OptionSpec:
    return OptionSpec(
        "run_id",
        "The run, as shown in the plan (for example r20261125-k3f9qa)",
        required=required,
        autocomplete=True,
        max_length=32,
    )


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "plan",
        "Plan today's work from the repository's issues labelled ready",
        (
            OptionSpec(
                "repository",
                "The repository to plan (default: this channel's)",
                autocomplete=True,
                max_length=140,  # owner (39) / name (100)
            ),
        ),
    ),
    CommandSpec(
        "approve", "Approve a planned run and hand its tasks to the executor", (_run_id(True),)
    ),
    CommandSpec(
        "status", "Show one run in detail, or the active and recent runs", (_run_id(False),)
    ),
    CommandSpec(
        "ship", "Merge the run's green pull requests and close its issues", (_run_id(True),)
    ),
    CommandSpec("cancel", "Cancel a run and put its issues back to ready", (_run_id(True),)),
    CommandSpec(
        "retry",
        "Hand a failed or stale task to its executor again",
        (
            _run_id(True),
            OptionSpec(
                "issue",
                "The task's issue number (a failed or stale task of the run)",
                required=True,
                autocomplete=True,
            ),
        ),
    ),
    CommandSpec(
        "deploy",
        "Run a shipped run's deploy workflow again (after a failed deployment)",
        (_run_id(True),),
    ),
    CommandSpec("digest", "The day so far: runs shipped, PRs merged, failures, deployments"),
    CommandSpec("help", "What each command does and who may use it"),
)

COMMANDS_BY_NAME: Mapping[str, CommandSpec] = {c.name: c for c in COMMANDS}


def registration_payload(default_member_permissions: str | None = None) -> list[dict[str, Any]]:
    """The JSON body of a bulk overwrite (``PUT /applications/{id}/commands``).

    Every command is for guild contexts only; ``default_member_permissions`` (a
    permission bit set as digits, ``"0"``: administrators only) is sent when given.
    """
    commands: list[dict[str, Any]] = []
    for spec in COMMANDS:
        command: dict[str, Any] = {
            "name": spec.name,
            "type": CHAT_INPUT,
            "description": spec.description,
            "contexts": list(GUILD_CONTEXTS),
            "integration_types": list(GUILD_INSTALL),
            "options": [
                {
                    "name": o.name,
                    "description": o.description,
                    "type": o.type,
                    "required": o.required,
                    "autocomplete": o.autocomplete,
                    **({"max_length": o.max_length} if o.type == OPTION_STRING else {}),
                }
                for o in spec.options
            ],
        }
        if default_member_permissions is not None:
            command["default_member_permissions"] = default_member_permissions
        commands.append(command)
    return commands


def parse_command(data: Mapping[str, Any]) -> Command:
    """Check an interaction's ``data`` against the schema and return the command.

    Raises :class:`UnknownCommand` for a name the schema lacks and :class:`CommandError`
    for a missing required option, an option the command does not take, or a value of
    the wrong type.
    """
    name = data.get("name")
    spec = COMMANDS_BY_NAME.get(name) if isinstance(name, str) else None
    if spec is None:
        shown = str(name)[:32].replace("`", "")
        raise UnknownCommand(f"Unknown command `/{shown}`. Try `/help` for the commands.")
    given = _option_values(spec, data.get("options") or [])
    for option in spec.options:
        if option.required and option.name not in given:
            raise CommandError(f"`/{spec.name}` needs the option `{option.name}`.")
    return Command(spec.name, given)


def _option_values(spec: CommandSpec, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, list):
        raise CommandError(f"`/{spec.name}`: options must be a list.")
    allowed = {o.name: o for o in spec.options}
    values: dict[str, Any] = {}
    for item in raw:
        option = allowed.get(str(item.get("name"))) if isinstance(item, dict) else None
        if option is None:
            name = str(item.get("name"))[:32] if isinstance(item, dict) else "?"
            raise CommandError(f"`/{spec.name}` has no option `{name.replace('`', '')}`.")
        value = item.get("value")
        expected = _PYTHON_TYPES[option.type]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise CommandError(f"`/{spec.name}`: `{option.name}` must be a {expected.__name__}.")
        if isinstance(value, str) and len(value) > option.max_length:
            raise CommandError(
                f"`/{spec.name}`: `{option.name}` is longer than {option.max_length} characters."
            )
        values[option.name] = value.strip() if isinstance(value, str) else value
    return values


def _comparable(command: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a command we set, with Discord's defaults filled in."""
    return {
        "description": command.get("description", ""),
        "contexts": command.get("contexts"),
        "integration_types": command.get("integration_types"),
        "default_member_permissions": command.get("default_member_permissions"),
        "options": [
            {
                "name": o.get("name"),
                "description": o.get("description", ""),
                "type": o.get("type"),
                "required": bool(o.get("required", False)),
                "autocomplete": bool(o.get("autocomplete", False)),
                "max_length": o.get("max_length"),
            }
            for o in command.get("options") or []
        ],
    }


def command_changes(
    registered: Sequence[Mapping[str, Any]], wanted: Sequence[Mapping[str, Any]]
) -> list[str]:
    """What a bulk overwrite would change, one line per command (empty: nothing)."""
    current = {str(c.get("name")): _comparable(c) for c in registered}
    target = {str(c.get("name")): _comparable(c) for c in wanted}
    changes = [f"+ /{name} (new)" for name in target if name not in current]
    changes += [
        f"~ /{name} (changed)"
        for name in target
        if name in current and current[name] != target[name]
    ]
    changes += [f"- /{name} (removed)" for name in current if name not in target]
    return changes
