"""What every use case shares: job kinds, limits, the actor, and the base class.

``UseCaseBase`` holds the ports and the helpers more than one concern uses: the
conditional save (``_update``), recording a step or a failure on a task, the label
ids, and the coalesced notification of a run's message.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from valine.core.errors import ClaimHeld, GitHubUnavailable, RunConflict
from valine.core.models import Run, Task, apply_task_event
from valine.core.policy import Policy
from valine.core.states import TASK_TERMINAL, RunState, StampedStep, Step, TaskEvent, TaskState
from valine.logs import get_logger
from valine.ports import GITHUB_EVENT_JOB, Clock, Discord, GitHub, GitHubError, JobQueue, RunStore
from valine.usecases.registry import Registry

if TYPE_CHECKING:
    from valine.core.events import Delivery, GitHubEvent

log = get_logger("valine.usecases")

#: Discord interaction tokens live 15 minutes; stop using one a little before.
TOKEN_LIFETIME = 14 * 60
#: At most one edit of a run's message per this many seconds (the last state always shown).
NOTIFY_WINDOW = 3.0
#: How many ids of the deliveries that changed a run the run remembers.
APPLIED = 64
SAVE_ATTEMPTS = 8

# Job kinds.
PLAN, START, DISPATCH, NOTIFY, SHIP, CANCEL, RELEASE, GITHUB_EVENT = (
    "plan",
    "start_run",
    "dispatch_task",
    "notify",
    "ship_run",
    "cancel_run",
    "release_run",
    GITHUB_EVENT_JOB,
)
RECONCILE = "reconcile"
DEPLOY = "deploy_run"
SCHEDULE = "schedule"
#: The background jobs, by kind: each concern registers its own (``@jobs.register(PLAN)``).
#: The queued webhook delivery (``GITHUB_EVENT``) is read by ``github/`` and handed to
#: ``Orchestrator.on_delivery`` by the runtime.
jobs: Registry[str] = Registry("job kind")
#: What each kind of GitHub news (:mod:`valine.core.events`) does, registered the same way,
#: by the event's class name: a command never loads the webhook side (the events, the
#: tracking rules) to register its handlers (docs/benchmarks.md, the Lambda cold start).
github_events: Registry[str] = Registry("GitHub event")
#: How often the local runtime re-reads the active run's open pull requests (EventBridge
#: does it on AWS).
RECONCILE_EVERY = 300.0
#: How long a run (or a deployment) may wait on its own job before the reconcile
#: enqueues it again.
STALL_AFTER = 180.0


def to_release(run: Run) -> list[Task]:
    """The tasks whose issues the run relabelled ``in-progress`` and has not put back:
    every one it labelled (or was labelling) that was neither merged nor skipped (a
    person closed the issue or took its label off: their choice stands)."""
    return [
        t
        for t in run.tasks
        if (Step.LABELLED in t.steps_done or labelling_since(t) > 0)
        and not {Step.RELEASED, Step.NOT_RELEASED} & set(t.steps_done)
        and t.state not in (TaskState.MERGED, TaskState.SKIPPED)
    ]


def labelling_since(task: Task) -> float:
    """When the start job claimed this task's relabelling (0: never, or it finished)."""
    if Step.LABELLED in task.steps_done:
        return 0.0
    return max(StampedStep.LABEL_CLAIM.times(task.steps_done), default=0.0)


def release_key(run: Run) -> str:
    """The dedupe key of a failed run's release job (one per run)."""
    return f"{RELEASE}:{run.run_id}"


