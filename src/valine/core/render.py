"""The product's messages as domain values: the run message, the status list, the ship
summary, help (:mod:`valine.core.replies`).

Nothing here sends anything or knows Discord's wire format; the use cases hand these
messages to the Discord port or answer with them, and ``valine.discord.render`` spells
them out. The text is Discord's markdown (``<t:…:R>`` times, ``<@id>`` names), within
its limits: card title 256 characters, description 4,096.
"""

from __future__ import annotations

from collections.abc import Sequence

from valine.core.authz import Permissions, grant_name, is_guarded, who_may
from valine.core.commands import CommandSpec
from valine.core.models import Run, Task
from valine.core.replies import Button, Card, Message, Style
from valine.core.states import (
    ACTION_STATES,
    TASK_RETRYABLE,
    Action,
    RunState,
    TaskState,
    allowed_actions,
    offered_actions,
)

RUN_COLOURS = {
    RunState.PLANNED: 0x5865F2,
    RunState.APPROVED: 0x3498DB,
    RunState.EXECUTING: 0x3498DB,
    RunState.READY_TO_SHIP: 0x2ECC71,
    RunState.SHIPPING: 0xF1C40F,
    RunState.SHIPPED: 0x9B59B6,
    RunState.SHIP_FAILED: 0xE67E22,
    RunState.CANCELLING: 0x95A5A6,
    RunState.CANCELLED: 0x95A5A6,
    RunState.FAILED: 0xE74C3C,
}
TASK_ICONS = {
    TaskState.PENDING: "⏳",
    TaskState.DISPATCHED: "📤",
    TaskState.PR_OPEN: "🔀",
    TaskState.CHECKS_PENDING: "🟡",
    TaskState.CHECKS_PASSED: "🟢",
    TaskState.CHECKS_FAILED: "🔴",
    TaskState.MERGED: "🟣",
    TaskState.SKIPPED: "⏭️",
    TaskState.FAILED: "❌",
    TaskState.STALE: "⌛",
}
_DONE = frozenset({TaskState.CHECKS_PASSED, TaskState.MERGED, TaskState.SKIPPED})
#: At most this many Retry buttons (one row) on a message.
MAX_RETRY_BUTTONS = 5


def progress_bar(done: int, total: int, width: int = 10) -> str:
    """A text progress bar such as ``▰▰▰▱▱▱▱▱▱▱ 1/3``."""
    filled = round(width * done / total) if total else 0
    return "▰" * filled + "▱" * (width - filled) + f" {done}/{total}"


def _task_line(task: Task, repo: str, web_url: str) -> str:
    line = (
        f"{TASK_ICONS[task.state]} [#{task.issue_number}]({web_url}/{repo}/issues/"
        f"{task.issue_number}) {_clip(task.title, 80)} — `{task.state.value}`"
    )
    if task.pr_number:
        line += f" · [PR #{task.pr_number}]({web_url}/{repo}/pull/{task.pr_number})"
    if task.reason and task.state is not TaskState.MERGED:
        line += f"\n  ↳ {_clip(task.reason, 240)}"
    if task.notes:
        line += f"\n  ⚠️ {_clip(task.notes[-1], 160)}"
    return line


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_card(run: Run, web_url: str) -> Card:
    """The card that shows one run: state, progress, one line per task, timestamps."""
    done = sum(1 for t in run.tasks if t.state in _DONE)
    lines = [f"**{progress_bar(done, len(run.tasks))}** ready", ""]
    lines += [_task_line(t, run.repo, web_url) for t in run.tasks]
    when = [f"Planned <t:{int(run.created_at)}:R>"]
    if run.approved_at:
        when.append(f"approved <t:{int(run.approved_at)}:R> by <@{run.approved_by}>")
    if run.finished_at:
        when.append(f"finished <t:{int(run.finished_at)}:R>")
    lines += ["", " · ".join(when)]
    if run.reason:
        lines.append(f"⚠️ {_clip(run.reason, 500)}")
    if run.deploy is not None:
        lines.append(deploy_line(run))
    return Card(
        title=_clip(f"Run {run.run_id} · {state_label(run)}", 256),
        url=f"{web_url}/{run.repo}",
        description=_clip("\n".join(lines), 4096),
        colour=RUN_COLOURS[run.state],
        footer=run.repo,
    )


