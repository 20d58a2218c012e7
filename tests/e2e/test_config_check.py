"""`valine config check` and start-up refuse a mistyped valine.toml, as an operator sees it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_config_check_prints_the_effective_rules(tmp_path: Path) -> None:
    (tmp_path / "valine.toml").write_text(
        '[permissions.approve]\nroles = ["123"]\n[merge]\nmethod = "rebase"\n'
    )
    result = valine(tmp_path, "config", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("valine.toml: valid\n")
    assert "merge: method=rebase" in result.stdout
    assert "approve: roles=['123'] users=[]" in result.stdout
    assert "plan: nobody (denied to everyone)" in result.stdout


def test_config_check_without_a_file_says_the_defaults_apply(tmp_path: Path) -> None:
    result = valine(tmp_path, "config", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no valine.toml here: the defaults apply\n")


def test_a_mistyped_section_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    bad = tmp_path / "team.toml"
    bad.write_text('[permission.plan]\nroles = ["1"]\n')
    result = valine(tmp_path, "config", "check", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        f"valine: configuration error: {bad}: unknown section [permission]; "
        "did you mean [permissions]?"
    ) in result.stderr
    # The service refuses to start with it too, instead of denying everything silently.
    serve = valine(tmp_path, "serve", "--port", "0", env={"VALINE_CONFIG": str(bad)})
    assert serve.returncode == 2
    assert "did you mean [permissions]?" in serve.stderr


def test_a_missing_named_file_and_bad_toml_are_errors(tmp_path: Path) -> None:
    missing = valine(tmp_path, "config", "check", "nope.toml")
    assert missing.returncode == 2
    assert "nope.toml: no such file" in missing.stderr
    (tmp_path / "valine.toml").write_text("[labels\n")
    broken = valine(tmp_path, "config", "check")
    assert broken.returncode == 2
    assert "valine.toml: not valid TOML" in broken.stderr


def test_config_check_shows_each_repository_and_refuses_a_bad_entry(tmp_path: Path) -> None:
    (tmp_path / "valine.toml").write_text(
        '[[repositories]]\nname = "acme/rocket"\nchannel_id = "10"\n'
        '[[repositories]]\nname = "acme/probe"\nchannel_id = "11"\n'
        '[repositories.executor]\nkind = "assign"\nassignee = "robot"\n'
    )
    result = valine(tmp_path, "config", "check")
    assert result.returncode == 0, result.stderr
    assert "repository acme/rocket: channel_id=10 installation_id=looked up" in result.stdout
    assert "repository acme/probe: channel_id=11" in result.stdout
    assert "  executor: kind=assign assignee='robot'" in result.stdout
    (tmp_path / "valine.toml").write_text(
        '[[repositories]]\nname = "acme/rocket"\n[repositories.executr]\nkind = "label"\n'
    )
    result = valine(tmp_path, "config", "check")
    assert result.returncode == 2
    assert "repositories: acme/rocket: unknown key executr; did you mean executor?" in result.stderr


def test_a_repositorys_own_schedule_is_shown_and_a_bad_cron_expression_names_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "valine.toml").write_text(
        '[[repositories]]\nname = "acme/rocket"\nchannel_id = "10"\n'
        '[[repositories]]\nname = "acme/probe"\nchannel_id = "11"\n'
        '[repositories.schedule]\nplan = "0 10 * * 1-5"\n'
        '[repositories.ship]\ndeploy_workflow = "release.yml"\n'
    )
    result = valine(tmp_path, "config", "check")
    assert result.returncode == 0, result.stderr
    assert "  schedule: plan='0 10 * * 1-5' timezone=UTC channel_id=11" in result.stdout
    assert "  ship: deploy_workflow='release.yml'" in result.stdout
    (tmp_path / "valine.toml").write_text(
        '[[repositories]]\nname = "acme/probe"\nchannel_id = "11"\n'
        '[repositories.schedule]\nplan = "every morning"\n'
    )
    result = valine(tmp_path, "config", "check")
    assert result.returncode == 2
    assert "repositories: acme/probe: schedule.plan: 'every morning' is not a cron" in result.stderr
