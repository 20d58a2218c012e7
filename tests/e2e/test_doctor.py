"""`valine doctor` against the GitHub and Discord stand-ins, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import GUILD
from valine.core.commands import registration_payload
from valine.discord.client import DiscordClient
from world import REPO, World, world_env

pytestmark = pytest.mark.e2e

EVENTS = ["issues", "issue_comment", "pull_request", "check_suite", "status"]


def doctor(world: World, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "GITHUB_", "VALINE_"))
    }
    settings = world_env(world.github, world.discord, world.key)
    return subprocess.run(
        [sys.executable, "-m", "valine.runtime.cli", "doctor", *args],
        cwd=world.service.workdir,
        env={**base, **settings, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def endpoint(world: World) -> str:
    return f"http://127.0.0.1:{world.service.port}"


def set_up_well(world: World, *, repository_hook: bool = True) -> None:
    for label in ("ready", "in-progress", "shipped"):
        world.github.add_label(REPO, label)
    if repository_hook:
        world.github.add_hook(REPO, endpoint(world) + "/github/webhook", EVENTS)
    with DiscordClient(
        world.discord.url, world.discord.application_id, world.discord.bot_token
    ) as client:
        client.register_commands(registration_payload(), GUILD)
    world.discord.interactions_endpoint_url = endpoint(world) + "/discord"


def test_a_healthy_set_up_passes_and_doctor_writes_nothing(world: World) -> None:
    set_up_well(world)
    github_before = len(world.github.requests)
    discord_before = len(world.discord.requests)
    result = doctor(world, "--endpoint", endpoint(world))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith("0 problem(s), 0 warning(s)\n"), result.stdout
    assert f"GitHub: the token may write to {REPO}" in result.stdout
    assert "sends every event the service reads" in result.stdout
    assert f"commands registered in guild {GUILD} match the schema" in result.stdout
    # The invite asks for what the bot needs, the runs' threads included.
    invite = (
        f"https://discord.com/oauth2/authorize?client_id={world.discord.application_id}"
        "&scope=bot+applications.commands&permissions=309237730304"
    )
    assert f"Create Public Threads and Send Messages in Threads: {invite}" in result.stdout
    # Read-only: GETs only, on both platforms.
    assert {r.method for r in world.github.requests[github_before:]} == {"GET"}
    assert {r.method for r in world.discord.requests[discord_before:]} == {"GET"}


def test_a_missing_label_and_a_webhook_missing_an_event_are_reported(world: World) -> None:
    world.github.add_label(REPO, "in-progress")
    hook = world.github.add_hook(
        REPO, endpoint(world) + "/github/webhook", [e for e in EVENTS if e != "check_suite"]
    )
    result = doctor(world, "--endpoint", endpoint(world))
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  label 'ready' is missing: /plan will find no issues\n" in out
    assert "      fix: create the label 'ready'" in out
    assert "warn  label 'shipped' is missing" in out
    assert (
        f"FAIL  webhook {hook} ({endpoint(world)}/github/webhook) does not send check_suite" in out
    )
    assert "fix: edit the webhook and tick check_suite" in out
    # Nothing registered, no Interactions Endpoint URL: said, with the fix.
    assert f"commands registered in guild {GUILD} differ from the schema" in out
    assert "fix: run `valine register-commands`" in out
    assert "FAIL  Discord: the application has no Interactions Endpoint URL" in out
    assert f"{endpoint(world)}/discord" in out


def test_a_webhook_to_elsewhere_and_an_endpoint_elsewhere(world: World) -> None:
    set_up_well(world)
    world.discord.interactions_endpoint_url = "https://old.example.invalid/discord"
    result = doctor(world, "--endpoint", "https://new.example.invalid")
    assert result.returncode == 1
    assert "no webhook sends to https://new.example.invalid/github/webhook" in result.stdout
    assert (
        "Discord sends interactions to https://old.example.invalid/discord, not to "
        "https://new.example.invalid/discord"
    ) in result.stdout


def test_a_token_without_admin_or_without_access(world: World) -> None:
    set_up_well(world)
    world.github.set_role(REPO, "push")
    result = doctor(world)
    assert result.returncode == 0, result.stdout
    assert "warn  cannot read the repository's webhooks with these credentials" in result.stdout
    world.github.set_role(REPO, "triage")
    assert "may read octo/widgets but not write to it" in doctor(world).stdout
    hidden = doctor(world, GITHUB_REPOSITORY="octo/secret")
    assert hidden.returncode == 1
    assert "FAIL  the GitHub token cannot see octo/secret" in hidden.stdout
    bad = doctor(world, GITHUB_TOKEN="ghp_" + "x" * 36)
    assert bad.returncode == 1
    assert "FAIL  GitHub could not be read: GitHub answered 401" in bad.stdout
    assert "ghp_xxxx" not in bad.stdout + bad.stderr


def test_bad_rules_and_missing_settings(world: World, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[planer]\nmax_tasks = 3\n")
    result = doctor(world, VALINE_CONFIG=str(bad))
    assert result.returncode == 2
    assert "unknown section [planer]; did you mean [planner]?" in result.stderr
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = doctor(world, VALINE_CONFIG=str(empty), DISCORD_BOT_TOKEN="", GITHUB_WEBHOOK_SECRET="")
    assert result.returncode == 1
    assert "FAIL  no [discord] guild_ids: every command is refused" in result.stdout
    assert "warn  nobody may plan, approve, ship, cancel" in result.stdout
    assert "FAIL  DISCORD_BOT_TOKEN is not set" in result.stdout
    assert "FAIL  GITHUB_WEBHOOK_SECRET is not set" in result.stdout


def test_every_served_repository_is_checked_with_its_own_rules(
    world: World, tmp_path: Path
) -> None:
    """With ``[[repositories]]`` each repository is read, and each finding names it."""
    set_up_well(world)
    world.github.add_repo("octo/gadgets")
    config = tmp_path / "two.toml"
    config.write_text(
        (Path(world.service.workdir) / "valine.toml").read_text()
        + '[[repositories]]\nname = "octo/gadgets"\nchannel_id = "5"\n'
        + '[repositories.labels]\nready = "todo"\n'
    )
    result = doctor(world, "--endpoint", endpoint(world), VALINE_CONFIG=str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"ok    {REPO}: GitHub: the token may write to {REPO}" in result.stdout
    assert f"ok    {REPO}: label 'ready' exists" in result.stdout
    assert "FAIL  octo/gadgets: label 'todo' is missing" in result.stdout
    assert "FAIL  octo/gadgets: no webhook sends to" in result.stdout
    assert result.stdout.endswith("2 problem(s), 2 warning(s)\n")
    # without GITHUB_REPOSITORY, the listed repositories stand for it
    alone = tmp_path / "alone.toml"
    alone.write_text(config.read_text())
    result = doctor(world, VALINE_CONFIG=str(alone), GITHUB_REPOSITORY="")
    assert "GITHUB_REPOSITORY is not set" not in result.stdout
    assert "ok    GitHub: the token may write to octo/gadgets" in result.stdout  # one: unnamed
    assert "FAIL  label 'todo' is missing" in result.stdout


def test_an_organisation_webhook_counts_and_an_unreadable_one_is_not_called_missing(
    world: World,
) -> None:
    """A webhook of the repository's organisation delivers its events: it counts. When
    the organisation's webhooks cannot be read, doctor says so instead of 'missing'."""
    set_up_well(world, repository_hook=False)
    org = REPO.partition("/")[0]
    hooked = world.github.add_org_hook(org, endpoint(world) + "/github/webhook", ["*"])
    result = doctor(world, "--endpoint", endpoint(world))
    assert result.returncode == 0, result.stdout
    assert result.stdout.endswith("0 problem(s), 0 warning(s)\n"), result.stdout
    assert (
        f"ok    organisation webhook {hooked} ({endpoint(world)}/github/webhook) sends every "
        "event the service reads"
    ) in result.stdout
    # a token that may not read them (no admin:org_hook, GitHub answers 404): a warning
    world.github.add_org(org, token_reads_hooks=False)
    result = doctor(world, "--endpoint", endpoint(world))
    assert result.returncode == 0, result.stdout
    assert (
        f"warn  could not check the organisation webhooks of {org}; no repository webhook "
        f"sends to {endpoint(world)}/github/webhook"
    ) in result.stdout
    assert "admin:org_hook" in result.stdout and "FAIL" not in result.stdout
    # readable, and none sends here: missing, naming both lists
    world.github.add_org(org)
    result = doctor(world, "--endpoint", "https://new.example.invalid")
    assert result.returncode == 1
    assert (
        "FAIL  no webhook sends to https://new.example.invalid/github/webhook (the "
        f"repository's: none; the organisation's: {endpoint(world)}/github/webhook)"
    ) in result.stdout
    # both a repository and an organisation webhook: every event twice
    world.github.add_hook(REPO, endpoint(world) + "/github/webhook", EVENTS)
    result = doctor(world, "--endpoint", endpoint(world))
    assert "warn  both a repository and an organisation webhook send here" in result.stdout
