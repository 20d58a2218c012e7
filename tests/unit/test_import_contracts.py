"""The layer contracts of ``pyproject.toml`` hold, and they catch a breach.

``make contracts`` runs the same check; here it also runs under plain ``pytest``, and a
copy of the tree with one forbidden import shows that the check can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the project in ``project`` (its ``src`` first on the path)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=project,
        env={"PYTHONPATH": str(project / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_contract_is_kept() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # an adapter reading the runtime's settings
        ("github/client.py", "from valine.runtime import config", "Adapters never import"),
        # one adapter borrowing another's helper
        ("queue/sqlite.py", "from valine.store import sqlite", "Adapters never import each"),
        # a use case reaching for an adapter
        ("usecases/base.py", "from valine.discord import client", "Use cases import"),
        # the core doing I/O through a client library
        ("core/models.py", "import httpx", "The core imports only"),
        # the product importing the testing kit
        ("runtime/wiring.py", "from valine.testing import payloads", "Only the demo"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src" / "valine", tmp_path / "src" / "valine")
    target = tmp_path / "src" / "valine" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), result.stdout
