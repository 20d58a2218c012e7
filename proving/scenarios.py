"""The six scenarios of the proving ground; each records figures and invariants in a Table.

Every scenario drives whole runs (plan -> approve -> PRs and checks -> ship) through
the public interfaces only (see ``harness``). Counts come from :class:`Counts`: the full
run's by default, smaller ones with ``PROVING_QUICK=1``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    ABANDONED,
    ACCEPTED,
    REPO,
    STEP_TIMEOUT,
    Delivery,
    Ground,
    Run,
    Table,
    approve,
    approve_or_told,
    button,
    deliver,
    duplicated_label_changes,
    effects,
    open_issues,
    open_pulls,
    plan_issues,
    plan_run,
    retire_leftovers,
    rng_for,
    ship,
    status_of,
    timed,
    whole_run,
)
from nacl.signing import SigningKey

from valine.testing import faults as fk
from valine.testing.faults import Fault, FaultRequest, Match, Phase
from valine.testing.signing import discord_headers
from valine.testing.world import github_headers, interaction


@dataclass(frozen=True)
class Counts:
    """How much each scenario does."""

    disorder_runs: int
    race_presses: int
    race_rounds: int
    crash_runs: int
    github_fault_runs: int
    discord_fault_runs: int
    abuse_requests: int
    #: Whether a check may conclude before its pull request's event (a defect found here
    #: and fixed; the quick variant keeps the in-order case).
    checks_first: bool
    #: Whether the copies are shuffled at all (quick: duplicates, in order).
    shuffle: bool
    #: Where the crash scenario may kill the service.
    kill_points: tuple[str, ...]
    #: Which GitHub faults scenario 4 draws from (see ``GITHUB_FAULTS``).
    github_kinds: tuple[str, ...]
    #: Independent worlds (stand-ins + ``valine serve``) each scenario's runs are split
    #: over, driven at once: runs mostly wait (a killed job's lease, a rate limit's
    #: reset), so lanes shorten the wall time without cutting a count.
    lanes: int = 1
    #: Lanes of the crash scenario: a killed job waits out its lease (60 s) and a claim
    #: it held (120 s), so its runs wait longest.
    crash_lanes: int = 1

    @classmethod
    def full(cls) -> Counts:
        """The issue's counts (about 12 minutes on two shared cores, docs/reliability.md)."""
        return cls(
            100,
            100,
            2,
            100,
            100,
            100,
            100_000,
            True,
            True,
            ("github", "github", "discord", "timer"),
            tuple(GITHUB_FAULTS),
            lanes=8,
            crash_lanes=16,
        )

    @classmethod
    def quick(cls) -> Counts:
        """Small counts (about 30 s alone on two cores; what make test runs)."""
        return cls(
            6,
            40,
            1,
            4,
            4,
            4,
            3_000,
            False,
            False,
            ("timer",),
            ("http-502", "secondary-limit"),
            crash_lanes=4,
        )


@dataclass
class Context:
    """What every scenario gets: the seed, counts, a key, examples, a scratch directory."""

    seed: int
    counts: Counts
    key: SigningKey
    examples: dict[str, list[dict[str, Any]]]
    scratch: Path
    table: Table

    def ground(self, name: str, env: dict[str, str] | None = None) -> Ground:
        """A fresh world (stand-ins + ``valine serve``) in its own directory."""
        return Ground.start(self.scratch / name, self.key, self.examples, env)


# -- shared invariants ---------------------------------------------------------------------


@dataclass
class Tally:
    """Side effects over many runs, against one each."""

    runs: int = 0
    shipped: int = 0
    duplicate_dispatches: int = 0
    missing_dispatches: int = 0
    duplicate_comments: int = 0
    duplicate_merges: int = 0
    duplicate_labels: int = 0
    duplicate_announcements: int = 0
    #: Dispatches GitHub never got whose task the service reported unconfirmed (a kill
    #: or a 5xx between the claim and the answer: it cannot tell, so never sends twice).
    unconfirmed_told: int = 0
    unconfirmed_not_sent: int = 0
    wrong_final: int = 0
    failures: list[str] | None = None

    def add(self, ground: Ground, run: Run, shipped: bool) -> None:
        """Count one run's effects as the stand-ins saw them."""
        self.runs += 1
        self.shipped += shipped
        seen = effects(ground.world, run)
        for issue in run.issues:
            self.duplicate_dispatches += max(0, seen.dispatches[issue] - 1)
            told = issue in run.unconfirmed
            self.missing_dispatches += seen.dispatches[issue] == 0 and not told
            self.unconfirmed_told += told
            self.unconfirmed_not_sent += told and seen.dispatches[issue] == 0
            self.duplicate_comments += max(0, seen.comments[issue] - 1)
            self.duplicate_merges += max(0, seen.merges[issue] - 1)
            self.duplicate_labels += duplicated_label_changes(seen.label_changes[issue])
            if shipped and seen.final[issue] != ("closed", ("P1", "shipped"), True):
                self.wrong_final += 1
        self.duplicate_announcements += duplicated_announcements(ground, run)

    def merge(self, other: Tally) -> None:
        """Add another lane's counts to these."""
        for name, value in vars(other).items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
        if other.failures:
            self.failures = [*(self.failures or []), *other.failures]

    def note(self, text: str) -> None:
        """Remember why a run failed (the first few go into the invariant's detail)."""
        self.failures = [*(self.failures or []), text]

    def record(self, table: Table, scenario: str, announcements: bool = True) -> None:
        """The figures and the exactly-once invariants."""
        t = table
        t.figure(scenario, "runs", self.runs)
        t.figure(scenario, "runs shipped", self.shipped)
        detail = "; ".join((self.failures or [])[:3])
        t.check(scenario, "every run ends shipped", self.shipped == self.runs, detail)
        if self.unconfirmed_told:
            t.figure(scenario, "dispatches not sent, told unconfirmed", self.unconfirmed_not_sent)
        t.check(
            scenario,
            "0 lost dispatches (each sent, or reported unconfirmed)",
            self.missing_dispatches == 0,
            self.missing_dispatches,
        )
        t.check(
            scenario,
            "0 duplicate dispatches",
            self.duplicate_dispatches == 0,
            self.duplicate_dispatches,
        )
        t.check(
            scenario, "0 duplicate comments", self.duplicate_comments == 0, self.duplicate_comments
        )
        t.check(
            scenario,
            "0 duplicate label changes",
            self.duplicate_labels == 0,
            self.duplicate_labels,
        )
        t.check(scenario, "0 duplicate merges", self.duplicate_merges == 0, self.duplicate_merges)
        t.check(scenario, "final issue state right", self.wrong_final == 0, self.wrong_final)
        if announcements:
            t.check(
                scenario,
                "0 duplicate announcements",
                self.duplicate_announcements == 0,
                self.duplicate_announcements,
            )


