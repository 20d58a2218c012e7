"""The proving ground's quick variant runs in `make test` and must hold every invariant.

It drives the real ``valine serve`` (SQLite, and DynamoDB Local with moto's SQS) through
whole runs under duplicated deliveries, concurrent presses, SIGKILLs and platform faults
(``proving/run.py``, docs/reliability.md); its last line is ``N/N invariants hold``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.e2e


def test_quick_proving_ground_holds_every_invariant() -> None:
    env = {**os.environ, "PROVING_QUICK": "1", "PROVING_SEED": "1"}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "proving" / "run.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    assert lines, completed.stderr
    match = re.fullmatch(r"(\d+)/(\d+) invariants hold", lines[-1])
    assert match, completed.stdout
    held, total = int(match.group(1)), int(match.group(2))
    assert total >= 40, completed.stdout  # every scenario asserted something
    assert held == total, completed.stdout + completed.stderr[-3000:]
    assert completed.returncode == 0
