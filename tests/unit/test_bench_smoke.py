"""Smoke test of the benchmark (``make bench``): ``bench/run.py --quick`` runs and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "run.py"
LOADGEN = ROOT.parent / "shared" / "bench" / "webhooks" / "loadgen.py"

#: Every row of the table the benchmark prints.
ROW_LABELS = (
    "in-process discord PING",
    "in-process discord /status",
    "in-process github issues webhook",
    "server github webhooks (loadgen)",
    "server discord PING",
    "server RSS idle / after / peak",
)


@pytest.mark.slow
def test_quick_bench_runs_and_prints_every_row(tmp_path: Path) -> None:
    if not LOADGEN.is_file():
        pytest.skip(f"{LOADGEN} is not beside the checkout (../shared)")
    results = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ROW_LABELS:
        assert label in done.stdout, f"row {label!r} missing:\n{done.stdout}"
    assert "python 3." in done.stdout
    assert results.is_file()
