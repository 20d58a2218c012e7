"""scripts/smoke_check.py, which the deploy workflow runs, against a real `valine serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import WEBHOOK_SECRET
from world import World

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "smoke_check.py"


def smoke(world: World, secret: str) -> subprocess.CompletedProcess[str]:
    base = f"http://127.0.0.1:{world.service.port}"
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--discord-url",
            f"{base}/discord",
            "--github-url",
            f"{base}/github/webhook",
        ],
        env={**os.environ, "GITHUB_WEBHOOK_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_healthy_service_passes_both_checks(world: World) -> None:
    result = smoke(world, WEBHOOK_SECRET)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: badly signed interaction refused (HTTP 401, want 401)" in result.stdout
    assert "ok: signed GitHub ping accepted (HTTP 200, want 200)" in result.stdout
    # Run again: a second deploy's smoke check is not refused as a duplicate delivery.
    assert smoke(world, WEBHOOK_SECRET).returncode == 0


def test_a_secret_mismatch_fails_and_is_not_printed(world: World) -> None:
    result = smoke(world, "not-the-stack-secret-0123456789")
    assert result.returncode == 1
    assert "FAILED: signed GitHub ping accepted (HTTP 401, want 200)" in result.stdout
    assert "not-the-stack-secret" not in result.stdout + result.stderr