def incident(what: str, detail: object) -> str:
    """Log ``detail`` -- exception text, API paths, ARNs -- under a fresh short id; the id.

    What reaches Discord is ``what`` in the user's terms and this id (``ref``), never the
    detail: whoever runs the service finds it in the log by the id.
    """
    ref = secrets.token_hex(4)
    log.error("%s [ref %s]: %s", what, ref, detail, extra={"ref": ref})
    return ref


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked, as Discord tells us."""

    user_id: str
    name: str
    roles: tuple[str, ...] = ()

    @classmethod
    def of(cls, interaction: Mapping[str, Any]) -> Actor:
        """The actor of an interaction's fields."""
        return cls(
            str(interaction["user_id"]),
            str(interaction.get("user_name", "")),
            tuple(str(r) for r in interaction.get("roles") or ()),
        )


class DispatchInProgress(ClaimHeld):
    """Another attempt holds a fresh claim on a dispatch or a relabelling: the job waits
    (put back, no attempt spent) until the claim expires at ``until``."""


#: After this many seconds a claim whose attempt never confirmed is considered dead.
CLAIM_TIMEOUT = 120.0


def wait_for_live_claim(claimed_at: float, now: float, what: str) -> None:
    """Raise :class:`DispatchInProgress` while a claim made at ``claimed_at`` may still be
    its attempt's (younger than ``CLAIM_TIMEOUT``); return once it is dead."""
    if now - claimed_at < CLAIM_TIMEOUT:
        raise DispatchInProgress(what, until=claimed_at + CLAIM_TIMEOUT)


def dispatch_key(run_id: str, task: Task) -> str:
    """The dedupe key of a task's dispatch job: one per hand-over (the first, each retry)."""
    key = f"{DISPATCH}:{run_id}:{task.issue_number}"
    return key if not task.retries else f"{key}:retry{task.retries}"


def _with_task(run: Run, task: Task) -> Run:
    tasks = tuple(task if t.issue_number == task.issue_number else t for t in run.tasks)
    return replace(run, tasks=tasks)


