"""The use cases: plan, approve, execute, track, ship, cancel, status.

Each one follows the same line: load -> let the core decide -> save (conditionally on
the version read) -> enqueue or perform the actions. Two kinds of entry point:

* **Interaction handlers** (``answer_command``, ``press_button``) run inside Discord's
  3-second window: they read and write the store and enqueue jobs, and never call
  GitHub. What needs GitHub is a job.
* **Job handlers** (``JOB_HANDLERS``) run on the worker pool, at least once each. Every
  one is idempotent: a side effect on GitHub is recorded on its task (``steps_done``) in
  the same conditional write that moves the task on, and a step already recorded is
  never performed again. The workflow dispatch -- the one effect that must not happen
  twice -- is *claimed* in a conditional write before it is sent, so two copies of a job
  racing each other cannot both send it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from valine.core import render, tracking
from valine.core.authz import decide
from valine.core.commands import Command
from valine.core.errors import ActiveRunExists, GitHubUnavailable, NotFound, RunConflict
from valine.core.models import (
    PullRequest,
    Run,
    Task,
    apply_run_event,
    apply_task_event,
    new_run_id,
)
from valine.core.planner import plan_tasks
from valine.core.policy import Policy
from valine.core.states import TASK_TERMINAL, RunEvent, RunState, TaskEvent, TaskState
from valine.github.webhooks import JOB_KIND as WEBHOOK_JOB
from valine.logs import log_context
from valine.ports import (
    AuditEntry,
    Clock,
    Discord,
    DiscordError,
    GitHub,
    GitHubError,
    HeadMoved,
    IssueUpdate,
    JobQueue,
    MergeQueueRequired,
    RunStore,
)

log = logging.getLogger("valine.service")

#: Interaction callback types.
CHANNEL_MESSAGE, DEFERRED, UPDATE_MESSAGE = 4, 5, 7
EPHEMERAL = 1 << 6
#: Discord interaction tokens live 15 minutes; stop using one a little before.
TOKEN_LIFETIME = 14 * 60
#: At most one edit of a run's message per this many seconds (the last state always shown).
NOTIFY_WINDOW = 3.0
#: How many ids of the deliveries that changed a run the run remembers.
APPLIED = 64
SAVE_ATTEMPTS = 8

# Job kinds.
PLAN, START, DISPATCH, NOTIFY, SHIP, CANCEL, GITHUB_EVENT = (
    "plan",
    "start_run",
    "dispatch_task",
    "notify",
    "ship_run",
    "cancel_run",
    WEBHOOK_JOB,
)
RECONCILE = "reconcile"
#: How often the local runtime re-reads the active run's open pull requests (EventBridge
#: does it on AWS).
RECONCILE_EVERY = 300.0


def ephemeral(content: str) -> dict[str, Any]:
    """An interaction answer only the invoking user sees."""
    return {
        "type": CHANNEL_MESSAGE,
        "data": {"content": content, "flags": EPHEMERAL, "allowed_mentions": {"parse": []}},
    }


def _public(content: str) -> dict[str, Any]:
    return {
        "type": CHANNEL_MESSAGE,
        "data": {"content": content, "allowed_mentions": {"parse": []}},
    }


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


class Orchestrator:
    """The product's use cases over the ports."""

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

    @property
    def github(self) -> GitHub:
        """The GitHub port, built on first use."""
        return self._github()

    @property
    def discord(self) -> Discord:
        """The Discord port, built on first use."""
        return self._discord()

    def job_handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        """Every background job this orchestrator runs, by kind."""
        return {
            PLAN: self.run_plan_job,
            START: self.run_start_job,
            DISPATCH: self.run_dispatch_job,
            NOTIFY: self.run_notify_job,
            SHIP: self.run_ship_job,
            CANCEL: self.run_cancel_job,
            RECONCILE: self.run_reconcile_job,
            GITHUB_EVENT: self.run_github_event_job,
        }

    # ------------------------------------------------------------------ interactions

    def answer_command(self, interaction: Mapping[str, Any], command: Command) -> dict[str, Any]:
        """Answer a schema-checked slash command within Discord's 3 seconds."""
        actor = Actor.of(interaction)
        run_id = str(command.options.get("run_id", "")).strip()
        if command.name == "plan":
            return self.request_plan(interaction, actor)
        if command.name == "status":
            return self.status(run_id or None)
        if command.name == "help":
            return {
                "type": CHANNEL_MESSAGE,
                "data": render.help_message(
                    self.repo,
                    self.policy.executor.kind,
                    self.policy.labels.ready,
                    self.policy.permissions,
                ),
            }
        action = {"approve": self.approve, "ship": self.ship, "cancel": self.cancel}
        return action[command.name](run_id, actor)

    def press_button(self, interaction: Mapping[str, Any], custom_id: str) -> dict[str, Any]:
        """Answer a button press (``action:run_id``) through the same use cases.

        Ship asks first: its button answers with an ephemeral confirmation, whose
        Confirm button (``ship-confirm:run_id``) ships.
        """
        action, _, run_id = custom_id.partition(":")
        handlers = {
            "approve": self.approve,
            "ship": self.confirm_ship,
            "ship-confirm": self.ship,
            "cancel": self.cancel,
        }
        if action not in handlers or not run_id:
            return ephemeral("This button is not one of Valine's (or is from an old version).")
        return handlers[action](run_id, Actor.of(interaction))

    def _refusal(self, actor: Actor, action: str, run: Run | None) -> dict[str, Any] | None:
        """None if ``actor`` may do ``action``; else the audited, ephemeral refusal."""
        decision = decide(
            self.policy.permissions,
            action,
            actor.user_id,
            actor.roles,
            planned_by=run.created_by if run else None,
        )
        if decision.allowed:
            return None
        self._audit(actor, action, "refused: not permitted", run.run_id if run else None)
        return ephemeral(f"⛔ {decision.reason}")

    def confirm_ship(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """The Ship button: check everything ``/ship`` checks, then ask for confirmation."""
        try:
            run = self.store.get_run(run_id)
        except NotFound:
            return ephemeral(f"There is no run `{run_id}`. `/status` lists the recent runs.")
        refusal = self._refusal(actor, "ship", run)
        if refusal is not None:
            return refusal
        allowed = (RunState.READY_TO_SHIP, RunState.SHIP_FAILED)
        if run.state not in allowed:
            return ephemeral(_wrong_state(run, "ship", allowed))
        shippable = [t for t in run.tasks if t.state is TaskState.CHECKS_PASSED]
        prs = ", ".join(f"#{t.pr_number}" for t in shippable)
        return {
            "type": CHANNEL_MESSAGE,
            "data": {
                "content": f"Ship run `{run_id}`? This merges {len(shippable)} pull request(s) "
                f"({prs}) into `{self.repo}` and closes their issues.",
                "flags": EPHEMERAL,
                "components": [
                    {
                        "type": 1,
                        "components": [
                            {
                                "type": 2,
                                "style": render.BUTTON_SUCCESS,
                                "label": "Confirm ship",
                                "custom_id": f"ship-confirm:{run_id}",
                            }
                        ],
                    }
                ],
                "allowed_mentions": {"parse": []},
            },
        }

    def request_plan(self, interaction: Mapping[str, Any], actor: Actor) -> dict[str, Any]:
        """``/plan``: show the active run, or defer and plan in a job."""
        refusal = self._refusal(actor, "plan", None)
        if refusal is not None:
            return refusal
        active = self.store.active_run(self.repo)
        if active is not None:
            message = render.run_message(active, self.web_url)
            message["content"] = (
                f"Run `{active.run_id}` is still {active.state.value}: "
                "finish or `/cancel` it before planning another."
            )
            return {"type": CHANNEL_MESSAGE, "data": message}
        job = {
            "interaction": dict(interaction),
            "actor": actor.user_id,
            "received_at": self.clock.now(),
        }
        self.queue.enqueue(PLAN, job, dedupe_key=f"interaction:{interaction['id']}")
        self._audit(actor, "plan", "accepted", None)
        return {"type": DEFERRED}

    def approve(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/approve``: planned -> approved, then a job starts the tasks."""
        now = self.clock.now()

        def decide(run: Run) -> Run:
            return apply_run_event(
                run, RunEvent.APPROVE, now, approved_by=actor.user_id, approved_at=now
            )

        return self._transition_from_discord(
            run_id,
            actor,
            action="approve",
            allowed=RunState.PLANNED,
            decide=decide,
            job_kind=START,
            announcement="✅ Run `{id}` approved by <@{user}>: handing {n} task(s) to the "
            "executor.",
        )

    def ship(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/ship``: ready_to_ship (or ship_failed) -> shipping, then a job merges."""
        now = self.clock.now()

        def decide(run: Run) -> Run:
            return apply_run_event(run, RunEvent.SHIP, now, reason=None)

        return self._transition_from_discord(
            run_id,
            actor,
            action="ship",
            allowed=(RunState.READY_TO_SHIP, RunState.SHIP_FAILED),
            decide=decide,
            job_kind=SHIP,
            announcement="🚀 Shipping run `{id}` for <@{user}>: merging {n} pull request(s).",
        )

    def cancel(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """``/cancel``: the run ends and its issues go back to ready (in a job)."""
        now = self.clock.now()

        def decide(run: Run) -> Run:
            return apply_run_event(
                run,
                RunEvent.CANCEL,
                now,
                finished_at=now,
                reason=f"cancelled by <@{actor.user_id}>",
            )

        allowed = (RunState.PLANNED, RunState.APPROVED, RunState.EXECUTING, RunState.READY_TO_SHIP)
        return self._transition_from_discord(
            run_id,
            actor,
            action="cancel",
            allowed=allowed,
            decide=decide,
            job_kind=CANCEL,
            announcement="🛑 Run `{id}` cancelled by <@{user}>; its issues go back to ready.",
        )

    def _transition_from_discord(
        self,
        run_id: str,
        actor: Actor,
        *,
        action: str,
        allowed: RunState | tuple[RunState, ...],
        decide: Callable[[Run], Run],
        job_kind: str,
        announcement: str,
    ) -> dict[str, Any]:
        allowed_states = allowed if isinstance(allowed, tuple) else (allowed,)
        try:
            run = self.store.get_run(run_id)
        except NotFound:
            self._audit(actor, action, "refused: no such run", run_id)
            return ephemeral(f"There is no run `{run_id}`. `/status` lists the recent runs.")
        refusal = self._refusal(actor, action, run)
        if refusal is not None:
            return refusal
        if run.state not in allowed_states:
            self._audit(actor, action, f"refused: run is {run.state.value}", run_id)
            return ephemeral(_wrong_state(run, action, allowed_states))
        try:
            saved = self.store.save_run(decide(run))
        except RunConflict:
            current = self.store.get_run(run_id)
            self._audit(actor, action, "refused: lost a race", run_id)
            return ephemeral(
                f"Someone else changed run `{run_id}` at the same moment; it is "
                f"now {current.state.value}. {_wrong_state(current, action, ())}"
            )
        self._audit(actor, action, "ok", run_id)
        self.queue.enqueue(
            job_kind, {"run_id": run_id}, dedupe_key=f"{job_kind}:{run_id}:{saved.version}"
        )
        self.notify(saved)
        shippable = [t for t in saved.tasks if t.state is not TaskState.SKIPPED]
        text = announcement.format(id=run_id, user=actor.user_id, n=len(shippable))
        return _public(text)

    def status(self, run_id: str | None) -> dict[str, Any]:
        """``/status``: one run in detail, or the active and recent runs (no GitHub call)."""
        if run_id:
            try:
                run = self.store.get_run(run_id)
            except NotFound:
                return ephemeral(f"There is no run `{run_id}`.")
            message = render.run_message(run, self.web_url)
            message["components"] = []
            message["flags"] = EPHEMERAL
            return {"type": CHANNEL_MESSAGE, "data": message}
        active = self.store.active_run(self.repo)
        recent = self.store.recent_runs(self.repo, limit=5)
        return {"type": CHANNEL_MESSAGE, "data": render.status_list_message(active, recent)}

    def run_id_choices(self, typed: str, limit: int = 25) -> list[str]:
        """Run ids matching what the user typed: the active run first, then the newest."""
        active = self.store.active_run(self.repo)
        recent = self.store.recent_runs(self.repo, limit=limit)
        ordered = ([active] if active else []) + [
            r for r in recent if not active or r.run_id != active.run_id
        ]
        typed = typed.strip().lower()
        return [r.run_id for r in ordered if typed in r.run_id.lower()][:limit]

    def _audit(self, actor: Actor, action: str, outcome: str, run_id: str | None) -> None:
        self.store.append_audit(
            AuditEntry(
                at=self.clock.now(),
                actor=actor.user_id,
                action=action,
                outcome=outcome,
                run_id=run_id,
            )
        )

    # ------------------------------------------------------------------ jobs: planning

    def run_plan_job(self, job: dict[str, Any]) -> None:
        """Read the ready issues, store a planned run, and turn the deferred answer into it."""
        interaction = job["interaction"]
        discord_ref = {
            "application_id": str(interaction["application_id"]),
            "token": str(interaction["token"]),
            "interaction_id": str(interaction["id"]),
            "channel_id": str(interaction.get("channel_id") or ""),
            "token_at": str(job.get("received_at") or self.clock.now()),
        }
        active = self.store.active_run(self.repo)
        if active is None:
            try:
                active = self._create_planned_run(discord_ref, job.get("actor"))
            except GitHubUnavailable as exc:
                self._edit_original(
                    discord_ref,
                    {"content": (f"⏳ GitHub is not answering ({exc}); retrying in a moment…")},
                )
                raise
            except (GitHubError, NotFound) as exc:
                self._edit_original(
                    discord_ref,
                    {
                        "content": (
                            f"❌ Could not read the issues of `{self.repo}`: {exc}. Check "
                            "GITHUB_REPOSITORY and that the token can read the repository's issues."
                        )
                    },
                )
                return
        if active is None:
            self._edit_original(
                discord_ref,
                {
                    "content": f"No open issues labelled `{self.policy.labels.ready}` in "
                    f"`{self.repo}` (without a blocking label): nothing to plan."
                },
            )
            return
        message = render.run_message(active, self.web_url)
        if active.discord.get("interaction_id") != discord_ref["interaction_id"]:
            message["content"] = f"Run `{active.run_id}` is already active."
        self._edit_original(discord_ref, message)

    def _create_planned_run(self, discord_ref: dict[str, str], actor: str | None) -> Run | None:
        issues = self.github.list_ready_issues(self.repo, self.policy.labels.ready)
        tasks = plan_tasks(issues, self.policy.labels, self.policy.planner)
        if not tasks:
            return None
        github_ids = self._read_github_ids()
        now = self.clock.now()
        for _ in range(3):  # a run id has 6 random characters a day: a clash is rare
            run = Run(
                run_id=new_run_id(now, self._entropy()),
                repo=self.repo,
                created_at=now,
                updated_at=now,
                tasks=tasks,
                created_by=actor,
                discord=discord_ref,
                github_ids=github_ids,
            )
            try:
                created = self.store.create_run(run)
            except ActiveRunExists:
                return self.store.active_run(self.repo)
            except RunConflict:
                continue
            log.info("planned run %s with %d task(s)", created.run_id, len(tasks))
            return created
        raise RunConflict("could not find a free run id in 3 tries")

    def _edit_original(self, ref: Mapping[str, str], message: dict[str, Any]) -> None:
        self.discord.edit_original(ref["application_id"], ref["token"], message)

    # ------------------------------------------------------------------ jobs: execution

    def _read_github_ids(self) -> dict[str, str]:
        """Node ids of the repository, the workflow's labels and the assignee (1 request)."""
        labels = self.policy.labels
        executor = self.policy.executor
        logins = [executor.assignee] if executor.kind == "assign" and executor.assignee else []
        found = self.github.repository_ids(
            self.repo, [labels.ready, labels.in_progress, labels.shipped], logins
        )
        ids = {"repository": found.repository}
        ids.update({f"label:{name}": node for name, node in found.labels.items()})
        ids.update({f"user:{login}": node for login, node in found.users.items()})
        return ids

    def _label_ids(self, run_id: str, names: list[str]) -> dict[str, str]:
        """Node ids of ``names``, creating the labels the repository lacks (once)."""
        run = self.store.get_run(run_id)
        missing = [n for n in names if f"label:{n}" not in run.github_ids]
        if missing:
            created = self.github.create_labels(run.github_ids["repository"], missing)
            log.info("created label(s) %s in %s", ", ".join(missing), self.repo)
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

    def run_start_job(self, job: dict[str, Any]) -> None:
        """approved -> executing: relabel and comment every issue in one GraphQL request,
        then hand each task to the executor (a workflow dispatch job per task)."""
        run_id = str(job["run_id"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state not in (RunState.APPROVED, RunState.EXECUTING):
                return  # cancelled meanwhile
            todo = [
                t
                for t in run.tasks
                if t.state not in TASK_TERMINAL and "labelled" not in t.steps_done
            ]
            if todo:
                self._label_and_comment(run, todo)
            now = self.clock.now()
            saved = self._update(
                run_id,
                lambda r: (
                    apply_run_event(r, RunEvent.START, now)
                    if r.state is RunState.APPROVED
                    else None
                ),
            )
            if self.policy.executor.kind == "workflow":
                for task in self.store.get_run(run_id).tasks:
                    if task.state is TaskState.PENDING:
                        self.queue.enqueue(
                            DISPATCH,
                            {"run_id": run_id, "issue": task.issue_number},
                            dedupe_key=f"{DISPATCH}:{run_id}:{task.issue_number}",
                        )
            if saved is not None:
                self.notify(saved)

    def _label_and_comment(self, run: Run, todo: list[Task]) -> None:
        labels = self.policy.labels
        executor = self.policy.executor
        ids = self._label_ids(run.run_id, [labels.ready, labels.in_progress])
        assignees: tuple[str, ...] = ()
        if executor.kind == "assign":
            user = run.github_ids.get(f"user:{executor.assignee}")
            if user is None:
                for task in todo:
                    self._fail_task(
                        run.run_id,
                        task.issue_number,
                        f"no GitHub user {executor.assignee!r} to assign",
                    )
                return
            assignees = (user,)
        comment = _dispatch_comment(run, executor.kind)
        updates = [
            IssueUpdate(
                t.node_id,
                add_labels=(ids[labels.in_progress],),
                remove_labels=(ids[labels.ready],),
                assignees=assignees,
                comment=comment,
            )
            for t in todo
        ]
        try:
            self.github.update_issues(updates)
        except GitHubError as exc:
            for task in todo:
                self._fail_task(run.run_id, task.issue_number, f"relabelling failed: {exc}")
            return
        hand_over = executor.kind != "workflow"  # a label or an assignee is the hand-over
        now = self.clock.now()
        numbers = {t.issue_number for t in todo}

        def mark(current: Run) -> Run:
            for task in current.tasks:
                if task.issue_number not in numbers or "labelled" in task.steps_done:
                    continue
                new_labels = tuple(n for n in task.labels if n != labels.ready)
                new_labels += (labels.in_progress,)
                current = _with_task(
                    current,
                    replace(
                        task,
                        labels=new_labels,
                        steps_done=(*task.steps_done, "labelled", "commented"),
                    ),
                )
                if hand_over and task.state is TaskState.PENDING:
                    current = apply_task_event(current, task.issue_number, TaskEvent.DISPATCH, now)
            return current

        self._update(run.run_id, mark)

    def run_dispatch_job(self, job: dict[str, Any]) -> None:
        """Dispatch the workflow for one task, at most once."""
        run_id, number = str(job["run_id"]), int(job["issue"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state not in (RunState.APPROVED, RunState.EXECUTING):
                return  # cancelled or failed meanwhile
            task = run.task(number)
            if task.state in TASK_TERMINAL or "dispatched" in task.steps_done:
                return
            try:
                self._dispatch_workflow_once(run_id, number)
            except GitHubError as exc:
                self._fail_task(run_id, number, f"workflow dispatch failed: {exc}")

    def _dispatch_workflow_once(self, run_id: str, number: int) -> None:
        """Send the workflow dispatch at most once, even if this job runs twice.

        The attempt first *claims* the dispatch in a conditional write; only the winner
        sends. If GitHub's answer is lost (timeout, 5xx) the dispatch may or may not have
        happened: it is not sent again, and the task says so.
        """
        now = self.clock.now()
        claim = f"{CLAIM}{now}"

        def claim_it(run: Run) -> Run | None:
            task = run.task(number)
            if any(s.startswith(CLAIM) or s == "dispatched" for s in task.steps_done):
                return None
            return _with_task(run, replace(task, steps_done=(*task.steps_done, claim)))

        if self._update(run_id, claim_it) is None:
            self._resolve_earlier_claim(run_id, number, now)
            return
        executor = self.policy.executor
        try:
            self.github.dispatch_workflow(
                self.repo,
                str(executor.workflow),
                executor.ref,
                {"issue_number": str(number), "run_id": run_id},
            )
        except GitHubUnavailable as exc:
            if exc.request_sent:
                self._mark_step(
                    run_id,
                    number,
                    "dispatched",
                    event=TaskEvent.DISPATCH,
                    reason=_UNCONFIRMED.format(error=exc),
                )
                return
            self._update(
                run_id,
                lambda r: _with_task(
                    r,
                    replace(
                        r.task(number),
                        steps_done=tuple(s for s in r.task(number).steps_done if s != claim),
                    ),
                ),
            )
            raise  # nothing reached GitHub: the job is retried and claims again
        self._mark_step(run_id, number, "dispatched", event=TaskEvent.DISPATCH)

    def _resolve_earlier_claim(self, run_id: str, number: int, now: float) -> None:
        task = self.store.get_run(run_id).task(number)
        if "dispatched" in task.steps_done:
            return
        claimed_at = max(float(s[len(CLAIM) :]) for s in task.steps_done if s.startswith(CLAIM))
        if now - claimed_at < CLAIM_TIMEOUT:
            raise DispatchInProgress(f"#{number}: another attempt is dispatching; retry later")
        log.warning("dispatch of #%d was claimed at %s and never confirmed", number, claimed_at)
        self._mark_step(
            run_id,
            number,
            "dispatched",
            event=TaskEvent.DISPATCH,
            reason=_UNCONFIRMED.format(error="an earlier attempt stopped mid-way"),
        )

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

    # ------------------------------------------------------------------ jobs: tracking

    def run_github_event_job(self, job: dict[str, Any]) -> None:
        """Move tasks on from one webhook delivery; zero GitHub requests."""
        event, delivery_id, payload = job["event"], job["delivery_id"], job["payload"]
        with log_context(delivery_id=delivery_id):
            repo = ((payload.get("repository") or {}).get("full_name")) or ""
            if repo.lower() == self.repo.lower():
                self._apply_event(event, payload, delivery_id)

    def _apply_event(self, event: str, payload: dict[str, Any], delivery_id: str = "") -> None:
        """Apply one delivery to the active run, at most once.

        A job can run twice (at-least-once queues); applying an old ``synchronize`` again
        after newer events would undo them. So the ids of the deliveries that changed the
        run are kept in the run itself and written in the same conditional save.
        """
        run = self.store.active_run(self.repo)
        if run is None:
            return
        now = self.clock.now()
        fail_run = self.policy.on_task_failure == "fail_run"

        def decide(current: Run) -> Run | None:
            if delivery_id and delivery_id in current.applied:
                return None
            changes = tracking.changes_for(event, payload, current, self.policy.labels)
            updated = tracking.settle(tracking.apply_changes(current, changes, now), now, fail_run)
            if _same(updated, current):
                return None
            if delivery_id:
                updated = replace(updated, applied=(*current.applied, delivery_id)[-APPLIED:])
            return updated

        saved = self._update(run.run_id, decide)
        if (
            saved is not None
            and saved.state is RunState.SHIPPING
            and any(
                "queued" in t.steps_done
                and t.state is TaskState.MERGED
                and "shipped" not in t.steps_done
                for t in saved.tasks
            )
        ):  # the merge queue merged a PR: close its issue, maybe finish the run
            self.queue.enqueue(
                SHIP, {"run_id": saved.run_id}, dedupe_key=f"{SHIP}:{saved.run_id}:{saved.version}"
            )
        if saved is not None:
            log.info(
                "%s.%s moved run %s (%s)",
                event,
                payload.get("action", ""),
                saved.run_id,
                saved.state.value,
            )
            self.notify(saved)

    def run_reconcile_job(self, job: dict[str, Any]) -> None:
        """The periodic reconcile, as a job (the local runtime schedules it every few minutes)."""
        self.reconcile()

    def reconcile(self) -> int:
        """Re-read the active run's open pull requests: what a lost webhook would have said.

        For every task with a linked pull request and no final state, one ``get_pull``
        (GitHub economy: one request per open PR per reconcile). A PR that was merged,
        closed, or pushed to since the run last heard of it is fed through the same
        tracking as the ``pull_request`` delivery that would have reported it, so a lost
        webhook never strands a run. Check results are not re-read (the GitHub port has
        no call for them). Returns how many pull requests were read.
        """
        run = self.store.active_run(self.repo)
        if run is None:
            return 0
        read = 0
        with log_context(run_id=run.run_id):
            for task in run.tasks:
                if task.pr_number is None or task.state in TASK_TERMINAL:
                    continue
                try:
                    pull = self.github.get_pull(self.repo, task.pr_number)
                except (GitHubError, GitHubUnavailable, NotFound) as exc:
                    log.warning("reconcile could not read PR #%d: %s", task.pr_number, exc)
                    continue
                read += 1
                payload = _lost_pull_request_event(self.repo, pull, task.head_sha)
                if payload is not None:
                    log.info("reconcile: PR #%d %s", pull.number, payload["action"])
                    self._apply_event("pull_request", payload)
        return read

    # ------------------------------------------------------------------ jobs: shipping

    def run_ship_job(self, job: dict[str, Any]) -> None:
        """Merge every green PR at the SHA its checks passed on, then close the issues."""
        run_id = str(job["run_id"])
        with log_context(run_id=run_id):
            run = self.store.get_run(run_id)
            if run.state is not RunState.SHIPPING:
                return
            for task in run.tasks:
                if task.state is TaskState.CHECKS_PASSED and "queued" not in task.steps_done:
                    self._merge(run_id, task)
            run = self.store.get_run(run_id)
            merged = [
                t
                for t in run.tasks
                if t.state is TaskState.MERGED and "shipped" not in t.steps_done
            ]
            if merged:
                self._close_shipped_issues(run_id, merged)
            self._finish_ship(run_id)

    def _merge(self, run_id: str, task: Task) -> None:
        now = self.clock.now()
        assert task.pr_number is not None
        sha = str(task.checks_sha)
        try:
            self.github.merge_pull(self.repo, task.pr_number, sha, self.policy.merge_method)
        except HeadMoved:
            reason = (
                f"PR #{task.pr_number} head moved since its checks passed; "
                "not merged (the new push re-runs the checks)"
            )
        except MergeQueueRequired:
            self._enqueue(run_id, task, sha)
            return
        except GitHubError as exc:
            reason = f"PR #{task.pr_number} not merged: {exc.message}"
        else:
            self._update(
                run_id,
                lambda r: (
                    apply_task_event(r, task.issue_number, TaskEvent.MERGED, now, reason=None)
                    if r.task(task.issue_number).state is not TaskState.MERGED
                    else None
                ),
            )
            return
        log.warning("ship of run %s: %s", run_id, reason)
        self._update(
            run_id, lambda r: _with_task(r, replace(r.task(task.issue_number), reason=reason))
        )

    def _enqueue(self, run_id: str, task: Task, sha: str) -> None:
        """The branch requires a merge queue: queue the PR; its merge webhook finishes it."""
        assert task.pr_number is not None
        try:
            self.github.enqueue_pull(self.repo, task.pr_number, sha)
        except GitHubError as exc:
            reason = f"PR #{task.pr_number} could not join the merge queue: {exc.message}"
            self._update(
                run_id, lambda r: _with_task(r, replace(r.task(task.issue_number), reason=reason))
            )
            return
        self._mark_step(
            run_id,
            task.issue_number,
            "queued",
            reason=f"PR #{task.pr_number} is in the merge queue",
        )

    def _close_shipped_issues(self, run_id: str, merged: list[Task]) -> None:
        """Relabel ``shipped`` and close every merged task's issue in one request."""
        labels = self.policy.labels
        ids = self._label_ids(run_id, [labels.in_progress, labels.shipped])
        self.github.update_issues(
            [
                IssueUpdate(
                    t.node_id,
                    remove_labels=(ids[labels.in_progress],),
                    add_labels=(ids[labels.shipped],),
                    close=True,
                )
                for t in merged
            ]
        )
        numbers = {t.issue_number for t in merged}

        def mark(run: Run) -> Run:
            for task in run.tasks:
                if task.issue_number in numbers and "shipped" not in task.steps_done:
                    kept = tuple(
                        n for n in task.labels if n not in (labels.in_progress, labels.ready)
                    )
                    run = _with_task(
                        run,
                        replace(
                            task,
                            labels=(*kept, labels.shipped),
                            steps_done=(*task.steps_done, "shipped"),
                        ),
                    )
            return run

        self._update(run_id, mark)

    def _finish_ship(self, run_id: str) -> None:
        now = self.clock.now()

        def finish(run: Run) -> Run | None:
            if run.state is not RunState.SHIPPING:
                return None
            left = [t for t in run.tasks if t.state not in (TaskState.MERGED, TaskState.SKIPPED)]
            if any("queued" in t.steps_done and t.state is TaskState.CHECKS_PASSED for t in left):
                return None  # the merge queue has the last word; its webhooks finish the run
            if not left:
                return apply_run_event(run, RunEvent.SHIPPED, now, finished_at=now, reason=None)
            reasons = "; ".join(f"#{t.issue_number}: {t.reason or t.state.value}" for t in left)
            return apply_run_event(
                run,
                RunEvent.SHIP_FAILED,
                now,
                reason=f"{len(left)} task(s) not shipped — {reasons}. "
                "`/ship` again retries only these.",
            )

        saved = self._update(run_id, finish)
        if saved is not None:
            self.notify(saved)

    # ------------------------------------------------------------------ jobs: cancel

    def run_cancel_job(self, job: dict[str, Any]) -> None:
        """Put the cancelled run's issues back to ready, in one request."""
        run_id = str(job["run_id"])
        run = self.store.get_run(run_id)
        labels = self.policy.labels
        release = [
            t
            for t in run.tasks
            if "labelled" in t.steps_done
            and "released" not in t.steps_done
            and t.state is not TaskState.MERGED
        ]
        if not release:
            return
        ids = self._label_ids(run_id, [labels.ready, labels.in_progress])
        self.github.update_issues(
            [
                IssueUpdate(
                    t.node_id,
                    remove_labels=(ids[labels.in_progress],),
                    add_labels=(ids[labels.ready],),
                )
                for t in release
            ]
        )
        for task in release:
            kept = tuple(n for n in task.labels if n != labels.in_progress)
            self._mark_step(run_id, task.issue_number, "released", labels=(*kept, labels.ready))

    # ------------------------------------------------------------------ notifications

    def notify(self, run: Run) -> None:
        """Schedule an edit of the run's message, coalesced to one per NOTIFY_WINDOW."""
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

    def run_notify_job(self, job: dict[str, Any]) -> None:
        """Show the run's current state on its message, and announce milestones once."""
        run = self.store.get_run(str(job["run_id"]))
        if not run.discord.get("application_id"):
            return
        try:
            self._show(run)
            self._announce(run)
        except DiscordError as exc:
            log.warning("could not update Discord for run %s: %s", run.run_id, exc)

    def _token_fresh(self, run: Run) -> bool:
        issued = float(run.discord.get("token_at") or 0)
        return self.clock.now() - issued < TOKEN_LIFETIME

    def _show(self, run: Run) -> None:
        message = render.run_message(run, self.web_url)
        ref = run.discord
        if self._token_fresh(run):
            message_id = self.discord.edit_original(ref["application_id"], ref["token"], message)
            if ref.get("message_id") != message_id:
                self._update(
                    run.run_id,
                    lambda r: replace(r, discord={**r.discord, "message_id": message_id}),
                )
        elif ref.get("message_id") and ref.get("channel_id"):
            self.discord.edit_message(ref["channel_id"], ref["message_id"], message)

    def _announce(self, run: Run) -> None:
        milestones = {
            RunState.READY_TO_SHIP: "announced_ready",
            RunState.SHIPPED: "announced_shipped",
            RunState.SHIP_FAILED: f"announced_failed_{run.version}",
        }
        key = milestones.get(run.state)
        if key is None or run.discord.get(key):
            return
        if run.state is RunState.SHIPPED:
            message = render.ship_summary(run, self.web_url)
        elif run.state is RunState.READY_TO_SHIP:
            message = {
                "content": f"✅ Run `{run.run_id}`: every task has green checks. Ready to ship.",
                "components": render.run_buttons(run),
            }
        else:
            message = {"content": f"⚠️ Run `{run.run_id}` did not ship completely: {run.reason}"}
        if self._token_fresh(run):
            self.discord.followup(run.discord["application_id"], run.discord["token"], message)
        elif run.discord.get("channel_id"):
            self.discord.create_message(run.discord["channel_id"], message)
        self._update(run.run_id, lambda r: replace(r, discord={**r.discord, key: "1"}))

    # ------------------------------------------------------------------ failures

    def on_dead_letter(self, kind: str, job: dict[str, Any], error: str) -> None:
        """A job failed for good: tell the people waiting, and record it on the run."""
        if kind == PLAN:
            interaction = job["interaction"]
            self.discord.edit_original(
                str(interaction["application_id"]),
                str(interaction["token"]),
                {
                    "content": (
                        f"❌ Planning failed after several tries ({error}). GitHub may be "
                        "unavailable; try `/plan` again in a few minutes."
                    )
                },
            )
        elif kind == DISPATCH:
            self._fail_task(
                str(job["run_id"]),
                int(job["issue"]),
                f"could not hand the task to the executor: {error}",
            )
        elif kind == START:
            self._abort_start(str(job["run_id"]), error)
        elif kind == SHIP:
            self._abort_ship(str(job["run_id"]), error)

    def _abort_start(self, run_id: str, error: str) -> None:
        now = self.clock.now()
        reason = f"could not start the run: {error}. Its issues may be half relabelled."
        saved = self._update(
            run_id,
            lambda r: (
                apply_run_event(r, RunEvent.FAIL, now, reason=reason, finished_at=now)
                if r.state in (RunState.APPROVED, RunState.EXECUTING)
                else None
            ),
        )
        if saved is not None:
            self.notify(saved)

    def _abort_ship(self, run_id: str, error: str) -> None:
        now = self.clock.now()
        saved = self._update(
            run_id,
            lambda r: (
                apply_run_event(
                    r,
                    RunEvent.SHIP_FAILED,
                    now,
                    reason=f"shipping stopped: {error}. `/ship` again retries what is left.",
                )
                if r.state is RunState.SHIPPING
                else None
            ),
        )
        if saved is not None:
            self.notify(saved)

    # ------------------------------------------------------------------ storage helper

    def _update(self, run_id: str, decide: Callable[[Run], Run | None]) -> Run | None:
        """Load, decide, save conditionally; on a lost race, reload and decide again."""
        for _ in range(SAVE_ATTEMPTS):
            run = self.store.get_run(run_id)
            updated = decide(run)
            if updated is None:
                return None
            try:
                return self.store.save_run(replace(updated, updated_at=self.clock.now()))
            except RunConflict:
                continue
        raise RunConflict(f"run {run_id} kept changing; gave up after {SAVE_ATTEMPTS} tries")


class DispatchInProgress(Exception):
    """Another attempt holds a fresh claim on a dispatch: try again later."""


#: Prefix of the step that claims a workflow dispatch (followed by the claim's time).
CLAIM = "dispatch-claimed:"
#: After this many seconds a claim whose attempt never confirmed is considered dead.
CLAIM_TIMEOUT = 120.0
_UNCONFIRMED = (
    "GitHub did not confirm the workflow dispatch ({error}); it was not sent "
    "again. If no workflow run started for this issue, start one by hand."
)


def _with_task(run: Run, task: Task) -> Run:
    tasks = tuple(task if t.issue_number == task.issue_number else t for t in run.tasks)
    return replace(run, tasks=tasks)


def _same(a: Run, b: Run) -> bool:
    return a.state is b.state and a.tasks == b.tasks


def _wrong_state(run: Run, action: str, allowed: tuple[RunState, ...]) -> str:
    names = " or ".join(f"`{s.value}`" for s in allowed)
    hint = f" Only a run that is {names} can be {action}d." if allowed else ""
    if action == "approve" and run.approved_by:
        return (
            f"Run `{run.run_id}` was already approved by <@{run.approved_by}> "
            f"and is `{run.state.value}`."
        )
    return f"Run `{run.run_id}` is `{run.state.value}`.{hint}"


def _dispatch_comment(run: Run, executor: str) -> str:
    how = {"workflow": "a workflow run", "assign": "the assignee", "label": "whoever picks it up"}
    return (
        f"🤖 Valine run `{run.run_id}` is working on this issue (handed to "
        f"{how.get(executor, executor)}). Link a pull request with `Fixes #<issue>` "
        f"or a branch named `valine/{run.run_id}/<issue>`."
    )


def _lost_pull_request_event(
    repo: str, pull: PullRequest, known_head: str | None
) -> dict[str, Any] | None:
    """The ``pull_request`` delivery that would report ``pull``'s change, or None.

    Closed (merged or not) gives ``closed``; an open PR whose head is no longer
    ``known_head`` gives ``synchronize``; anything else has nothing to report.
    """
    if pull.state == "closed":
        action = "closed"
    elif known_head is not None and pull.head_sha != known_head:
        action = "synchronize"
    else:
        return None
    return {
        "action": action,
        "number": pull.number,
        "pull_request": {
            "number": pull.number,
            "state": pull.state,
            "merged": pull.merged,
            "body": pull.body,
            "html_url": pull.url,
            "head": {"sha": pull.head_sha, "ref": pull.head_ref},
        },
        "repository": {"full_name": repo},
    }
