"""``/plan``: defer, then the plan job reads the ready issues, stores a planned run and
answers the deferred interaction with it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from valine.core import render
from valine.core.errors import ActiveRunExists, GitHubUnavailable, NotFound, RunConflict
from valine.core.executors import kind_of
from valine.core.models import Run, new_run_id
from valine.core.planner import plan_tasks
from valine.core.replies import Answer, Deferred, Message, Reply, notice
from valine.ports import GitHubError
from valine.usecases.base import PLAN, Actor, incident, jobs, log
from valine.usecases.commanding import CommandingBase
from valine.usecases.router import GITHUB, Call, Router

#: The commands of this module.
ROUTES = Router()


class PlanningMixin(CommandingBase):
    """``/plan`` and its job: the one use case that creates a run."""

    def request_plan(self, interaction: Mapping[str, Any], actor: Actor) -> Answer:
        """``/plan``: show the active run, or defer and plan in a job."""
        refusal = self._refusal(actor, "plan", None)
        if refusal is not None:
            return refusal
        # Usually none: on DynamoDB the check then rides in the interaction's transaction.
        active = self.store.active_run(self.repo, likely_none=True)
        if active is not None:
            message = render.run_message(active, self.web_url).with_text(
                f"Run `{active.run_id}` is still {active.state.value}: "
                "finish or `/cancel` it before planning another."
            )
            return Reply(message)
        job = {
            "interaction": dict(interaction),
            "actor": actor.user_id,
            "received_at": self.clock.now(),
        }
        self.queue.enqueue(PLAN, job, dedupe_key=f"interaction:{interaction['id']}")
        self._audit(actor, "plan", "accepted", None)
        return Deferred()

    @jobs.register(PLAN)
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
                    Message(
                        "⏳ GitHub is not answering; retrying in a moment… "
                        f"(ref {incident('planning: GitHub unavailable', exc)})"
                    ),
                )
                raise
            except (GitHubError, NotFound) as exc:
                self._edit_original(
                    discord_ref,
                    Message(
                        f"❌ Could not read the issues of `{self.repo}`. Check "
                        "GITHUB_REPOSITORY and that the token can read the repository's "
                        f"issues (ref {incident('planning: issues unreadable', exc)})."
                    ),
                )
                return
        if active is None:
            self._edit_original(
                discord_ref,
                Message(
                    f"No open issues labelled `{self.policy.labels.ready}` in "
                    f"`{self.repo}` (without a blocking label): nothing to plan."
                ),
            )
            return
        message = render.run_message(active, self.web_url)
        if active.discord.get("interaction_id") != discord_ref["interaction_id"]:
            message = message.with_text(f"Run `{active.run_id}` is already active.")
            self._edit_original(discord_ref, message)
            return
        message_id = self.discord.edit_original(
            discord_ref["application_id"], discord_ref["token"], message
        )
        self._remember_plan_message(active.run_id, message_id)

    def _remember_plan_message(self, run_id: str, message_id: str) -> None:
        """Keep the plan message's id: edits after the token expires and the run's thread
        (started from it) need it."""
        self._note(
            run_id,
            lambda r: (
                None
                if r.discord.get("message_id") == message_id
                else replace(r, discord={**r.discord, "message_id": message_id})
            ),
        )

    def create_scheduled_run(self, channel_id: str, origin: str) -> Run | None:
        """Plan a run for a scheduled slot, as if an authorised user had typed ``/plan``.

        Its message goes to ``channel_id`` (no interaction: no token); ``origin`` names
        the slot. The active run if one exists; None when no issue is ready.
        """
        return self._create_planned_run({"channel_id": channel_id}, "schedule", origin)

    def _create_planned_run(
        self, discord_ref: dict[str, str], actor: str | None, origin: str | None = None
    ) -> Run | None:
        labels = self.policy.labels
        executor = self.policy.executor
        logins = list(kind_of(executor).assignees(executor))
        # One request: the issues and the node ids the start and ship jobs need.
        found = self.github.read_ready_issues(
            self.repo, labels.ready, [labels.ready, labels.in_progress, labels.shipped], logins
        )
        tasks = plan_tasks(found.issues, labels, self.policy.planner)
        if not tasks:
            return None
        planned = {t.issue_number for t in tasks}
        left = tuple(
            i.number
            for i in found.issues
            if i.number not in planned
            and labels.ready in i.labels
            and not set(labels.blocking).intersection(i.labels)
        )
        github_ids = {"repository": found.ids.repository}
        github_ids.update({f"label:{name}": node for name, node in found.ids.labels.items()})
        github_ids.update({f"user:{login}": node for login, node in found.ids.users.items()})
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
                origin=origin,
                ready_left=left,
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

    def _edit_original(self, ref: Mapping[str, str], message: Message) -> None:
        self.discord.edit_original(ref["application_id"], ref["token"], message)


@ROUTES.command("plan", action="plan", needs=GITHUB)
def _plan(uc: PlanningMixin, call: Call) -> Answer:
    named = call.option("repository")
    if named and named.lower() != uc.repo.lower():
        # the runtime hands a served repository's /plan to its own use cases
        served = ", ".join(f"`{name}`" for name in uc.served) or "none"
        shown = named[:140].replace("`", "'")
        return notice(f"`{shown}` is not a repository Valine serves here (served: {served}).")
    return uc.request_plan(call.interaction, call.actor)