class UseCaseBase:
    """The ports every use case works over, and the helpers several of them share."""

    def __init__(
        self,
        *,
        repo: str,
        policy: Policy,
        store: RunStore,
        queue: JobQueue,
        github: Callable[[], GitHub],
        discord: Callable[[], Discord],
        clock: Clock,
        entropy: Callable[[], str],
        web_url: str = "https://github.com",
        notify_window: float = NOTIFY_WINDOW,
        served: tuple[str, ...] = (),
        channels: Mapping[str, str] | None = None,
    ) -> None:
        self.repo = repo
        self.policy = policy
        self.store = store
        self.queue = queue
        self._github = github
        self._discord = discord
        self.clock = clock
        self._entropy = entropy
        self.web_url = web_url
        self.notify_window = notify_window
        #: Every repository the deployment serves, this one included (``/status`` lists
        #: their active runs; run-id autocomplete offers theirs after this one's).
        self.served = served or ((repo,) if repo else ())
        #: The channel of each served repository that has one, by lower-case name (a
        #: command from a channel no repository names says where each one is planned).
        self.channels: Mapping[str, str] = channels or {}

    @property
    def github(self) -> GitHub:
        """The GitHub port, built on first use."""
        return self._github()

    @property
    def discord(self) -> Discord:
        """The Discord port, built on first use."""
        return self._discord()

    def notify(self, run: Run) -> None:
        """Schedule what follows a saved change: an edit of the run's message, coalesced
        to one per NOTIFY_WINDOW, and for a run that ended ``failed`` the job that puts
        its issues back to ready (once; the reconcile carries it on if it is lost)."""
        if run.state is RunState.FAILED and to_release(run):
            self.queue.enqueue(RELEASE, {"run_id": run.run_id}, dedupe_key=release_key(run))
        now = self.clock.now()
        if self.notify_window <= 0:
            self.queue.enqueue(NOTIFY, {"run_id": run.run_id})
            return
        window = int(now // self.notify_window)
        delay = (window + 1) * self.notify_window - now
        self.queue.enqueue(
            NOTIFY,
            {"run_id": run.run_id},
            dedupe_key=f"{NOTIFY}:{run.run_id}:{self.notify_window}:{window}",
            delay=delay,
        )

    def apply_news(self, event: GitHubEvent, delivery: Delivery) -> None:
        """Hand a domain event (a webhook's, or what the reconcile read) to the handler
        registered for its kind (``@github_events.register``); none: no news."""
        handler = github_events.get(self, type(event).__name__)
        if handler is not None:
            handler(event, delivery)

    def _update(
        self, run_id: str, decide: Callable[[Run], Run | None], *, touch: bool = True
    ) -> Run | None:
        """Load, decide, save conditionally; on a lost race, reload and decide again.

        ``touch=False`` keeps ``updated_at``: for bookkeeping of what was shown on Discord
        (a message id, an announcement's claim, the run's thread), which is no progress of
        the run -- the reconcile measures a stalled run from ``updated_at``.
        """
        for _ in range(SAVE_ATTEMPTS):
            run = self.store.get_run(run_id)
            updated = decide(run)
            if updated is None:
                return None
            if touch:
                updated = replace(updated, updated_at=self.clock.now())
            try:
                return self.store.save_run(updated)
            except RunConflict:
                continue
        raise RunConflict(f"run {run_id} kept changing; gave up after {SAVE_ATTEMPTS} tries")

    def _note(self, run_id: str, decide: Callable[[Run], Run | None]) -> Run | None:
        """:meth:`_update` for Discord bookkeeping: ``updated_at`` stays as it was."""
        return self._update(run_id, decide, touch=False)

    def _mark_step(
        self, run_id: str, number: int, step: str, event: TaskEvent | None = None, **fields: Any
    ) -> None:
        now = self.clock.now()

        def mark(run: Run) -> Run | None:
            task = run.task(number)
            if step in task.steps_done:
                return None
            run = _with_task(run, replace(task, steps_done=(*task.steps_done, step), **fields))
            if event is not None and run.task(number).state is TaskState.PENDING:
                run = apply_task_event(run, number, event, now)
            return run

        saved = self._update(run_id, mark)
        if saved is not None and event is not None:
            self.notify(saved)

    def _fail_task(self, run_id: str, number: int, reason: str) -> None:
        from valine.core import tracking

        now = self.clock.now()
        fail_run = self.policy.on_task_failure == "fail_run"

        def fail(run: Run) -> Run | None:
            if run.task(number).state in TASK_TERMINAL:
                return None
            run = apply_task_event(run, number, TaskEvent.FAIL, now, reason=reason)
            return tracking.settle(run, now, fail_run)

        log.error("task #%d of run %s failed: %s", number, run_id, reason)
        saved = self._update(run_id, fail)
        if saved is not None:
            self.notify(saved)

    def _label_ids(self, run_id: str, names: list[str]) -> dict[str, str]:
        """Node ids of ``names``, creating the labels the repository lacks (once)."""
        run = self.store.get_run(run_id)
        missing = [n for n in names if f"label:{n}" not in run.github_ids]
        if missing:
            created = self._find_or_create_labels(run.github_ids["repository"], missing)
            run = (
                self._update(
                    run_id,
                    lambda r: replace(
                        r,
                        github_ids={
                            **r.github_ids,
                            **{f"label:{n}": i for n, i in created.items()},
                        },
                    ),
                )
                or run
            )
        return {n: run.github_ids[f"label:{n}"] for n in names}

    def _find_or_create_labels(self, repository_id: str, names: list[str]) -> dict[str, str]:
        """Node ids of ``names``: labels that exist (a person made them since the plan, or
        another process did) are looked up and used; only the others are created."""
        try:
            created = dict(self.github.create_labels(self.repo, repository_id, names))
            log.info("created label(s) %s in %s", ", ".join(names), self.repo)
            return created
        except (GitHubError, GitHubUnavailable):
            # "Name has already been taken" (made by a person, or by this very request
            # before its answer was lost): look the labels up and use them.
            found = dict(self.github.repository_ids(self.repo, names).labels)
            if any(n not in found for n in names):
                raise
            return found