ANNOUNCEMENTS = ("Ready to ship", "Shipped **")


def _text(message: dict[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
    return "\n".join(parts)


def announcements_of(ground: Ground, run: Run) -> dict[str, int]:
    """How many messages Discord holds of each announcement of ``run``."""
    discord = ground.world.discord
    messages = [m for m in discord.messages() if run.run_id in _text(m) or _mentions(m, run)]
    return {a: sum(a in _text(m) for m in messages) for a in ANNOUNCEMENTS}


def _mentions(message: dict[str, Any], run: Run) -> bool:
    text = _text(message)
    return any(f"PR #{pr}" in text for pr, _ in run.prs.values())


def duplicated_announcements(ground: Ground, run: Run) -> int:
    """Announcements Discord shows more than once for ``run``."""
    return sum(max(0, n - 1) for n in announcements_of(ground, run).values())


def _where(exc: BaseException) -> str:
    import traceback

    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


TERMINAL = ("shipped", "cancelled", "failed")


def progress(line: str) -> None:
    """One line of progress on stderr (the table goes to stdout)."""
    print(f"  {time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def cancel_quietly(ground: Ground, run: Run) -> None:
    """End a run that did not ship so the next one starts clean (its failure is counted).

    Presses Cancel, waits (bounded) for an end state, then closes the run's issues, which
    a failed or cancelled run puts back to ``ready``: the next ``/plan`` must not take them.
    """
    ABANDONED.add(run.run_id)
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline and status_of(ground.world, run.run_id) not in TERMINAL:
        with contextlib.suppress(OSError):
            button(ground.world, f"cancel:{run.run_id}")
        time.sleep(0.5)
    retire_leftovers(ground.world)


def guarded(
    tally: Tally, ground: Ground, label: str, drive: Callable[[], Run | None], plan: list[Run]
) -> None:
    """Drive one run; a run that does not ship is counted and cancelled, not fatal."""
    started = time.monotonic()
    try:
        run = drive()
        if run is not None:
            tally.add(ground, run, shipped=True)
            progress(f"{label}: {run.run_id} shipped ({time.monotonic() - started:.1f} s)")
    except (TimeoutError, AssertionError, OSError) as exc:
        state = status_of(ground.world, plan[-1].run_id) if plan else "not planned"
        why = f"{label}: {type(exc).__name__} {exc} at {_where(exc)} (run {state})"
        progress(f"FAILED {why}")
        tally.note(why)
        if plan:
            tally.add(ground, plan[-1], shipped=False)
            cancel_quietly(ground, plan[-1])


def in_lanes(
    ctx: Context,
    name: str,
    runs: int,
    lane: Callable[[Ground, random.Random, range, Tally], None],
    lanes: int | None = None,
) -> Tally:
    """Split ``runs`` over independent worlds driven at once; the lanes' tallies, merged.

    Lane ``k`` gets its own world, its own seeded stream (``seed:name#k``) and the runs
    ``k, k + lanes, ...``; a lane that cannot finish is a failed invariant, not a crash.
    """
    count = max(1, min(lanes or ctx.counts.lanes, runs))
    tallies = [Tally() for _ in range(count)]

    def drive(k: int) -> None:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        ground = ctx.ground(f"{slug}-{k}")
        try:
            lane(ground, rng_for(ctx.seed, f"{name}#{k}"), range(k, runs, count), tallies[k])
        except Exception as exc:
            tallies[k].note(f"lane {k}: {type(exc).__name__} {exc} at {_where(exc)}")
            tallies[k].runs += 1
        finally:
            ground.stop()

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(drive, range(count)))
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return total


# -- 1. duplicates and disorder --------------------------------------------------------------


def disorder(ctx: Context) -> None:
    """Every webhook 1-3 times, in any order GitHub can produce, plus late redeliveries."""
    name = "1 duplicates+disorder"
    deliveries: list[int] = []
    requests: list[tuple[int, int]] = []  # per lane: (requests of its runs, of its in-order run)
    lock = threading.Lock()

    def lane(ground: Ground, rng: random.Random, runs: range, tally: Tally) -> None:
        reference = whole_run(ground.world, "in order")
        _settle_announcements(ground, reference)
        expected = _signature(ground, reference)
        in_order = len(ground.world.github.requests)  # the one in-order run's requests
        sent = 0
        for i in runs:
            plan: list[Run] = []

            def drive(i: int = i, plan: list[Run] = plan) -> Run:
                nonlocal sent
                run = plan_run(ground.world, f"disorder {i}")
                plan.append(run)
                approve(ground.world, run)
                open_pulls(ground.world, run)
                schedule = _disordered(
                    run.deliveries, rng, ctx.counts.checks_first, ctx.counts.shuffle
                )
                for item in schedule:
                    assert deliver(ground.world, item.event, item.payload, item.delivery) in (
                        ACCEPTED
                    )
                sent += len(schedule)
                ship(ground.world, run)
                late = rng.sample(run.deliveries, k=rng.randint(1, len(run.deliveries)))
                for item in late:  # GitHub's redelivery, long after: same delivery id
                    assert deliver(ground.world, item.event, item.payload, item.delivery) in (
                        ACCEPTED
                    )
                sent += len(late)
                time.sleep(0.3)  # let the late deliveries' jobs run
                _settle_announcements(ground, run)
                got = _signature(ground, run)
                if got != expected:
                    raise AssertionError(f"final state {got} differs from in-order {expected}")
                return run

            guarded(tally, ground, f"run {i}", drive, plan)
        with lock:
            deliveries.append(sent)
            requests.append((len(ground.world.github.requests) - in_order, in_order * tally.runs))

    with timed(ctx.table, name):
        tally = in_lanes(ctx, name, ctx.counts.disorder_runs, lane)
    made = sum(r for r, _ in requests)
    allowed = sum(a for _, a in requests)
    ctx.table.figure(
        name, "lanes (worlds at once)", min(ctx.counts.lanes, ctx.counts.disorder_runs)
    )
    ctx.table.figure(name, "webhook deliveries sent", sum(deliveries))
    ctx.table.figure(name, "GitHub requests per run", made / max(1, tally.runs))
    tally.record(ctx.table, name)
    ctx.table.check(
        name,
        "GitHub requests per run as in order",
        made <= allowed,
        f"{made} > {allowed}",
    )


def _disordered(
    deliveries: list[Delivery], rng: random.Random, checks_first: bool, shuffle: bool = True
) -> list[Delivery]:
    """Each delivery 1-3 times (a redelivery keeps its id; a duplicate event gets a new
    one), all shuffled. With ``checks_first`` a check may conclude before its pull
    request's event arrives; without, each PR's first event comes before its checks."""
    copies: list[Delivery] = []
    for item in deliveries:
        copies.append(item)
        for _ in range(rng.randint(0, 2)):
            if rng.random() < 0.5:
                copies.append(item)
            else:
                copies.append(Delivery(item.event, item.payload, str(uuid.uuid4()), item.kind))
    if shuffle:
        rng.shuffle(copies)
    if not checks_first:
        for item in deliveries:
            if item.kind[0] != "pr":
                continue
            first_pr = next(i for i, c in enumerate(copies) if c.kind == item.kind)
            check = ("checks", item.kind[1])
            first_check = next(i for i, c in enumerate(copies) if c.kind == check)
            if first_check < first_pr:
                copies[first_check], copies[first_pr] = copies[first_pr], copies[first_check]
    return copies


def _settle_announcements(ground: Ground, run: Run, timeout: float = 10.0) -> None:
    """Wait (bounded) until Discord shows the run's ship summary."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not announcements_of(ground, run)["Shipped **"]:
        time.sleep(0.05)


def _signature(ground: Ground, run: Run) -> tuple[Any, ...]:
    """A run's outcome without its ids: state, and per task its effects and final state."""
    seen = effects(ground.world, run)
    return (
        status_of(ground.world, run.run_id),
        tuple(
            (
                seen.dispatches[i],
                seen.comments[i],
                seen.merges[i],
                tuple(seen.label_changes[i]),
                seen.final[i],
            )
            for i in run.issues
        ),
        # duplicates matter; a "Ready to ship" overtaken by the ship itself may be skipped
        tuple(sorted((k, n > 1) for k, n in announcements_of(ground, run).items())),
    )


# -- 2. races ----------------------------------------------------------------------------------


def races(ctx: Context, store: str, env: dict[str, str] | None = None) -> None:
    """Concurrent Approve presses, then concurrent Ship confirmations, on one run."""
    name = f"2 races ({store})"
    ground = ctx.ground(f"races-{store}", env)
    presses = ctx.counts.race_presses
    bad_status = untold = approvals = extra_dispatch = extra_merge = 0
    shipped = 0
    try:
        with timed(ctx.table, name):
            for round_ in range(ctx.counts.race_rounds):
                run = plan_run(ground.world, f"race {round_}")
                answers = _concurrently(ground, [f"approve:{run.run_id}"] * presses)
                approvals += sum(_content(a).startswith("✅") for _, a in answers)
                bad_status += sum(s != 200 for s, _ in answers)
                untold += sum(s == 200 and not _content(a) for s, a in answers)
                approve(ground.world, run)  # waits for the dispatches (a press more is refused)
                open_pulls(ground.world, run)
                for item in run.deliveries:
                    assert (
                        deliver(ground.world, item.event, item.payload, item.delivery) in ACCEPTED
                    )
                from harness import wait_state

                wait_state(ground.world, run.run_id, "ready_to_ship")
                answers = _concurrently(ground, [f"ship-confirm:{run.run_id}"] * presses)
                bad_status += sum(s != 200 for s, _ in answers)
                untold += sum(s == 200 and not _content(a) for s, a in answers)
                wait_state(ground.world, run.run_id, "shipped")
                shipped += 1
                seen = effects(ground.world, run)
                extra_dispatch += sum(abs(n - 1) for n in seen.dispatches.values())
                extra_merge += sum(abs(n - 1) for n in seen.merges.values())
        rounds = ctx.counts.race_rounds
        ctx.table.figure(name, "concurrent presses", 2 * presses * rounds)
        ctx.table.figure(name, "approvals", approvals)
        ctx.table.check(name, "exactly one approval per run", approvals == rounds, approvals)
        ctx.table.check(name, "one dispatch per task", extra_dispatch == 0, extra_dispatch)
        ctx.table.check(name, "one merge per pull request", extra_merge == 0, extra_merge)
        ctx.table.check(name, "no press answered other than 200", bad_status == 0, bad_status)
        ctx.table.check(name, "every other press told why", untold == 0, untold)
        ctx.table.check(name, "every run shipped", shipped == rounds, shipped)
    finally:
        ground.stop()


def _content(answer: dict[str, Any]) -> str:
    data = answer.get("data") or {}
    return str(data.get("content") or "") + "".join(
        str(e.get("description") or e.get("title") or "") for e in data.get("embeds") or []
    )


def _concurrently(ground: Ground, custom_ids: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """Press every button at once (threads released by one barrier)."""
    barrier = threading.Barrier(len(custom_ids))
    users = ("42", "43")

    def press(i: int) -> tuple[int, dict[str, Any]]:
        barrier.wait(timeout=30)
        try:
            return button(
                ground.world, custom_ids[i], users[i % 2] if "approve" in custom_ids[i] else "42"
            )
        except OSError as exc:
            return 599, {"error": str(exc)}

    with ThreadPoolExecutor(len(custom_ids)) as pool:
        return list(pool.map(press, range(len(custom_ids))))


# -- 3. crashes --------------------------------------------------------------------------------


class Killer:
    """Kills ``valine serve`` with SIGKILL at a chosen point and restarts it.

    ``arm_github(n)``: just after the stand-in applied the ``n``-th side-effecting request
    (its answer held back), so the service dies between the side effect and its save.
    ``arm_timer(s)``: ``s`` seconds from now, wherever the run is.
    """

    def __init__(self, ground: Ground) -> None:
        self.ground = ground
        self.kills = 0
        self.after_effect = 0
        self._lock = threading.Lock()
        self._countdown: int | None = None
        self._discord_countdown: int | None = None
        self._fired = threading.Event()
        ground.world.github.faults.policy = self._github_policy
        ground.world.discord.faults.policy = self._discord_policy

    def _github_policy(self, request: FaultRequest) -> Fault | None:
        mutating = request.method in ("POST", "PUT", "PATCH", "DELETE") and (
            request.path != "/graphql" or "mutation" in request.graphql_document
        )
        return self._maybe("_countdown", mutating)

    def _discord_policy(self, request: FaultRequest) -> Fault | None:
        return self._maybe("_discord_countdown", request.method in ("POST", "PATCH"))

    def _maybe(self, which: str, eligible: bool) -> Fault | None:
        with self._lock:
            count = getattr(self, which)
            if not eligible or count is None:
                return None
            if count > 0:
                setattr(self, which, count - 1)
                return None
            setattr(self, which, None)
        self._fired.set()
        # applied, then the answer is held until the process is gone
        return Fault(Phase.AFTER, None, None, {}, 3.0, fk.ANY, "held-for-kill")

    def arm_github(self, n: int) -> None:
        """Kill just after the ``n``-th (0-based) mutating GitHub request from now."""
        with self._lock:
            self._countdown = n
        self._watch(lambda: self._fired.wait(30) and self._settled(), effect=True)

    def arm_discord(self, n: int) -> None:
        """Kill just after the ``n``-th (0-based) message post or edit from now."""
        with self._lock:
            self._discord_countdown = n
        self._watch(lambda: self._fired.wait(30) and self._settled(), effect=True)

    def arm_timer(self, seconds: float) -> None:
        """Kill ``seconds`` from now."""
        self._watch(lambda: time.sleep(seconds) or True, effect=False)

    def _settled(self) -> bool:
        # the stand-ins record a request only once its effect is applied (under their lock)
        self.ground.world.github.requests  # noqa: B018 - waits for the lock
        self.ground.world.discord.requests  # noqa: B018
        return True

    def _watch(self, until: Callable[[], bool], effect: bool) -> None:
        self._fired.clear()

        def watch() -> None:
            if until():
                self.ground.kill()
                self.kills += 1
                self.after_effect += effect
                self.ground.restart()

        self.thread = threading.Thread(target=watch, daemon=True)
        self.thread.start()

    def disarm(self) -> None:
        """Wait for a pending kill-and-restart (or cancel an unfired one)."""
        with self._lock:
            self._countdown = self._discord_countdown = None
        self._fired.set()
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.join(timeout=60)


def crashes(ctx: Context) -> None:
    """Runs during which the service is SIGKILLed (and restarted) at a random point."""
    name = "3 crashes (SIGKILL)"
    kills: list[tuple[int, int]] = []
    lock = threading.Lock()

    def lane(ground: Ground, rng: random.Random, runs: range, tally: Tally) -> None:
        killer = Killer(ground)
        try:
            for i in runs:
                plan: list[Run] = []
                where = rng.choice(ctx.counts.kill_points)
                if where == "github":
                    killer.arm_github(rng.randrange(0, 8))  # approve 1 + 3, ship 3 + 1
                elif where == "discord":
                    killer.arm_discord(rng.randrange(0, 6))
                else:
                    killer.arm_timer(rng.uniform(0.0, 2.0))

                def drive(i: int = i, plan: list[Run] = plan) -> Run:
                    issues = open_issues(ground.world, f"crash {i}")
                    run = resilient(lambda: plan_issues(ground.world, issues), CRASH_WAIT)
                    plan.append(run)
                    resilient(lambda: approve_or_told(ground.world, run), CRASH_WAIT)
                    resilient(
                        lambda: open_pulls(ground.world, run) if not run.prs else None, CRASH_WAIT
                    )
                    for item in run.deliveries:
                        resilient(lambda item=item: _deliver_ok(ground, item), CRASH_WAIT)
                    resilient(lambda: ship(ground.world, run), CRASH_WAIT)
                    killer.disarm()
                    time.sleep(0.3)  # a restarted service may still be announcing
                    return run

                guarded(tally, ground, f"run {i} ({where})", drive, plan)
                killer.disarm()
        finally:
            killer.disarm()
            with lock:
                kills.append((killer.kills, killer.after_effect))

    with timed(ctx.table, name):
        tally = in_lanes(ctx, name, ctx.counts.crash_runs, lane, ctx.counts.crash_lanes)
    ctx.table.figure(
        name, "lanes (worlds at once)", min(ctx.counts.crash_lanes, ctx.counts.crash_runs)
    )
    ctx.table.figure(name, "SIGKILLs", sum(k for k, _ in kills))
    ctx.table.figure(name, "SIGKILLs right after a side effect", sum(a for _, a in kills))
    tally.record(ctx.table, name)


def _deliver_ok(ground: Ground, item: Delivery) -> None:
    code = deliver(ground.world, item.event, item.payload, item.delivery)
    if code not in ACCEPTED:
        raise OSError(f"delivery answered {code}")


#: How long a crash run may take to recover one step. A SIGKILL leaves the jobs the
#: process held leased for their visibility timeout (60 s) and a claim it took (a
#: relabelling, a dispatch) for its lifetime (120 s, ``CLAIM_TIMEOUT``): the step
#: resumes only then, by design (the claim is what keeps the effect at most once).
CRASH_WAIT = 240.0


def resilient(step: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Run a step again while the service is down or restarting (as GitHub redelivers)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return step()
        except (OSError, http.client.HTTPException, TimeoutError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- 4. GitHub faults --------------------------------------------------------------------------


class Injector:
    """A seeded policy failing ``rate`` of the requests with one of ``kinds`` that fits.

    A kind fits a request when its fault's ``match`` accepts it: GitHub answers a GraphQL
    rate limit only on ``/graphql`` (HTTP 200, ``RATE_LIMITED``) and a REST primary limit
    only on REST routes. Counted by kind name.
    """

    def __init__(
        self, rng: random.Random, rate: float, kinds: dict[str, Callable[[], Fault]]
    ) -> None:
        self.rng = rng
        self.rate = rate
        self.kinds = kinds
        self.injected: dict[str, int] = {}

    def __call__(self, request: FaultRequest) -> Fault | None:
        if self.rng.random() >= self.rate:
            return None
        faults = [(name, make()) for name, make in self.kinds.items()]
        fitting = [(name, fault) for name, fault in faults if fault.match.accepts(request)]
        if not fitting:
            return None
        name, fault = self.rng.choice(fitting)
        self.injected[name] = self.injected.get(name, 0) + 1
        return fault


#: REST routes: every path but GraphQL's.
REST = Match(path=r"^/(?!graphql$)")

GITHUB_FAULTS: dict[str, Callable[[], Fault]] = {
    "http-502": lambda: fk.server_error(502),
    "http-502-after-applying": lambda: fk.server_error(502, phase=Phase.AFTER),
    "drop-after-applying": fk.dropped,
    "secondary-limit": lambda: fk.github_secondary_limit(1),
    "primary-limit": lambda: fk.github_primary_limit(time.time() + 2, match=REST),
    "graphql-rate-limited": lambda: fk.graphql_rate_limited(time.time() + 2),
}


def github_faults(ctx: Context) -> None:
    """20 % of GitHub calls fail: 5xx before and after applying, dropped answers,
    secondary and primary rate limits, GraphQL RATE_LIMITED."""
    name = "4 GitHub faults"
    kinds = {k: GITHUB_FAULTS[k] for k in ctx.counts.github_kinds}
    injected: dict[str, int] = {}
    measured: list[tuple[int, int, int, int]] = []  # per lane: baseline, requests, early, in flight
    lock = threading.Lock()

    def lane(ground: Ground, rng: random.Random, runs: range, tally: Tally) -> None:
        github = ground.world.github
        injector = Injector(rng, 0.2, kinds)
        whole_run(ground.world, "baseline")
        baseline = len(github.requests)
        github.faults.policy = injector
        try:
            for i in runs:
                plan: list[Run] = []

                def drive(i: int = i, plan: list[Run] = plan) -> Run:
                    run = plan_run(ground.world, f"gh fault {i}")
                    plan.append(run)
                    approve_or_told(ground.world, run)
                    open_pulls(ground.world, run)
                    for item in run.deliveries:
                        assert deliver(ground.world, item.event, item.payload, item.delivery) in (
                            ACCEPTED
                        )
                    ship(ground.world, run)
                    return run

                guarded(tally, ground, f"run {i}", drive, plan)
        finally:
            github.faults.policy = None
            with lock:
                for kind, n in injector.injected.items():
                    injected[kind] = injected.get(kind, 0) + n
                measured.append(
                    (baseline, len(github.requests) - baseline, *_spent_answers(github))
                )

    with timed(ctx.table, name):
        tally = in_lanes(ctx, name, ctx.counts.github_fault_runs, lane)
    baseline = max((m[0] for m in measured), default=0)
    total = sum(m[1] for m in measured)
    early = sum(m[2] for m in measured)
    in_flight = sum(m[3] for m in measured)
    ctx.table.figure(
        name, "lanes (worlds at once)", min(ctx.counts.lanes, ctx.counts.github_fault_runs)
    )
    ctx.table.figure(name, "faults injected", sum(injected.values()))
    for kind, n in sorted(injected.items()):
        ctx.table.figure(name, f"  {kind}", n)
    ctx.table.figure(name, "GitHub requests per run (no faults)", baseline)
    ctx.table.figure(name, "extra requests per run", total / max(1, tally.runs) - baseline)
    ctx.table.figure(name, "requests sent before a known reset", early)
    ctx.table.figure(
        name, f"requests in flight as a limit was spent (<= {IN_FLIGHT:g} s)", in_flight
    )
    ctx.table.check(name, "0 requests before a known reset", early == 0, early)
    tally.record(ctx.table, name, announcements=False)


#: A request that reaches GitHub this soon after the answer that spent a limit left it was
#: already on its way (another worker's, sent before that answer arrived): in flight, not early.
IN_FLIGHT = 0.1


def _spent_answers(github: Any) -> tuple[int, int]:
    """Requests answered by a limit spent earlier: (sent after it was known, in flight).

    GitHub answers a request that arrives while a limit is spent with the same limit; the
    service must send none once it has been told. One that arrives within ``IN_FLIGHT``
    seconds of the answer that spent the limit, on another connection, was sent before
    that answer reached the service (a second worker's), so it is counted apart. One on
    the same keep-alive connection was sent after that answer was read: always early.
    """
    early = in_flight = 0
    for request in github.requests:
        if request.spent_since is None:
            continue
        same_connection = request.peer == request.spent_peer
        if same_connection or request.at - request.spent_since > IN_FLIGHT:
            early += 1
        else:
            in_flight += 1
    return early, in_flight


# -- 5. Discord faults -------------------------------------------------------------------------


def discord_faults(ctx: Context) -> None:
    """20 % of Discord calls fail with a 5xx (before or after applying) or a 429."""
    name = "5 Discord faults"
    body = {"message": "503: Service Unavailable", "code": 0}
    kinds: dict[str, Callable[[], Fault]] = {
        "http-503": lambda: fk.server_error(503, body=body),
        "http-502-after-applying": lambda: fk.server_error(502, phase=Phase.AFTER, body=body),
        "429-retry-after": lambda: fk.discord_rate_limited(0.2),
    }
    injected: dict[str, int] = {}
    stale: list[int] = []
    lock = threading.Lock()

    def lane(ground: Ground, rng: random.Random, runs: range, tally: Tally) -> None:
        discord = ground.world.discord
        injector = Injector(rng, 0.2, kinds)
        discord.faults.policy = injector
        behind = 0
        try:
            for i in runs:
                plan: list[Run] = []

                def drive(i: int = i, plan: list[Run] = plan) -> Run:
                    issues = open_issues(ground.world, f"dc fault {i}")
                    run = resilient(lambda: plan_issues(ground.world, issues), 60)
                    plan.append(run)
                    approve(ground.world, run)
                    open_pulls(ground.world, run)
                    for item in run.deliveries:
                        assert deliver(ground.world, item.event, item.payload, item.delivery) in (
                            ACCEPTED
                        )
                    ship(ground.world, run)
                    return run

                guarded(tally, ground, f"run {i}", drive, plan)
                if plan and not _final_message_shows(ground, plan[-1], "shipped"):
                    behind += 1
        finally:
            discord.faults.policy = None
            with lock:
                for kind, n in injector.injected.items():
                    injected[kind] = injected.get(kind, 0) + n
                stale.append(behind)

    with timed(ctx.table, name):
        tally = in_lanes(ctx, name, ctx.counts.discord_fault_runs, lane)
    ctx.table.figure(
        name, "lanes (worlds at once)", min(ctx.counts.lanes, ctx.counts.discord_fault_runs)
    )
    ctx.table.figure(name, "faults injected", sum(injected.values()))
    for kind, n in sorted(injected.items()):
        ctx.table.figure(name, f"  {kind}", n)
    ctx.table.figure(name, "plan messages not showing the final state", sum(stale))
    ctx.table.check(name, "each run's message shows its final state", sum(stale) == 0, sum(stale))
    tally.record(ctx.table, name)


def _final_message_shows(ground: Ground, run: Run, state: str, timeout: float = 15.0) -> bool:
    """The run's plan message (edited in place) ends up showing ``state``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in ground.world.discord.messages():
            title = " ".join(e.get("title") or "" for e in message.get("embeds") or [])
            if f"Run {run.run_id}" in title and title.rstrip().endswith(state):
                return True
        time.sleep(0.1)
    return False


# -- 6. endpoint abuse -------------------------------------------------------------------------


def abuse(ctx: Context) -> None:
    """Malformed, mis-signed and mutated requests to both endpoints while runs go on."""
    name = "6 endpoint abuse"
    rng = rng_for(ctx.seed, name)
    ground = ctx.ground("abuse")
    wrong_key = SigningKey.generate()
    tally = Tally()
    statuses: dict[int, int] = {}
    status_lock = threading.Lock()
    done = threading.Event()
    try:
        time.sleep(0.5)
        rss_start = ground.rss_kib()
        runs: list[Run] = []

        def keep_running() -> None:
            i = 0
            while not done.is_set() or i < 2:
                plan: list[Run] = []

                def drive(i: int = i, plan: list[Run] = plan) -> Run:
                    run = whole_run(ground.world, f"abuse {i}")
                    runs.append(run)
                    return run

                guarded(tally, ground, f"run {i}", drive, plan)
                i += 1

        runner = threading.Thread(target=keep_running, daemon=True)
        started = time.monotonic()
        with timed(ctx.table, name):
            runner.start()
            workers = 4
            per_worker = ctx.counts.abuse_requests // workers
            seeds = [rng.randrange(2**32) for _ in range(workers)]

            def hammer(seed: int) -> None:
                local = random.Random(seed)
                conn = http.client.HTTPConnection(
                    "127.0.0.1", ground.world.service.port, timeout=30
                )
                for _ in range(per_worker):
                    path, body, headers = _bad_request(local, ctx, ground, wrong_key, runs)
                    try:
                        conn.request("POST", path, body=body, headers=headers)
                        response = conn.getresponse()
                        response.read()
                        code = response.status
                        if response.getheader("connection", "").lower() == "close":
                            conn.close()
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        code = 0
                    with status_lock:
                        statuses[code] = statuses.get(code, 0) + 1

            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(hammer, seeds))
            elapsed = time.monotonic() - started
            done.set()
            runner.join(timeout=180)
        rss_end = ground.rss_kib()
        sent = sum(statuses.values())
        five = sum(n for code, n in statuses.items() if code >= 500)
        ctx.table.figure(name, "bad requests sent", sent)
        ctx.table.figure(name, "requests/s", sent / elapsed)
        ctx.table.figure(
            name, "answers", ", ".join(f"{c}: {n:,}" for c, n in sorted(statuses.items()))
        )
        ctx.table.figure(name, "RSS after start-up MiB", rss_start / 1024)
        ctx.table.figure(name, "RSS at the end MiB", rss_end / 1024)
        ctx.table.check(name, "0 5xx", five == 0, statuses)
        ctx.table.check(name, "every request answered", statuses.get(0, 0) == 0, statuses.get(0))
        ctx.table.check(
            name,
            "RSS at the end <= 2x after start-up",
            rss_end <= 2 * rss_start,
            f"{rss_start} -> {rss_end} KiB",
        )
        # a bad signature that changed anything would cancel a run, add a comment or a label
        tally.record(ctx.table, name)
    finally:
        done.set()
        ground.stop()


def _bad_request(
    rng: random.Random, ctx: Context, ground: Ground, wrong_key: SigningKey, runs: list[Run]
) -> tuple[str, bytes, dict[str, str]]:
    """One request that must change nothing: mis-signed, malformed or mutated."""
    run_id = runs[-1].run_id if runs else "r20260101-aaaaaa"
    if rng.random() < 0.5:
        return "/discord", *_bad_interaction(rng, ctx.key, wrong_key, run_id)
    return "/github/webhook", *_bad_delivery(rng, ctx, runs)


def _bad_interaction(
    rng: random.Random, key: SigningKey, wrong_key: SigningKey, run_id: str
) -> tuple[bytes, dict[str, str]]:
    harmful = [
        json.loads(interaction(name="cancel", run_id=run_id)),
        json.loads(interaction(name="plan")),
        {
            **json.loads(interaction(kind=3)),
            "data": {"custom_id": f"cancel:{run_id}", "component_type": 2},
        },
        {
            **json.loads(interaction(kind=3)),
            "data": {"custom_id": f"ship-confirm:{run_id}", "component_type": 2},
        },
    ]
    document = rng.choice(harmful)
    body = json.dumps(document).encode()
    kind = rng.randrange(7)
    if kind == 0:  # signed with another key
        return body, discord_headers(wrong_key, body)
    if kind == 1:  # signed, then one byte changed
        headers = discord_headers(key, body)
        at = rng.randrange(len(body))
        return body[:at] + bytes([body[at] ^ (1 << rng.randrange(8))]) + body[at + 1 :], headers
    if kind == 2:  # no signature
        return body, {"content-type": "application/json"}
    if kind == 3:  # garbage signature and timestamp
        return body, {
            "x-signature-ed25519": rng.choice(["zz", "", "0" * 128, "ab" * 70]),
            "x-signature-timestamp": rng.choice(["", "-1", "9" * 30, "nan", "1e9"]),
        }
    if kind == 4:  # a timestamp from long ago, correctly signed (a replay)
        return body, discord_headers(key, body, timestamp=str(int(time.time()) - 86_400))
    if kind == 5:  # signed, malformed: truncated or random bytes
        junk = body[: rng.randrange(len(body))] if rng.random() < 0.5 else rng.randbytes(64)
        return junk, discord_headers(key, junk)
    # signed, well-formed JSON of the wrong shape (types swapped, fields missing)
    mutated = _mutate(rng, json.loads(interaction(name="status")))
    raw = json.dumps(mutated).encode()
    return raw, discord_headers(key, raw)


def _bad_delivery(
    rng: random.Random, ctx: Context, runs: list[Run]
) -> tuple[bytes, dict[str, str]]:
    from valine.testing.examples import check_suite_event, pr_event

    pr, sha = (0, "f" * 40)
    if runs and runs[-1].prs:
        pr, sha = rng.choice(list(runs[-1].prs.values()))
    harmful = [
        ("pull_request", pr_event(ctx.examples, "closed", repo=REPO, number=pr or 1, head_sha=sha)),
        (
            "check_suite",
            check_suite_event(
                ctx.examples,
                "completed",
                repo=REPO,
                head_sha=sha,
                conclusion="failure",
                pulls=[pr or 1],
            ),
        ),
    ]
    event, payload = rng.choice(harmful)
    body = json.dumps(payload).encode()
    kind = rng.randrange(5)
    if kind == 0:  # another secret
        return body, github_headers(body, event, secret="not-the-secret")
    if kind == 1:  # signed, then one byte changed
        headers = github_headers(body, event)
        at = rng.randrange(len(body))
        return body[:at] + bytes([body[at] ^ (1 << rng.randrange(8))]) + body[at + 1 :], headers
    if kind == 2:  # no or garbage signature
        headers = github_headers(body, event)
        headers["X-Hub-Signature-256"] = rng.choice(
            ["", "sha256=", "sha1=00", "sha256=" + "0" * 64]
        )
        return body, headers
    if kind == 3:  # signed garbage
        junk = body[: rng.randrange(len(body))] if rng.random() < 0.5 else rng.randbytes(64)
        return junk, github_headers(junk, event)
    # signed, well-formed JSON of the wrong shape, about a pull request no run knows
    other = json.loads(json.dumps(payload))
    if "pull_request" in other:
        other["pull_request"]["number"] = other["number"] = 900_000 + rng.randrange(1000)
    else:
        other["check_suite"]["head_sha"] = "e" * 40
        other["check_suite"]["pull_requests"] = []
    raw = json.dumps(_mutate(rng, other)).encode()
    return raw, github_headers(raw, event)


def _mutate(rng: random.Random, document: Any, depth: int = 0) -> Any:
    """A random structural mutation: a field dropped, retyped, or replaced by junk."""
    if isinstance(document, dict) and document and depth < 4:
        key = rng.choice(list(document))
        choice = rng.randrange(4)
        copy = dict(document)
        if choice == 0:
            del copy[key]
        elif choice == 1:
            copy[key] = rng.choice([None, 0, -1, "", [], {}, "x" * 5000, 1e308, True])
        else:
            copy[key] = _mutate(rng, copy[key], depth + 1)
        return copy
    if isinstance(document, list) and document:
        return [_mutate(rng, rng.choice(document), depth + 1)] * rng.randrange(3)
    return rng.choice([None, 0, "", [], {}, "\u0000", -(2**70), "🚀"])


def aws_local() -> Any:
    """The tests' DynamoDB Local and moto launcher (``tests/aws_local.py``)."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import aws_local as module

    return module


def aws_environment(dynamodb: str, sqs: str, prefix: str) -> dict[str, str]:
    """``valine serve`` on DynamoDB Local tables and moto SQS queues named by ``prefix``."""
    local = aws_local()
    CREDENTIALS, client = local.CREDENTIALS, local.client  # noqa: N806 - the module's names
    from valine.runtime.aws_tables import table_definitions

    ddb = client("dynamodb", dynamodb)
    for definition in table_definitions(prefix):
        ddb.create_table(**definition)
    sqs_client = client("sqs", sqs)
    dead = sqs_client.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
    queue = sqs_client.create_queue(QueueName=prefix)["QueueUrl"]
    return {
        **CREDENTIALS,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
        "AWS_ENDPOINT_URL_SQS": sqs,
        "VALINE_STORE": f"dynamodb://{prefix}",
        "VALINE_QUEUE_URL": queue,
        "VALINE_DEAD_LETTER_URL": dead,
    }


def environment_flag(name: str) -> bool:
    """True when the environment variable is set to something other than 0 or empty."""
    return os.environ.get(name, "") not in ("", "0")