def state_label(run: Run) -> str:
    """The run's state in words: ``shipped · deployed`` once a deployment is known."""
    from valine.core.deploy import label as deploy_label

    words = run.state.value.replace("_", " ")
    deployed = deploy_label(run.deploy) if run.state is RunState.SHIPPED else None
    return f"{words} · {deployed}" if deployed else words


_DEPLOY_ICONS = {"deploying": "🚀", "deployed": "✅", "deploy failed": "❌"}


def deploy_line(run: Run) -> str:
    """One line on the deployment: its state, the workflow run's link, why it failed."""
    from valine.core.deploy import label as deploy_label

    deploy = run.deploy
    assert deploy is not None
    word = deploy_label(deploy) or ""
    line = f"{_DEPLOY_ICONS.get(word, '🚀')} Deployment `{deploy.workflow}` — {word}"
    if deploy.attempt > 1:
        line += f" (attempt {deploy.attempt})"
    if deploy.url:
        line += f" · [workflow run]({deploy.url})"
    if deploy.reason:
        line += f"\n  ↳ {_clip(deploy.reason, 240)}"
    return line


def deploy_outcome_message(run: Run) -> Message:
    """The announcement of a deployment's outcome (deployed, or failed with the way on)."""
    deploy = run.deploy
    assert deploy is not None
    link = f" — [workflow run]({deploy.url})" if deploy.url else ""
    if deploy.state.value == "deployed":
        content = f"✅ Run `{run.run_id}` shipped · deployed{link}"
    else:
        content = (
            f"❌ Run `{run.run_id}` shipped · deploy failed: {deploy.reason or 'unknown'}{link}. "
            f"The merges stay; `/deploy {run.run_id}` runs the deployment again."
        )
    return Message(content)


def run_buttons(run: Run) -> tuple[tuple[Button, ...], ...]:
    """The rows of buttons a run offers now: one per action :func:`offered_actions`
    names (Approve, Ship or Retry ship, Cancel), and a Retry per retryable task."""
    buttons: list[Button] = []
    offered = offered_actions(run.state)
    if Action.APPROVE in offered:
        buttons.append(Button("approve", run.run_id, "Approve", Style.SUCCESS))
    if Action.SHIP in offered:
        buttons.append(Button("ship", run.run_id, ship_label(run), Style.PRIMARY))
    if Action.CANCEL in offered:
        buttons.append(Button("cancel", run.run_id, "Cancel", Style.DANGER))
    retry = tuple(_retry_button(run, t) for t in retryable(run))[:MAX_RETRY_BUTTONS]
    return tuple(row for row in (tuple(buttons), retry) if row)


def ship_label(run: Run) -> str:
    """The Ship button's label: ``Retry ship`` after a ship that did not complete."""
    return "Retry ship" if run.state is RunState.SHIP_FAILED else "Ship"


def _retry_button(run: Run, task: Task) -> Button:
    return Button("retry", run.run_id, f"Retry #{task.issue_number}", issue=task.issue_number)


def retryable(run: Run) -> list[Task]:
    """The tasks ``/retry`` accepts now: failed or stale, in a run still executing."""
    if Action.RETRY not in allowed_actions(run.state):
        return []
    return [t for t in run.tasks if t.state in TASK_RETRYABLE]


def stale_message(run: Run, task: Task) -> Message:
    """The announcement that a task went stale: why, what the policy did, and Retry."""
    why = task.reason if task.reason and task.reason.startswith("stale") else "stale"
    retry = ((_retry_button(run, task),),) if task in retryable(run) else ()
    return Message(
        f"⏰ Run `{run.run_id}`: #{task.issue_number} {_clip(task.title, 100)} is {why}",
        rows=retry,
    )


def ship_failed_message(run: Run) -> Message:
    """The announcement of a ship that did not complete, with the buttons it allows now
    (Retry ship and Cancel while it is ``ship_failed``)."""
    return Message(
        f"⚠️ Run `{run.run_id}` did not ship completely: {run.reason}",
        rows=run_buttons(run)[:1],
    )


def ready_message(run: Run) -> Message:
    """The announcement that every task is green, with the buttons the run allows now."""
    return Message(
        f"✅ Run `{run.run_id}`: every task has green checks. Ready to ship.",
        rows=run_buttons(run),
    )


