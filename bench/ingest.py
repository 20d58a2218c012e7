"""Webhook ingest against Probot, one alternating run: the run of record (docs/benchmarks.md).

Starts ``valine serve`` (its default worker threads, SQLite in a temporary directory),
then ``../shared/bench/webhooks/run_probot.sh --compare-url`` with it: the same 76 signed
``@octokit/webhooks-examples`` payloads, each request under its own delivery id, Probot
and valine alternating (A B, B A, ...) at 16 and at 64 connections. Around the load it
records the load average, both processes' RSS, and afterwards proves what the service
answered: every 2xx was ``202 accepted`` (not ``200 duplicate``) and every accepted
delivery left its dedupe key (its delivery id) committed in the SQLite file. Last, it
gives the worker threads up to ``DRAIN_S`` seconds to finish the jobs the load left
queued (they yield to requests while a load runs) and prints how many were left.

    make bench-ingest                                  # 3 runs x 10 s per target and level
    .venv/bin/python bench/ingest.py --runs 1 --duration 5 [--json out.json]

Bounded: run_probot.sh caps every load with ``timeout``; the whole run is refused past
``MAX_TOTAL_S``; all traffic is on loopback. Default figures take about 3.5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from run import SERVED_RULES

from valine.testing.service import HOST, Service, ServiceFailed, free_port, start_service
from valine.testing.service import stop_service as stop

ROOT = Path(__file__).resolve().parents[1]
RUN_PROBOT = ROOT.parent / "shared" / "bench" / "webhooks" / "run_probot.sh"
SCRATCH = Path("/tmp/probotbench")
#: The run may take at most this long (run_probot.sh bounds each load on its own).
MAX_TOTAL_S = 900
#: After the load, how long the worker threads get to drain the queued jobs.
DRAIN_S = 90.0
LEVELS = (16, 64)


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """A ``/proc/PID/status`` figure in kB; 0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_probot(service: Service, secret: str, args: argparse.Namespace) -> tuple[str, Path]:
    """run_probot.sh with ``service`` compared; its stdout and its per-run JSON lines file."""
    command = [
        "bash",
        str(RUN_PROBOT),
        "--scratch",
        str(args.scratch),
        "--port",
        str(free_port()),
        "--runs",
        str(args.runs),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--concurrency",
        " ".join(str(c) for c in LEVELS),
        "--secret",
        secret,
        "--compare-url",
        f"http://{HOST}:{service.port}/github/webhook",
        "--compare-label",
        "valine",
        "--compare-pid",
        str(service.pid),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=MAX_TOTAL_S, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: run_probot.sh failed ({done.returncode}):\n{done.stderr}")
    marker = "per-run results: "
    lines = done.stderr.splitlines()
    named = [line.split(marker, 1)[1].strip() for line in lines if marker in line]
    if not named or not Path(named[-1]).is_file():
        raise SystemExit(f"bench: run_probot.sh named no results file:\n{done.stderr[-2000:]}")
    return done.stdout, Path(named[-1])


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per level: both targets' medians, valine's ratios to Probot, and every run."""
    out: dict[str, Any] = {}
    for level in LEVELS:
        per: dict[str, dict[str, float]] = {}
        for label in ("probot", "valine"):
            mine = [r for r in rows if r["label"] == label and r["concurrency"] == level]
            per[label] = {
                key: statistics.median(float(r[key]) for r in mine)
                for key in ("rps", "p50_ms", "p99_ms")
            }
            per[label]["runs"] = len(mine)
        out[f"c{level}"] = {
            **per,
            "throughput_ratio": per["valine"]["rps"] / per["probot"]["rps"],
            "p99_ratio": per["valine"]["p99_ms"] / per["probot"]["p99_ms"],
        }
    return out


def committed_keys(db: Path) -> int:
    """Delivery-id dedupe keys committed in the service's SQLite file."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM queue_dedupe WHERE key LIKE 'github:delivery:%'"
        ).fetchone()
    return int(row[0])


