"""The planner's choice and order of tasks, and valine.toml's rules."""

from __future__ import annotations

import pytest

from valine.core.errors import ConfigurationError
from valine.core.models import Issue
from valine.core.planner import plan_tasks
from valine.core.policy import Labels, PlannerRules, Policy, deploy_inputs, policy_from_mapping


def issue(
    number: int, *labels: str, created: str = "2026-01-01T00:00:00Z", due: str | None = None
) -> Issue:
    return Issue(number, f"Issue {number}", ("ready", *labels), created, due)


@pytest.mark.parametrize(
    ("issues", "rules", "expected"),
    [
        # priority label first, then no priority; P0 before P2
        ([issue(1), issue(2, "P2"), issue(3, "P0")], PlannerRules(), [3, 2, 1]),
        # same priority: earliest milestone due date, none last
        (
            [
                issue(1, "P1"),
                issue(2, "P1", due="2026-03-01T00:00:00Z"),
                issue(3, "P1", due="2026-02-01T00:00:00Z"),
            ],
            PlannerRules(),
            [3, 2, 1],
        ),
        # same priority and milestone: oldest first, then number
        (
            [
                issue(5, created="2026-02-01T00:00:00Z"),
                issue(4, created="2026-01-01T00:00:00Z"),
                issue(3, created="2026-02-01T00:00:00Z"),
            ],
            PlannerRules(),
            [4, 3, 5],
        ),
        # order configurable: age alone
        (
            [
                issue(1, "P0", created="2026-05-01T00:00:00Z"),
                issue(2, created="2026-01-01T00:00:00Z"),
            ],
            PlannerRules(order=("age",)),
            [2, 1],
        ),
        # capped
        ([issue(n) for n in range(1, 9)], PlannerRules(max_tasks=3), [1, 2, 3]),
        # blocked and not-ready issues are left out
        (
            [issue(1, "blocked"), Issue(2, "x", ("bug",), "2026-01-01T00:00:00Z"), issue(3)],
            PlannerRules(),
            [3],
        ),
    ],
)
def test_plan_order(issues: list[Issue], rules: PlannerRules, expected: list[int]) -> None:
    tasks = plan_tasks(issues, Labels(), rules)
    assert [t.issue_number for t in tasks] == expected
    assert all(t.labels for t in tasks)  # labels kept for later relabelling


def test_no_ready_issue_plans_nothing() -> None:
    assert plan_tasks([], Labels(), PlannerRules()) == ()


def test_policy_defaults_and_overrides() -> None:
    assert policy_from_mapping({}) == Policy()
    policy = policy_from_mapping(
        {
            "labels": {"ready": "todo", "blocking": ["wip", "on-hold"]},
            "planner": {"max_tasks": 3, "order": ["milestone"]},
            "executor": {"kind": "workflow", "workflow": "agent.yml", "ref": "trunk"},
            "merge": {"method": "rebase"},
            "policy": {"on_task_failure": "fail_run"},
        }
    )
    assert policy.labels.ready == "todo"
    assert policy.labels.blocking == ("wip", "on-hold")
    assert policy.planner.max_tasks == 3
    assert (policy.executor.kind, policy.executor.workflow, policy.executor.ref) == (
        "workflow",
        "agent.yml",
        "trunk",
    )
    assert policy.merge_method == "rebase"


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"executor": {"kind": "robot"}}, "executor.kind"),
        ({"executor": {"kind": "workflow"}}, "executor.workflow"),
        ({"executor": {"kind": "assign"}}, "executor.assignee"),
        ({"merge": {"method": "octopus"}}, "merge.method"),
        ({"planner": {"max_tasks": 0}}, "planner.max_tasks"),
        ({"planner": {"max_tasks": "5"}}, "planner.max_tasks"),
        ({"planner": {"order": ["vibes"]}}, "planner.order"),
        ({"labels": {"blocking": "blocked"}}, "labels.blocking"),
        ({"labels": "ready"}, "labels"),
        ({"policy": {"on_task_failure": "panic"}}, "policy.on_task_failure"),
        ({"ship": {"deploy_workflow": ""}}, "ship.deploy_workflow"),
        ({"ship": {"deploy_workflow": 7}}, "ship.deploy_workflow"),
        ({"ship": {"inputs": {"a": 1}}}, "ship.inputs.a"),
        ({"ship": {"inputs": {"a": "{secret}"}}}, "ship.inputs.a"),
        ({"ship": {"inputs": {f"k{i}": "v" for i in range(26)}}}, "ship.inputs"),
        ({"ship": {"deploy_timeout": 10}}, "ship.deploy_timeout"),
        ({"ship": {"workflow": "deploy.yml"}}, "ship"),
        ({"schedule": {"plan": "0 9 * * 1-5"}}, "schedule.channel_id"),
        ({"schedule": {"plan": "", "channel_id": "1"}}, "schedule.plan"),
        ({"schedule": {"digest": 9, "channel_id": "1"}}, "schedule.digest"),
        ({"schedule": {"channel_id": "general"}}, "schedule.channel_id"),
        ({"schedule": {"timezone": ""}}, "schedule.timezone"),
        ({"schedule": {"at": "9:00"}}, "schedule"),
    ],
)
def test_bad_policy_names_the_key(data: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names.replace(".", r"\.")):
        policy_from_mapping(data)


def test_ship_and_schedule_keys() -> None:
    policy = policy_from_mapping(
        {
            "ship": {
                "deploy_workflow": "deploy.yml",
                "ref": "prod",
                "inputs": {"run": "{run_id}", "prs": "PRs {pull_requests}", "env": "prod"},
            },
            "schedule": {"plan": "0 9 * * 1-5", "timezone": "Europe/Paris", "channel_id": "5"},
        }
    )
    assert policy.ship.deploy_workflow == "deploy.yml" and policy.ship.ref == "prod"
    assert deploy_inputs(policy.ship, "r1", [5, 6], [1, 2]) == {
        "run": "r1",
        "prs": "PRs 5,6",
        "env": "prod",
    }
    assert policy.schedule.entries == {"plan": "0 9 * * 1-5"}
    assert policy_from_mapping({}).ship.deploy_workflow is None
    assert policy_from_mapping({}).schedule.entries == {}
