"""Executor kinds: who works on a task once its run is approved, one entry per kind.

Each kind says, in one place, what the rest of the product asks of it: which
``[executor]`` key it needs, how the rules file's effective line shows it, whose
GitHub user ids the plan reads (they are the issues' assignees on approval), how the
issue comment names who got the task, and whether handing a task over is a dispatch of
its own (a workflow run) or the relabelling itself (a label, an assignee). The use
cases' part of a kind, what its dispatch job does, is registered beside the job
(``usecases/execution.py``).

Adding a kind: one :class:`ExecutorKind` here (``@executor_kind``), and a dispatch
handler in the use cases if it dispatches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Executor(Protocol):
    """The ``[executor]`` settings a kind reads (:class:`valine.core.policy.Executor`)."""

    @property
    def kind(self) -> str:
        """Its kind's name."""
        ...

    @property
    def workflow(self) -> str | None:
        """``kind = workflow``: the workflow file (or id) to dispatch."""
        ...

    @property
    def ref(self) -> str:
        """``kind = workflow``: the branch it runs on."""
        ...

    @property
    def assignee(self) -> str | None:
        """``kind = assign``: who gets the issues."""
        ...


@dataclass(frozen=True, slots=True)
class ExecutorKind:
    """What one kind of executor means for configuration, planning and the hand-over."""

    #: Its ``[executor] kind`` value.
    name: str
    #: Who gets the task, as the issue comment says it ("handed to a workflow run").
    handed_to: str
    #: True when each task is handed over by a dispatch job of its own; False when the
    #: relabelling (and assigning) of its issue is the hand-over.
    dispatches: bool = False
    #: The ``[executor]`` key this kind cannot work without (None: none).
    needs: str | None = None
    #: ``key=value`` pairs of the effective rules, after ``kind=...``.
    describe: Callable[[Executor], str] = lambda executor: ""
    #: GitHub logins the plan reads the user ids of; the start job assigns the issues to them.
    assignees: Callable[[Executor], tuple[str, ...]] = lambda executor: ()

    def problem(self, executor: Executor) -> str | None:
        """Why ``executor`` cannot work as configured, or None."""
        if self.needs is not None and not getattr(executor, self.needs):
            return f"executor.{self.needs} is required when executor.kind = {self.name}"
        return None

    def line(self, executor: Executor) -> str:
        """The effective rules line of ``executor`` (``kind=workflow workflow='agent.yml' ...``)."""
        rest = self.describe(executor)
        return f"kind={self.name}" + (f" {rest}" if rest else "")


#: Every executor kind, by name, in the order the documentation lists them.
KINDS: dict[str, ExecutorKind] = {}


def executor_kind(kind: ExecutorKind) -> ExecutorKind:
    """Register ``kind`` (a name registered twice is an error)."""
    if kind.name in KINDS:
        raise ValueError(f"executor kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def kind_of(executor: Executor) -> ExecutorKind:
    """The kind of ``executor`` (a policy's executor is always of a registered kind)."""
    return KINDS[executor.kind]


WORKFLOW = executor_kind(
    ExecutorKind(
        name="workflow",
        handed_to="a workflow run",
        dispatches=True,
        needs="workflow",
        describe=lambda executor: f"workflow={executor.workflow!r} ref={executor.ref!r}",
    )
)
ASSIGN = executor_kind(
    ExecutorKind(
        name="assign",
        handed_to="the assignee",
        needs="assignee",
        describe=lambda executor: f"assignee={executor.assignee!r}",
        assignees=lambda executor: (executor.assignee,) if executor.assignee else (),
    )
)
LABEL = executor_kind(ExecutorKind(name="label", handed_to="whoever picks it up"))
