"""A run's Discord thread, as data: where it stands, its name, the events posted in it.

The plan message stays in the channel and is edited in place; the run's events go into a
thread started from it. Each event has a key that names it once (``pr:12:5`` -- PR #5 of
issue #12 opened), so the notify job posts it exactly once however often it runs. Only
runs with a thread get these event posts: without one (no thread permission, or a plan
message that cannot have a thread) the channel receives the milestone announcements as
it always did, and the plan message shows the rest.
"""

from __future__ import annotations

from valine.core.models import Run, Task
from valine.core.replies import Message
from valine.core.states import RunState, TaskState

#: Where a run's thread stands (``Run.thread``).
OPEN, ARCHIVED, REFUSED, NONE = "open", "archived", "refused", "none"
#: The key of the notice that a run's events stay in the channel (posted once a run).
REFUSED_NOTICE = "thread_refused"
#: Discord's limit on a thread's name, and on a message's text.
NAME_LIMIT, CONTENT_LIMIT = 100, 2000
#: How much of a reason an event line quotes.
REASON_LIMIT = 300


def thread_name(run: Run) -> str:
    """The name of the run's thread: ``Run r20261125-k3f9qa · octo/widgets``."""
    return f"Run {run.run_id} · {run.repo}"[:NAME_LIMIT]


def uses_thread(run: Run) -> bool:
    """True if the run's posts go (or will go) to its thread rather than the channel."""
    return run.thread not in (REFUSED, NONE)


def thread_events(run: Run, web_url: str) -> list[tuple[str, Message]]:
    """Every event of the run a thread shows, ``(key, message)``, oldest kind first per
    task: a retry, its pull request opened, its checks red or green on a head commit, a
    failed or skipped task; and a cancelled run. Keys name each event once."""
    found: list[tuple[str, Message]] = []
    for task in run.tasks:
        found += _task_events(run, task, web_url)
    if run.state is RunState.CANCELLED:
        found.append(("cancelled", _message(f"🛑 Run `{run.run_id}` cancelled: {run.reason}")))
    return found


def _task_events(run: Run, task: Task, web_url: str) -> list[tuple[str, Message]]:
    n = task.issue_number
    issue = f"#{n} {_clip(task.title, 80)}"
    found: list[tuple[str, Message]] = []
    if task.retries:
        found.append(
            (
                f"retry:{n}:{task.retries}",
                _message(f"🔁 {issue}: handed to the executor again (retry {task.retries})"),
            )
        )
    if task.pr_number is not None:
        pr = f"[PR #{task.pr_number}]({web_url}/{run.repo}/pull/{task.pr_number})"
        found.append((f"pr:{n}:{task.pr_number}", _message(f"🔀 {issue}: {pr} opened")))
        sha = (task.head_sha or "")[:12]
        at = f" at `{sha[:7]}`" if sha else ""
        if task.state is TaskState.CHECKS_FAILED:
            why = f": {_clip(task.reason, REASON_LIMIT)}" if task.reason else ""
            found.append(
                (
                    f"checks:{n}:{task.pr_number}:{sha}:red",
                    _message(f"🔴 {issue}: checks failed on PR #{task.pr_number}{at}{why}"),
                )
            )
        elif task.state in (TaskState.CHECKS_PASSED, TaskState.MERGED):
            found.append(
                (
                    f"checks:{n}:{task.pr_number}:{sha}:green",
                    _message(f"🟢 {issue}: checks green on PR #{task.pr_number}{at}"),
                )
            )
    if task.state is TaskState.FAILED:
        why = _clip(task.reason or "failed", REASON_LIMIT)
        found.append((f"failed:{n}:{task.retries}", _message(f"❌ {issue}: {why}")))
    elif task.state is TaskState.SKIPPED:
        why = _clip(task.reason or "skipped", REASON_LIMIT)
        found.append((f"skipped:{n}", _message(f"⏭️ {issue}: skipped ({why})")))
    return found


def refused_notice(run: Run) -> Message:
    """The one notice that the run's updates stay in the channel: the bot lacks the
    thread permissions there (what to grant, so the next run gets its thread)."""
    return _message(
        f"🧵 Run `{run.run_id}`: I cannot use a thread in this channel (the bot needs "
        "**Create Public Threads** and **Send Messages in Threads**), so this run's "
        "updates are posted here instead."
    )


def _message(text: str) -> Message:
    return Message(text[:CONTENT_LIMIT])


def _clip(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