def queued_jobs(db: Path) -> int:
    """Jobs waiting (or leased) in the service's SQLite file."""
    with sqlite3.connect(db, timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM queue_jobs WHERE state = 'ready'").fetchone()
    return int(row[0])


def drain(db: Path, limit_s: float = DRAIN_S) -> dict[str, float]:
    """How many jobs the load left queued, and how long the workers took to finish them
    (at most ``limit_s``; ``left`` is what remained then)."""
    start = time.monotonic()
    queued = left = queued_jobs(db)
    while left and time.monotonic() - start < limit_s:
        time.sleep(0.5)
        left = queued_jobs(db)
    return {"queued": queued, "left": left, "seconds": round(time.monotonic() - start, 1)}


def check_answers(rows: list[dict[str, Any]], keys: int) -> list[str]:
    """What the service's answers must show; an empty list when all of it holds."""
    problems = []
    valine = [r for r in rows if r["label"] == "valine"]
    accepted = sum(int(r["statuses"].get("202", 0)) for r in valine)
    other = sum(n for r in valine for s, n in r["statuses"].items() if s != "202")
    if other:
        problems.append(f"{other} valine answers were not 202 accepted")
    if any(r["errors"] or r["timeouts"] for r in valine):
        problems.append("valine had connection errors or timeouts")
    if keys < accepted:
        problems.append(f"{accepted} deliveries accepted but only {keys} committed")
    return problems


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per target and level (3)")
    parser.add_argument("--duration", type=int, default=10, help="measured s per run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured s per run (2)")
    parser.add_argument("--scratch", type=Path, default=SCRATCH, help="Probot's install dir")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    total = args.runs * 2 * len(LEVELS) * (args.duration + args.warmup + 3)
    if min(args.runs, args.duration) < 1 or args.warmup < 0 or total > MAX_TOTAL_S:
        parser.error(f"runs/duration/warmup must be positive and take at most {MAX_TOTAL_S} s")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison, print it, optionally write JSON; 1 if an answer was wrong."""
    args = parse_args(argv)
    if not RUN_PROBOT.is_file():
        raise SystemExit(f"bench: {RUN_PROBOT} missing (../shared beside the checkout)")
    secret = secrets.token_hex(20)
    with tempfile.TemporaryDirectory(prefix="valine-ingest-") as tmp:
        workdir = Path(tmp)
        db = workdir / "bench.db"
        rules = workdir / "valine.toml"
        rules.write_text(SERVED_RULES)
        env = {
            "GITHUB_WEBHOOK_SECRET": secret,
            "VALINE_STORE": f"sqlite:///{db}",
            "VALINE_LOG_LEVEL": "WARNING",
            # Served, so every delivery is persisted and queued (with no repository
            # configured a delivery is answered without a write: not the path measured).
            "VALINE_CONFIG": str(rules),
        }
        try:
            service = start_service(workdir, env, log_name="server.log", timeout=30)
        except ServiceFailed as failed:
            raise SystemExit(f"bench: {failed}") from None
        try:
            time.sleep(1.0)  # start-up allocations settle before the idle reading
            before = {"load": load_average(), "rss_idle_kb": rss_kb(service.pid)}
            print(f"[ingest] valine serve up, load {before['load']}", file=sys.stderr)
            stdout, results = run_probot(service, secret, args)
            after = {
                "load": load_average(),
                "rss_after_kb": rss_kb(service.pid),
                "rss_peak_kb": rss_kb(service.pid, "VmHWM"),
            }
            if service.process.poll() is not None:
                raise SystemExit(f"bench: valine serve died:\n{service.log_tail()}")
            drained = drain(db)
        finally:
            stop(service)
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        keys = committed_keys(db)
    figures = summarise(rows)
    problems = check_answers(rows, keys)
    print(stdout.rstrip())
    for level, f in figures.items():
        print(
            f"{level}: valine {f['valine']['rps']:,.0f} req/s p99 {f['valine']['p99_ms']:.2f} ms"
            f" | probot {f['probot']['rps']:,.0f} req/s p99 {f['probot']['p99_ms']:.2f} ms"
            f" | throughput {f['throughput_ratio']:.2f}x, p99 {f['p99_ratio']:.2f}x Probot's"
        )
    print(
        f"valine RSS idle {before['rss_idle_kb'] / 1024:.0f} MB, after "
        f"{after['rss_after_kb'] / 1024:.0f} MB, peak {after['rss_peak_kb'] / 1024:.0f} MB"
        f" | delivery ids committed {keys:,} | load {before['load']} -> {after['load']}"
        f" | {os.cpu_count()} CPUs"
    )
    rate = (drained["queued"] - drained["left"]) / max(drained["seconds"], 0.1)
    print(
        f"jobs queued after the load {drained['queued']:,}: {drained['left']:,} left after "
        f"{drained['seconds']:.1f} s ({rate:,.0f} jobs/s)"
    )
    for problem in problems:
        print(f"bench: {problem}", file=sys.stderr)
    if args.json:
        document = {
            "figures": figures,
            "before": before,
            "after": after,
            "committed_delivery_ids": keys,
            "drain": drained,
            "runs": rows,
            "summary": stdout.splitlines(),
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
