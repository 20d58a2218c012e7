"""The command line: simulate (signed requests to a running service), register-commands,
runs list/show -- each run as the user would, in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SEED_COMMANDS, WEBHOOK_SECRET, start_service, stop_service
from valine.core.commands import registration_payload
from valine.testing import wait_for
from valine.testing.discord_standin import DiscordStandIn
from world import REPO, World

pytestmark = pytest.mark.e2e


def valine(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "GITHUB_", "VALINE_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "valine.runtime.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_simulate_talks_to_a_running_service_with_its_own_key(tmp_path: Path) -> None:
    keygen = valine(tmp_path, "simulate", "keygen")
    assert keygen.returncode == 0, keygen.stderr
    public = keygen.stdout.split("DISCORD_PUBLIC_KEY=")[1].strip()
    assert (tmp_path / ".valine" / "simulate.key").stat().st_mode & 0o077 == 0
    (tmp_path / ".env").write_text(
        f"DISCORD_PUBLIC_KEY={public}\nGITHUB_WEBHOOK_SECRET={WEBHOOK_SECRET}\n"
    )
    (tmp_path / "valine.toml").write_text('[permissions.plan]\nusers = ["42"]\n')
    service = start_service(tmp_path, {})
    try:
        url = f"http://127.0.0.1:{service.port}"
        ping = valine(tmp_path, "simulate", "--url", url, "discord", "--ping")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert '"type": 1' in ping.stdout

        plan = valine(tmp_path, "simulate", "--url", url, "discord", "/plan")
        assert "GITHUB_REPOSITORY" in plan.stdout  # answers, naming what is missing

        status = valine(
            tmp_path, "simulate", "--url", url, "discord", "status", "run_id=r20990101-nope00"
        )
        assert "GITHUB_REPOSITORY" in status.stdout

        delivery = [
            "simulate",
            "--url",
            url,
            "github",
            "pull_request",
            "--action",
            "opened",
            "--number",
            "7",
            "--body",
            "Fixes #3",
        ]
        hook = valine(tmp_path, *delivery, "--delivery", "sim-1")
        assert hook.returncode == 0, hook.stdout
        # No repository configured: verified, answered, nothing written (so a redelivery
        # is answered the same, not as a duplicate).
        assert "HTTP 202" in hook.stdout and "no repository is served" in hook.stdout
        again = valine(tmp_path, *delivery, "--delivery", "sim-1")
        assert again.stdout == hook.stdout
    finally:
        stop_service(service)


def test_simulate_github_status_is_tracked_like_githubs(world: World, tmp_path: Path) -> None:
    """A commit status sent with ``simulate github status`` is read as GitHub's would be:
    the service reads the head's whole picture and the task turns red naming the status."""
    number = world.github.add_issue(REPO, "Task", ["ready"])
    run_id = world.plan()
    world.command("approve", run_id=run_id)
    world.wait_state(run_id, "executing")
    _pr, sha = world.open_pr(run_id, number)
    world.github.report_checks(REPO, sha, "success")  # every suite green...
    world.github.set_status(REPO, sha, "ci/jenkins", "failure")  # ...but Jenkins is red
    simulate = [
        "simulate",
        "--url",
        f"http://127.0.0.1:{world.service.port}",
        "github",
        "status",
        "--repo",
        REPO,
        "--sha",
        sha,
        "--state",
        "failure",
        "--context",
        "ci/jenkins",
    ]

    sent = valine(tmp_path, *simulate, env={"GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET})

    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert '"accepted"' in sent.stdout
    wait_for(
        "the red status shown",
        lambda: "status `ci/jenkins` failure" in world.described(run_id),
    )
    assert f"#{number}" in world.described(run_id) and "checks_failed" in world.described(run_id)
    wrong = valine(tmp_path, *simulate[:-4], "--state", "red", env={})
    assert wrong.returncode == 2 and "invalid choice: 'red'" in wrong.stderr


def test_simulate_without_a_running_service_says_so(tmp_path: Path) -> None:
    valine(tmp_path, "simulate", "keygen")
    result = valine(tmp_path, "simulate", "--url", "http://127.0.0.1:9", "discord", "--ping")
    assert result.returncode != 0
    assert "Is `valine serve` running?" in result.stderr


def test_register_commands_sends_only_when_something_changed(tmp_path: Path) -> None:
    with DiscordStandIn() as discord:
        env = {
            "DISCORD_APPLICATION_ID": discord.application_id,
            "DISCORD_BOT_TOKEN": discord.bot_token,
            "DISCORD_API_URL": discord.url,
        }
        first = valine(tmp_path, "register-commands", "--guild", "4", env=env)
        assert first.returncode == 0, first.stderr
        assert "+ /plan (new)" in first.stdout
        assert [c["name"] for c in discord.registered_commands("4")] == [
            c["name"] for c in registration_payload()
        ]
        puts = [r for r in discord.requests if r.method == "PUT"]
        second = valine(tmp_path, "register-commands", "--guild", "4", env=env)
        assert "up to date; nothing sent" in second.stdout
        assert [r for r in discord.requests if r.method == "PUT"] == puts
        missing = valine(tmp_path, "register-commands", env={"DISCORD_API_URL": discord.url})
        assert missing.returncode == 2
        assert "DISCORD_APPLICATION_ID" in missing.stderr


def test_register_commands_dry_run_prints_the_schema(tmp_path: Path) -> None:
    result = valine(tmp_path, "register-commands", "--dry-run")
    payload = {c["name"]: c for c in json.loads(result.stdout)}
    assert set(payload) == SEED_COMMANDS
    assert payload["approve"]["options"][0] == {
        "name": "run_id",
        "description": payload["approve"]["options"][0]["description"],
        "type": 3,
        "required": True,
        "autocomplete": True,
        "max_length": 32,
    }
    # Offered in servers only, to a server install: never in DMs.
    assert {(tuple(c["contexts"]), tuple(c["integration_types"])) for c in payload.values()} == {
        ((0,), (0,))
    }
    assert payload["status"]["options"][0]["required"] is False


def test_bad_configuration_stops_with_the_variable_named(tmp_path: Path) -> None:
    result = valine(tmp_path, "runs", "list", env={"DISCORD_PUBLIC_KEY": "not-hex"})
    assert result.returncode == 2
    assert "DISCORD_PUBLIC_KEY" in result.stderr
    (tmp_path / "valine.toml").write_text('[executor]\nkind = "robot"\n')
    result = valine(tmp_path, "runs", "list")
    assert "no runs stored" in result.stdout  # runs list does not need the workflow rules


def test_serve_refuses_a_malformed_workflow_file(tmp_path: Path) -> None:
    (tmp_path / "valine.toml").write_text('[merge]\nmethod = "octopus"\n')
    result = valine(tmp_path, "serve", "--port", "9")
    assert result.returncode == 2
    assert "valine.toml: merge.method" in result.stderr


def test_demo_plays_the_whole_workflow(tmp_path: Path) -> None:
    result = valine(tmp_path, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in (
        "after /plan",
        "the plan message edited in place",
        "Ready to ship",
        "Shipped **3** pull request(s)",
        "/status (only you can see this)",
    ):
        assert step in out
    assert "labels=['P1', 'shipped']" in out
