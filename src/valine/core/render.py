"""Discord messages as data: the run message, the status list, the ship summary, help.

Nothing here sends anything; the use cases hand these documents to the Discord port or
return them as interaction responses. Limits respected: embed title 256 characters,
description 4,096, at most 25 fields of 1,024, ``custom_id`` at most 100 characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from valine.core.authz import Permissions, grant_name, is_guarded, who_may
from valine.core.commands import CommandSpec
from valine.core.deploy import label as deploy_label
from valine.core.models import Run, Task
from valine.core.states import (
    ACTION_STATES,
    TASK_RETRYABLE,
    Action,
    RunState,
    TaskState,
    allowed_actions,
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
BUTTON_PRIMARY, BUTTON_SUCCESS, BUTTON_DANGER = 1, 3, 4
EPHEMERAL = 1 << 6


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


def run_embed(run: Run, web_url: str) -> dict[str, Any]:
    """The embed that shows one run: state, progress, one line per task, timestamps."""
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
    return {
        "title": _clip(f"Run {run.run_id} · {state_label(run)}", 256),
        "url": f"{web_url}/{run.repo}",
        "description": _clip("\n".join(lines), 4096),
        "color": RUN_COLOURS[run.state],
        "footer": {"text": run.repo},
    }


def state_label(run: Run) -> str:
    """The run's state in words: ``shipped · deployed`` once a deployment is known."""
    words = run.state.value.replace("_", " ")
    deployed = deploy_label(run.deploy) if run.state is RunState.SHIPPED else None
    return f"{words} · {deployed}" if deployed else words


_DEPLOY_ICONS = {"deploying": "🚀", "deployed": "✅", "deploy failed": "❌"}


def deploy_line(run: Run) -> str:
    """One line on the deployment: its state, the workflow run's link, why it failed."""
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


def deploy_outcome_message(run: Run) -> dict[str, Any]:
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
    return {"content": content, "allowed_mentions": {"parse": []}}


def run_buttons(run: Run) -> list[dict[str, Any]]:
    """The action row of buttons a run in its current state offers."""
    buttons: list[dict[str, Any]] = []
    allowed = allowed_actions(run.state)
    if Action.APPROVE in allowed:
        buttons.append(_button("Approve", "approve", run, BUTTON_SUCCESS))
    if Action.SHIP in allowed:
        label = "Retry ship" if run.state is RunState.SHIP_FAILED else "Ship"
        buttons.append(_button(label, "ship", run, BUTTON_PRIMARY))
    # A shipping run takes a /cancel (recorded for when the merges end), but offers no
    # button: the message would change under the press.
    if Action.CANCEL in allowed and run.state is not RunState.SHIPPING:
        buttons.append(_button("Cancel", "cancel", run, BUTTON_DANGER))
    rows = [{"type": 1, "components": buttons}] if buttons else []
    retry = [
        {
            "type": 2,
            "style": BUTTON_PRIMARY,
            "label": f"Retry #{t.issue_number}",
            "custom_id": f"retry:{run.run_id}:{t.issue_number}",
        }
        for t in retryable(run)
    ]
    return rows + ([{"type": 1, "components": retry[:5]}] if retry else [])


def retryable(run: Run) -> list[Task]:
    """The tasks ``/retry`` accepts now: failed or stale, in a run still executing."""
    if Action.RETRY not in allowed_actions(run.state):
        return []
    return [t for t in run.tasks if t.state in TASK_RETRYABLE]


def stale_message(run: Run, task: Task) -> dict[str, Any]:
    """The announcement that a task went stale: why, what the policy did, and Retry."""
    why = task.reason if task.reason and task.reason.startswith("stale") else "stale"
    retry = [
        {
            "type": 2,
            "style": BUTTON_PRIMARY,
            "label": f"Retry #{task.issue_number}",
            "custom_id": f"retry:{run.run_id}:{task.issue_number}",
        }
    ]
    return {
        "content": f"⏰ Run `{run.run_id}`: #{task.issue_number} {_clip(task.title, 100)} is {why}",
        "components": [{"type": 1, "components": retry}] if task in retryable(run) else [],
        "allowed_mentions": {"parse": []},
    }


def ship_failed_message(run: Run) -> dict[str, Any]:
    """The announcement of a ship that did not complete, with Retry ship and Cancel."""
    return {
        "content": f"⚠️ Run `{run.run_id}` did not ship completely: {run.reason}",
        "components": [
            {
                "type": 1,
                "components": [
                    _button("Retry ship", "ship", run, BUTTON_PRIMARY),
                    _button("Cancel", "cancel", run, BUTTON_DANGER),
                ],
            }
        ],
        "allowed_mentions": {"parse": []},
    }


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


def _button(label: str, action: str, run: Run, style: int) -> dict[str, Any]:
    return {"type": 2, "style": style, "label": label, "custom_id": f"{action}:{run.run_id}"}


def run_message(run: Run, web_url: str) -> dict[str, Any]:
    """The run's message (the plan, edited in place as the run moves)."""
    return {
        "content": "",
        "embeds": [run_embed(run, web_url)],
        "components": run_buttons(run),
        "allowed_mentions": {"parse": []},
    }


def status_list_message(
    active: Run | Sequence[Run] | None, recent: Sequence[Run], *, with_repository: bool = False
) -> dict[str, Any]:
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
    embed = {"title": "Runs", "description": "\n".join(lines), "color": 0x5865F2}
    return {"embeds": [embed], "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}


def ship_summary(run: Run, web_url: str) -> dict[str, Any]:
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
    embed = {
        "title": f"Run {run.run_id} shipped",
        "description": "\n".join(lines),
        "color": RUN_COLOURS[RunState.SHIPPED],
    }
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


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
) -> dict[str, Any]:
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
    return {
        "embeds": [
            {"title": "Valine Orchestrator", "description": "\n".join(lines), "color": 0x5865F2}
        ],
        "flags": EPHEMERAL,
    }
