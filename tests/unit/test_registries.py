"""One router: every job kind, webhook event and domain event has exactly one handler,
registered in the module of its concern."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from valine.core import tracking
from valine.core.events import (
    CheckSuiteCompleted,
    CommitStatusChanged,
    GitHubEvent,
    WorkflowRunChanged,
)
from valine.github.events import EVENT_SHAPES, HANDLED_EVENTS, READERS
from valine.runtime.config import Settings
from valine.runtime.wiring import Services
from valine.usecases import base
from valine.usecases.base import github_events
from valine.usecases.registry import Registry

EVENT_TYPES = typing.get_args(GitHubEvent)
JOB_KINDS = {
    base.PLAN,
    base.START,
    base.DISPATCH,
    base.NOTIFY,
    base.SHIP,
    base.CANCEL,
    base.RELEASE,
    base.GITHUB_EVENT,
    base.RECONCILE,
    base.DEPLOY,
    base.SCHEDULE,
}


def test_the_runtime_runs_every_job_kind(tmp_path: Path) -> None:
    services = Services(Settings.from_env({"VALINE_STORE": f"sqlite:///{tmp_path}/v.db"}))
    assert set(services.job_handlers()) == JOB_KINDS


def test_the_endpoint_queues_the_events_with_a_reader_checked_by_their_shapes() -> None:
    # The README's list of webhook events: one reader each, registered in github/events.py.
    assert {
        "pull_request",
        "check_suite",
        "status",
        "issues",
        "issue_comment",
        "workflow_run",
    } == HANDLED_EVENTS
    assert set(READERS) == HANDLED_EVENTS
    assert set(EVENT_SHAPES) == HANDLED_EVENTS - {"status"}  # a status is read whole


def test_every_domain_event_has_a_use_case_handler() -> None:
    # Registered by class name (the use cases import no event class to register), so a
    # misspelt or renamed class would leave its event without a handler: caught here.
    assert len(EVENT_TYPES) == 12
    assert set(github_events.keys()) == {t.__name__ for t in EVENT_TYPES}


def test_every_domain_event_but_checks_and_workflow_runs_has_a_core_rule() -> None:
    # Check events are read whole (check_targets, check_changes); a workflow run is a
    # deployment's news (valine.core.deploy).
    judged_elsewhere = {CheckSuiteCompleted, CommitStatusChanged, WorkflowRunChanged}
    assert set(tracking.RULES) == set(EVENT_TYPES) - judged_elsewhere


def test_a_second_handler_for_the_same_key_is_refused_at_import_time() -> None:
    registry: Registry[str] = Registry("job kind")

    @registry.register("plan")
    def first(self: object, job: dict[str, object]) -> None: ...

    with pytest.raises(ValueError, match="job kind 'plan' already has a handler"):

        @registry.register("plan")
        def second(self: object, job: dict[str, object]) -> None: ...

    with pytest.raises(ValueError, match="already has a rule"):
        tracking.rule(next(iter(tracking.RULES)))(lambda event, context: [])


def test_bound_handlers_are_the_owners_methods() -> None:
    registry: Registry[str] = Registry("job kind")

    class Owner:
        def __init__(self) -> None:
            self.seen: list[str] = []

        @registry.register("a", "b")
        def handle(self, job: str) -> None:
            self.seen.append(job)

    owner = Owner()
    handlers = registry.bound(owner)
    handlers["a"]("one")
    handlers["b"]("two")
    assert owner.seen == ["one", "two"]
    assert registry.keys() == {"a", "b"}


# -- executor kinds ------------------------------------------------------------------------


def test_every_executor_kind_has_a_dispatch_handler() -> None:
    from valine.core.executors import KINDS
    from valine.usecases.execution import dispatchers

    assert set(dispatchers.keys()) == set(KINDS) == {"workflow", "assign", "label"}


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"kind": "robot"}, "executor.kind must be one of workflow, assign, label"),
        ({"kind": "workflow"}, "executor.workflow is required when executor.kind = workflow"),
        ({"kind": "assign"}, "executor.assignee is required when executor.kind = assign"),
    ],
)
def test_an_executor_kind_names_what_it_needs(section: dict[str, str], error: str) -> None:
    from valine.core.errors import ConfigurationError
    from valine.core.policy import policy_from_mapping

    with pytest.raises(ConfigurationError, match=error):
        policy_from_mapping({"executor": section})


@pytest.mark.parametrize(
    ("section", "line", "assignees", "dispatches"),
    [
        (
            {"kind": "workflow", "workflow": "agent.yml"},
            "kind=workflow workflow='agent.yml' ref='main'",
            (),
            True,
        ),
        (
            {"kind": "assign", "assignee": "Agent"},
            "kind=assign assignee='Agent'",
            ("Agent",),
            False,
        ),
        ({"kind": "label"}, "kind=label", (), False),
    ],
)
def test_each_executor_kind_describes_itself(
    section: dict[str, str], line: str, assignees: tuple[str, ...], dispatches: bool
) -> None:
    from valine.core.executors import kind_of
    from valine.core.policy import policy_from_mapping, policy_summary

    executor = policy_from_mapping({"executor": section}).executor
    kind = kind_of(executor)
    assert (kind.line(executor), kind.assignees(executor), kind.dispatches) == (
        line,
        assignees,
        dispatches,
    )
    summary = policy_summary(policy_from_mapping({"executor": section}))
    assert any(row.startswith(f"executor: {line} pr_timeout=") for row in summary)
