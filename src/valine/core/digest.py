"""The day's digest, computed from stored runs alone (no GitHub call).

What a day was: the runs shipped, the pull requests merged, the time from approval to
ship, the tasks that failed or went stale (with their reasons), the deployments, and
the ready issues the last plan left for another day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from valine.core.deploy import label as deploy_label
from valine.core.models import Run
from valine.core.replies import Card, Message
from valine.core.states import RunState, TaskState


@dataclass(frozen=True, slots=True)
class Digest:
    """The figures of one day (``since``: the day's start, epoch seconds)."""

    since: float
    runs: tuple[str, ...]
    shipped: tuple[str, ...]
    merged: tuple[tuple[str, int, int], ...]  # (run id, PR number, issue number)
    ship_minutes: tuple[int, ...]
    problems: tuple[str, ...]
    deployments: tuple[str, ...]
    ready_left: tuple[int, ...] | None  # None: no plan read the issues today


def _of_the_day(run: Run, since: float) -> bool:
    """True if the run did something today: planned, or finished, since ``since``."""
    return run.created_at >= since or (run.finished_at or 0.0) >= since or run.active


def day_digest(runs: Sequence[Run], since: float) -> Digest:
    """The digest of the runs (newest first, as the store lists them) since ``since``."""
    today = [r for r in runs if _of_the_day(r, since)]
    shipped = [r for r in today if r.state is RunState.SHIPPED and (r.finished_at or 0) >= since]
    merged = tuple(
        (r.run_id, t.pr_number or 0, t.issue_number)
        for r in shipped
        for t in r.tasks
        if t.state is TaskState.MERGED
    )
    minutes = tuple(
        max(0, round((r.finished_at - r.approved_at) / 60))
        for r in shipped
        if r.finished_at and r.approved_at
    )
    problems = tuple(
        f"`{r.run_id}` #{t.issue_number} {t.state.value}: {t.reason or 'no reason recorded'}"
        for r in today
        for t in r.tasks
        if t.state in (TaskState.FAILED, TaskState.STALE)
    )
    deployments = tuple(
        f"`{r.run_id}` {deploy_label(r.deploy)}"
        + (f" — [workflow run]({r.deploy.url})" if r.deploy.url else "")
        for r in shipped
        if r.deploy is not None
    )
    planned_today = [r for r in today if r.created_at >= since]
    return Digest(
        since=since,
        runs=tuple(r.run_id for r in today),
        shipped=tuple(r.run_id for r in shipped),
        merged=merged,
        ship_minutes=minutes,
        problems=problems,
        deployments=deployments,
        ready_left=planned_today[0].ready_left if planned_today else None,
    )


def _duration(minutes: int) -> str:
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def digest_message(digest: Digest, repo: str, web_url: str) -> Message:
    """The digest as a message (one card; every list clipped to stay in Discord's limits)."""
    lines = [
        f"Since <t:{int(digest.since)}:f>",
        f"🚢 Runs shipped: **{len(digest.shipped)}** of {len(digest.runs)} run(s) today",
        f"🟣 Pull requests merged: **{len(digest.merged)}**",
    ]
    lines += [
        f"  · [PR #{pr}]({web_url}/{repo}/pull/{pr}) → #{issue} (`{run_id}`)"
        for run_id, pr, issue in digest.merged[:15]
    ]
    if digest.ship_minutes:
        each = ", ".join(_duration(m) for m in digest.ship_minutes)
        lines.append(f"⏱️ Approval to ship: {each}")
    lines.append(f"❌ Failed or stale tasks: **{len(digest.problems)}**")
    lines += [f"  · {_clip(p, 200)}" for p in digest.problems[:10]]
    if digest.deployments:
        lines.append("🚀 Deployments: " + "; ".join(digest.deployments[:10]))
    if digest.ready_left is None:
        lines.append("📋 Ready issues left: no plan read them today")
    else:
        left = ", ".join(f"#{n}" for n in digest.ready_left[:20]) or "none"
        lines.append(f"📋 Ready issues left (as the day's plan read them): {left}")
    card = Card(
        title=f"Digest · {repo}",
        description=_clip("\n".join(lines), 4096),
        colour=0x9B59B6,
        footer="from stored state",
    )
    return Message(cards=(card,))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
