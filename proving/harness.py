"""The proving ground's instruments: a world to drive, whole runs, and the figures table.

A :class:`Ground` is the GitHub and Discord stand-ins (in this process) plus one
``valine serve`` process wired to them (:mod:`valine.testing.world`, the world of
the end-to-end tests). It can SIGKILL and restart
the service on the same state. Everything here acts through public interfaces only:
signed HTTP requests to the service's endpoints, the stand-ins' own methods (what a
person or CI does on GitHub) and their recorded requests and state. Nothing reads or
writes the service's store.
"""

from __future__ import annotations

import json
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from valine.testing import examples, wait_for
from valine.testing.examples import check_suite_event, pr_event
from valine.testing.service import start_service
from valine.testing.world import (
    DEFAULT_CONFIG,
    REPO,
    World,
    start_world,
    stop_world,
    world_env,
)
from valine.testing.world import button as button_document

#: A webhook delivery taken (202) or recognised as one already taken (200).
ACCEPTED = (200, 202)
#: Generous bounds on every wait (a run that needs longer has stalled).
STEP_TIMEOUT = 30.0


def load_examples() -> dict[str, list[dict[str, Any]]]:
    """Real webhook payloads from @octokit/webhooks-examples (``make material``)."""
    try:
        return examples.load_examples()
    except examples.MaterialMissing as missing:
        raise SystemExit(str(missing)) from None


#: The workflow rules of every scenario: the tests' defaults, with the per-user command
#: limit raised -- the harness is one approver doing weeks of runs in minutes, and the
#: limit (10 a minute by default) would refuse its Ship presses, which is the limit
#: working, not a defect. The limit itself is tested in tests/e2e.
PROVING_CONFIG = DEFAULT_CONFIG.replace("[discord]\n", "[discord]\nrate_limit = 1000\n", 1)
assert PROVING_CONFIG != DEFAULT_CONFIG, (
    "valine.testing.world DEFAULT_CONFIG lost its [discord] table"
)


#: A killed service's jobs come back when their lease runs out: 10 s instead of the
#: default 60 s (``VALINE_JOB_LEASE``; the heartbeat keeps a live job's lease), so a
#: crash run waits less. Claims still live their 120 s.
LEASE = {"VALINE_JOB_LEASE": "10"}


