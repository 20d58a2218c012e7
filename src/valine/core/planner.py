"""The planner: open issues labelled ready -> the day's ordered, capped list of tasks."""

from __future__ import annotations

from collections.abc import Sequence

from valine.core.models import Issue, Task
from valine.core.policy import Labels, PlannerRules

_NO_DUE_DATE = "9999-12-31T23:59:59Z"


def plan_tasks(issues: Sequence[Issue], labels: Labels, rules: PlannerRules) -> tuple[Task, ...]:
    """Pick and order the tasks: ready, not blocked, by the configured order, capped.

    The order is a list of keys, applied in turn: ``priority`` (the position of the
    issue's most urgent priority label; issues without one come after those with one),
    ``milestone`` (earliest milestone due date first; none last) and ``age`` (oldest
    first). Issue number breaks any remaining tie, so the plan is deterministic.
    """
    blocking = set(labels.blocking)
    eligible = [
        issue
        for issue in issues
        if labels.ready in issue.labels and not blocking.intersection(issue.labels)
    ]
    eligible.sort(key=lambda issue: (*_sort_key(issue, rules), issue.number))
    return tuple(
        Task(issue_number=i.number, title=i.title, labels=i.labels, node_id=i.node_id)
        for i in eligible[: rules.max_tasks]
    )


def _sort_key(issue: Issue, rules: PlannerRules) -> tuple[object, ...]:
    keys: list[object] = []
    for name in rules.order:
        if name == "priority":
            ranks = [
                rules.priority_labels.index(name_)
                for name_ in issue.labels
                if name_ in rules.priority_labels
            ]
            keys.append(min(ranks, default=len(rules.priority_labels)))
        elif name == "milestone":
            keys.append(issue.milestone_due_on or _NO_DUE_DATE)
        elif name == "age":
            keys.append(issue.created_at)
    return tuple(keys)