def cancel_outcome(run: Run) -> str:
    """What a cancel leaves: the pull requests that stay shipped and the issues set back."""
    shipped = [t for t in run.tasks if t.state is TaskState.MERGED]
    back = [t for t in run.tasks if t.state not in (TaskState.MERGED, TaskState.SKIPPED)]
    parts = []
    if shipped:
        merged = ", ".join(f"PR #{t.pr_number} (#{t.issue_number})" for t in shipped)
        parts.append(f"shipped and kept: {merged}")
    if back:
        parts.append("back to ready: " + ", ".join(f"#{t.issue_number}" for t in back))
    return "; ".join(parts) or "nothing was started"


def run_message(run: Run, web_url: str) -> Message:
    """The run's message (the plan, edited in place as the run moves)."""
    return Message("", (run_card(run, web_url),), run_buttons(run))


def status_list_message(
    active: Run | Sequence[Run] | None, recent: Sequence[Run], *, with_repository: bool = False
) -> Message:
    """``/status`` without a run id: the active run (of every repository) and the last
    few; ``with_repository`` names each run's repository (a deployment serving several)."""
    actives = [active] if isinstance(active, Run) else list(active or ())
    lines = []
    if not actives:
        lines.append("No active run. Start one with `/plan`.")

    def where(run: Run) -> str:
        return f" · {run.repo}" if with_repository else ""

    for run in actives:
        done = sum(1 for t in run.tasks if t.state in _DONE)
        lines.append(
            f"**Active:** `{run.run_id}`{where(run)} — {run.state.value} — "
            f"{progress_bar(done, len(run.tasks))}"
        )
    shown = {run.run_id for run in actives}
    others = [r for r in recent if r.run_id not in shown]
    if others:
        lines += ["", "**Recent:**"]
        lines += [
            f"`{r.run_id}`{where(r)} — {state_label(r)} — {len(r.tasks)} task(s) — "
            f"<t:{int(r.created_at)}:R>"
            for r in others
        ]
    return Message(cards=(Card("Runs", "\n".join(lines), 0x5865F2),))


def ship_summary(run: Run, web_url: str) -> Message:
    """The message posted when a run has shipped."""
    merged = [t for t in run.tasks if t.state is TaskState.MERGED]
    skipped = [t for t in run.tasks if t.state is TaskState.SKIPPED]
    failed = [t for t in run.tasks if t.state is TaskState.FAILED]
    took = ""
    if run.approved_at and run.finished_at:
        minutes = max(0, round((run.finished_at - run.approved_at) / 60))
        took = (
            " in under a minute" if minutes == 0 else f" in {minutes // 60} h {minutes % 60} min"
        ) + " from approval"
    lines = [f"🚢 Shipped **{len(merged)}** pull request(s) and closed their issues{took}."]
    lines += [
        f"🟣 [PR #{t.pr_number}]({web_url}/{run.repo}/pull/{t.pr_number}) → "
        f"#{t.issue_number} {_clip(t.title, 80)}"
        for t in merged
    ]
    if skipped:
        lines.append(f"⏭️ Skipped: {', '.join(f'#{t.issue_number}' for t in skipped)}")
    if failed:
        lines.append(f"❌ Not shipped (failed): {', '.join(f'#{t.issue_number}' for t in failed)}")
    card = Card(f"Run {run.run_id} shipped", "\n".join(lines), RUN_COLOURS[RunState.SHIPPED])
    return Message(cards=(card,))


def _applies(action: str | None) -> str:
    """`` For a run that is `a` or `b`.`` for an action the guard table limits."""
    if action not in set(Action):
        return ""
    states = ACTION_STATES[Action(action)]
    names = " or ".join(f"`{s.value}`" for s in RunState if s in states)
    return f" For a run that is {names}."


def help_message(
    repo: str | None,
    executor: str,
    ready_label: str,
    permissions: Permissions,
    commands: Sequence[tuple[CommandSpec, str | None]],
) -> Message:
    """``/help``: the ``commands`` (each with the action guarding it), who may use each,
    and the configuration in short."""
    lines = []
    for command, action in commands:
        if action is not None and is_guarded(action):
            who = who_may(permissions.grant(grant_name(action)))
        else:
            who = "Everyone."
        lines.append(f"`/{command.name}` — {command.description}.{_applies(action)} {who}")
    lines += [
        "",
        f"Repository: `{repo or 'not configured'}` · executor: `{executor}` · "
        f"ready label: `{ready_label}`",
    ]
    return Message(cards=(Card("Valine Orchestrator", "\n".join(lines), 0x5865F2),))