@dataclass
class Ground:
    """The stand-ins and one ``valine serve``, restartable on the same state."""

    workdir: Path
    world: World
    env: dict[str, str]
    restarts: int = 0

    @classmethod
    def start(
        cls,
        workdir: Path,
        key: SigningKey,
        examples: dict[str, list[dict[str, Any]]],
        env: dict[str, str] | None = None,
        config: str = PROVING_CONFIG,
    ) -> Ground:
        """Start the stand-ins and the service in ``workdir``."""
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**LEASE, **(env or {})}
        world = start_world(workdir, key, examples, config, env)
        full_env = {**world_env(world.github, world.discord, key), **(env or {})}
        return cls(workdir, world, full_env)

    def kill(self) -> None:
        """SIGKILL the service: no shutdown, no flush, whatever it was doing."""
        process = self.world.service.process
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self) -> None:
        """Start ``valine serve`` again on the same working directory and store."""
        log = self.world.service.log_path
        previous = log.read_bytes() if log.exists() else b""
        self.world.service = start_service(self.workdir, self.env)
        # keep every incarnation's log, for a failure's post-mortem
        (self.workdir / f"service-{self.restarts}.log").write_bytes(previous)
        self.restarts += 1

    def stop(self) -> None:
        """Stop the service and the stand-ins."""
        stop_world(self.world)

    def rss_kib(self) -> int:
        """The service's resident set size (``VmRSS``), KiB."""
        status = Path(f"/proc/{self.world.service.process.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) if match else 0


# -- speaking as Discord users and as GitHub ---------------------------------------------


def signed_interaction(world: World, document: dict[str, Any]) -> tuple[int, bytes]:
    """POST one signed interaction document; (status, body)."""
    return world.send(document)


def button(world: World, custom_id: str, user: str = "42") -> tuple[int, dict[str, Any]]:
    """Press a button as ``user``; (HTTP status, answer or {})."""
    status, answer = world.send(button_document(custom_id, user))
    try:
        parsed = json.loads(answer) if answer else {}
    except ValueError:
        parsed = {}
    return status, parsed


def deliver(world: World, event: str, payload: dict[str, Any], delivery: str) -> int:
    """POST a signed webhook delivery with a given delivery id; the HTTP status."""
    return world.deliver(event, payload, delivery)


def status_of(world: World, run_id: str) -> str:
    """The run's state as ``/status`` reports it ('' while the service cannot answer)."""
    try:
        return world.status(run_id)
    except (OSError, AssertionError, KeyError, IndexError, ValueError):
        return ""


def wait_state(world: World, run_id: str, state: str, timeout: float = STEP_TIMEOUT) -> None:
    """Poll ``/status`` until the run is in ``state`` (TimeoutError with the last state)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = status_of(world, run_id)
        if last == state:
            return
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} stuck in {last or 'no answer'}, expected {state}")


# -- one whole run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One webhook GitHub would send: event name, payload, its X-GitHub-Delivery id."""

    event: str
    payload: dict[str, Any]
    delivery: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: What it reports, for orderings: ("pr", issue) or ("checks", issue).
    kind: tuple[str, int] = ("", 0)


@dataclass
class Run:
    """A run the harness drove: its id, issues and pull requests (issue -> (pr, sha))."""

    run_id: str
    issues: list[int]
    prs: dict[int, tuple[int, str]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    seconds: float = 0.0
    #: Issues whose dispatch the service reported unconfirmed (claimed by an attempt that
    #: died before GitHub answered): by design not sent again; the people are told.
    unconfirmed: set[int] = field(default_factory=set)


def plan_run(world: World, label: str, tasks: int = 3) -> Run:
    """Open ``tasks`` ready issues and ``/plan`` them; the planned run."""
    return plan_issues(world, open_issues(world, label, tasks))


def open_issues(world: World, label: str, tasks: int = 3) -> list[int]:
    """As a person: close what an earlier run left ``ready``, open ``tasks`` new issues.

    Every run starts from a known set of issues: a run that failed or was cancelled puts
    its issues back to ``ready``, and the next ``/plan`` would take them too (a run of 5
    tasks with pull requests for 3, stalled: one failure spreading to every later run).
    """
    retire_leftovers(world)
    return [
        world.github.add_issue(REPO, f"{label} task {i}", ["ready", "P1"]) for i in range(tasks)
    ]


def retire_leftovers(world: World, keep: Iterable[int] = ()) -> list[int]:
    """Close every open ``ready`` issue not in ``keep`` (as a person would); their numbers."""
    kept = set(keep)
    closed = []
    for issue in world.github.issues(REPO):
        if issue.state == "open" and "ready" in issue.labels and issue.number not in kept:
            world.github.close_issue(REPO, issue.number, "not_planned")
            closed.append(issue.number)
    return closed


#: Runs the harness gave up on (counted as failed and cancelled): a ``/plan`` that
#: answers with one of them is not the new run.
ABANDONED: set[str] = set()


def plan_issues(world: World, issues: list[int]) -> Run:
    """``/plan`` and check the run planned exactly ``issues``."""
    run_id, planned = plan_with_retry(world)
    if planned != set(issues):
        raise AssertionError(f"run {run_id} planned issues {sorted(planned)}, not {issues}")
    return Run(run_id, issues)


def plan_with_retry(world: World, timeout: float = STEP_TIMEOUT) -> tuple[str, set[int]]:
    """``/plan`` until the deferred answer becomes a plan (a crash may eat the first).

    Returns the run id and the issue numbers the plan message lists.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = world.command("plan")
            # a run planned by an earlier /plan that a crash cut short is shown at once
            message = _titled(answer.get("data")) if answer.get("type") == 4 else None
            if message is None:
                assert answer == {"type": 5}, answer
                token = world.tokens["plan"]
                # not long: a /plan sent again shows the run an eaten one planned (above)
                message = wait_for(
                    "the plan message", lambda t=token: _titled(world.discord.original(t)), 5.0
                )
            match = re.search(r"Run (r\d{8}-\w+)", message["embeds"][0]["title"])
            assert match, message
            assert match.group(1) not in ABANDONED, f"{match.group(1)} is still active"
            description = message["embeds"][0].get("description") or ""
            return match.group(1), {int(n) for n in re.findall(r"\[#(\d+)\]", description)}
        except (TimeoutError, OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # not a busy loop: it would meet the per-user command limit


def _titled(message: dict[str, Any] | None) -> dict[str, Any] | None:
    if message and message.get("embeds") and "Run r" in message["embeds"][0].get("title", ""):
        return message
    return None


def approve(world: World, run: Run) -> None:
    """Press Approve, then wait until every task was handed to the executor."""
    status, _ = button(world, f"approve:{run.run_id}")
    if status != 200:
        raise AssertionError(f"Approve answered {status}")
    wait_for(
        "every dispatch",
        lambda: len(dispatches_of(world, run.run_id)) >= len(run.issues),
        STEP_TIMEOUT,
    )
    wait_state(world, run.run_id, "executing")


#: What a task's line says when its dispatch was claimed and never confirmed.
UNCONFIRMED = "did not confirm the workflow dispatch"


def approve_or_told(world: World, run: Run) -> None:
    """Press Approve, then wait until each task was dispatched or reported unconfirmed.

    A SIGKILL between a dispatch's claim and GitHub's answer leaves the service unable
    to know whether it was sent: it does not send it again (at most once) and says so on
    the task, for a person to start it by hand. The harness is that person: it opens the
    task's pull request all the same (``open_pulls``), and counts the report.
    """
    status, _ = button(world, f"approve:{run.run_id}")
    if status != 200:
        raise AssertionError(f"Approve answered {status}")

    def settled() -> bool:
        sent = {int(d.inputs.get("issue_number") or 0) for d in dispatches_of(world, run.run_id)}
        waiting = [i for i in run.issues if i not in sent]
        if waiting:
            notes = task_notes(world, run.run_id)
            run.unconfirmed.update(i for i in waiting if UNCONFIRMED in notes.get(i, ""))
        return all(i in sent or i in run.unconfirmed for i in run.issues)

    wait_for("every dispatch sent or reported unconfirmed", settled, STEP_TIMEOUT)


def task_notes(world: World, run_id: str) -> dict[int, str]:
    """Per issue, the text of its task's lines in ``/status run_id`` ('' if none)."""
    try:
        answer = world.command("status", run_id=run_id)
        description = answer["data"]["embeds"][0].get("description") or ""
    except (OSError, AssertionError, KeyError, IndexError, ValueError):
        return {}
    notes: dict[int, str] = {}
    current = 0
    for line in description.splitlines():
        match = re.search(r"\[#(\d+)\]", line)
        if match:
            current = int(match.group(1))
        if current:
            notes[current] = notes.get(current, "") + line + "\n"
    return notes


def dispatches_of(world: World, run_id: str) -> list[Any]:
    """The workflow dispatches GitHub accepted for ``run_id``."""
    return [d for d in world.github.dispatches(REPO) if d.inputs.get("run_id") == run_id]


def open_pulls(world: World, run: Run) -> None:
    """As the executor and CI: open a PR per task, report green checks; queue the webhooks."""
    for issue in run.issues:
        body = f"Fixes #{issue}"
        ref = f"fix-{issue}"
        number, sha = world.github.open_pull(REPO, ref, body)
        world.github.report_checks(REPO, sha, "success")
        run.prs[issue] = (number, sha)
        opened = pr_event(
            world.examples,
            "opened",
            repo=REPO,
            number=number,
            body=body,
            head_ref=ref,
            head_sha=sha,
        )
        checks = check_suite_event(
            world.examples,
            "completed",
            repo=REPO,
            head_sha=sha,
            conclusion="success",
            pulls=[number],
        )
        run.deliveries.append(Delivery("pull_request", opened, kind=("pr", issue)))
        run.deliveries.append(Delivery("check_suite", checks, kind=("checks", issue)))


def deliver_all(world: World, deliveries: list[Delivery]) -> None:
    """Deliver each in the given order; a delivery the service did not accept is an error."""
    for item in deliveries:
        code = deliver(world, item.event, item.payload, item.delivery)
        if code not in ACCEPTED:
            raise AssertionError(f"{item.event} delivery answered {code}")


def ship(world: World, run: Run) -> None:
    """Wait for ready-to-ship, press Ship and Confirm, wait for shipped.

    Done already if the run shipped (a press that reached a service killed before it
    answered may have shipped it).
    """
    if status_of(world, run.run_id) == "shipped":
        return
    wait_state(world, run.run_id, "ready_to_ship")
    status, answer = button(world, f"ship:{run.run_id}")
    if status != 200:
        raise AssertionError(f"Ship answered {status}")
    status, answer = button(world, f"ship-confirm:{run.run_id}")
    if status != 200:
        raise AssertionError(f"Confirm answered {status}")
    if "Slow down" in json.dumps(answer):
        raise AssertionError(f"Confirm refused: {answer}")
    wait_state(world, run.run_id, "shipped")


def whole_run(
    world: World,
    label: str,
    order: Callable[[list[Delivery]], list[Delivery]] | None = None,
    tasks: int = 3,
) -> Run:
    """Plan -> approve -> PRs and checks (delivered in ``order``) -> ship."""
    started = time.monotonic()
    run = plan_run(world, label, tasks)
    approve(world, run)
    open_pulls(world, run)
    deliver_all(world, order(run.deliveries) if order else run.deliveries)
    ship(world, run)
    run.seconds = time.monotonic() - started
    return run


# -- what the outside world saw ------------------------------------------------------------


@dataclass(frozen=True)
class Effects:
    """The side effects of one run, counted on the stand-ins' state."""

    dispatches: dict[int, int]
    comments: dict[int, int]
    merges: dict[int, int]
    label_changes: dict[int, list[tuple[str, str]]]
    final: dict[int, tuple[str, tuple[str, ...], bool]]


def effects(world: World, run: Run) -> Effects:
    """Count the run's dispatches, comments, merges and label events per issue."""
    github = world.github
    dispatch_count = {i: 0 for i in run.issues}
    for d in dispatches_of(world, run.run_id):
        number = int(d.inputs.get("issue") or d.inputs.get("issue_number") or 0)
        if number in dispatch_count:
            dispatch_count[number] += 1
    merged_requests: dict[int, int] = {i: 0 for i in run.issues}
    for request in github.requests:
        # a merge GitHub answered as done (a fault's answer, even an HTTP 200, is not one)
        merged_ok = request.status == 200 and request.fault is None
        if request.method == "PUT" and request.path.endswith("/merge") and merged_ok:
            pr = int(request.path.split("/")[-2])
            for issue, (number, _) in run.prs.items():
                if number == pr:
                    merged_requests[issue] += 1
    final = {}
    for issue in run.issues:
        state = github.issue(REPO, issue)
        pr = run.prs.get(issue)
        final[issue] = (
            state.state,
            tuple(sorted(state.labels)),
            bool(pr and github.pull(REPO, pr[0]).merged),
        )
    return Effects(
        dispatches=dispatch_count,
        comments={i: sum(run.run_id in c for c in github.comments(REPO, i)) for i in run.issues},
        merges=merged_requests,
        label_changes={i: list(github.issue(REPO, i).label_events) for i in run.issues},
        final=final,
    )


def duplicated_label_changes(changes: list[tuple[str, str]]) -> int:
    """Label events beyond one ``labeled`` and one ``unlabeled`` per label."""
    seen: dict[tuple[str, str], int] = {}
    for change in changes:
        seen[change] = seen.get(change, 0) + 1
    return sum(count - 1 for count in seen.values() if count > 1)


# -- figures and invariants ----------------------------------------------------------------


@dataclass
class Table:
    """The figures (printed as measured) and the invariants (each asserted)."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    invariants: list[tuple[str, bool, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def figure(self, scenario: str, name: str, value: Any) -> None:
        """Record one measured figure."""
        with self._lock:
            self.rows.append((scenario, name, _fmt(value)))

    def check(self, scenario: str, name: str, holds: bool, detail: Any = "") -> bool:
        """Record one invariant and whether it holds (``detail`` explains a failure)."""
        with self._lock:
            self.invariants.append(
                (f"{scenario}: {name}", bool(holds), "" if holds else str(detail))
            )
        return bool(holds)

    def render(self) -> str:
        """The table, the invariants, and the last line ``N/N invariants hold``."""
        width = max((len(s) + len(n) for s, n, _ in self.rows), default=20) + 3
        lines = [f"{'figure':<{width}} value", "-" * (width + 12)]
        for scenario, name, value in self.rows:
            lines.append(f"{scenario + ' · ' + name:<{width}} {value}")
        lines.append("")
        for name, holds, detail in self.invariants:
            lines.append(
                f"[{'ok' if holds else 'FAIL'}] {name}" + (f" — {detail}" if detail else "")
            )
        held = sum(1 for _, holds, _ in self.invariants if holds)
        lines.append(f"{held}/{len(self.invariants)} invariants hold")
        return "\n".join(lines)

    def all_hold(self) -> bool:
        """True when there is at least one invariant and every one holds."""
        return bool(self.invariants) and all(holds for _, holds, _ in self.invariants)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@contextmanager
def timed(table: Table, scenario: str) -> Iterator[None]:
    """Record the scenario's wall time as a figure."""
    started = time.monotonic()
    try:
        yield
    finally:
        table.figure(scenario, "wall time s", time.monotonic() - started)


def rng_for(seed: int, scenario: str) -> random.Random:
    """An independent, reproducible random stream per scenario."""
    return random.Random(f"{seed}:{scenario}")
