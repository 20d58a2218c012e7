"""valine.toml refuses what it does not know, naming the closest known name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valine.core.errors import ConfigurationError
from valine.core.policy import SCHEMA, policy_from_mapping, policy_summary, unknown_names


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"permission": {"plan": {"roles": ["1"]}}},
            "unknown section [permission]; did you mean [permissions]?",
        ),
        ({"planer": {"max_tasks": 3}}, "unknown section [planer]; did you mean [planner]?"),
        ({"labels": {"redy": "go"}}, "unknown key labels.redy; did you mean labels.ready?"),
        (
            {"executor": {"pr_timout": 90}},
            "unknown key executor.pr_timout; did you mean executor.pr_timeout?",
        ),
        (
            {"permissions": {"aprove": {"roles": ["1"]}}},
            "unknown key permissions.aprove; did you mean permissions.approve?",
        ),
        (
            {"permissions": {"approve": {"role": ["1"]}}},
            "unknown key permissions.approve.role; did you mean permissions.approve.roles?",
        ),
        (
            {"discord": {"guilds": ["1"]}},
            "unknown key discord.guilds; did you mean discord.guild_ids?",
        ),
    ],
)
def test_a_mistyped_name_is_refused_with_the_closest_known_one(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        policy_from_mapping(data)
    assert str(caught.value) == message


def test_a_name_close_to_nothing_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        policy_from_mapping({"zzzzzz": {}})
    text = str(caught.value)
    assert text.startswith("unknown section [zzzzzz] (known: [labels], [planner]")
    assert "[permissions]" in text


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        policy_from_mapping({"planer": {}, "merge": {"metod": "squash"}})
    text = str(caught.value)
    assert text.startswith("2 problems:")
    assert "[planer]; did you mean [planner]?" in text
    assert "merge.metod; did you mean merge.method?" in text


def test_every_documented_key_is_accepted() -> None:
    """The schema and the readers agree: a file using every key loads."""
    full = {
        "labels": {"ready": "r", "in_progress": "i", "shipped": "s", "blocking": ["b"]},
        "planner": {"max_tasks": 3, "priority_labels": ["P0"], "order": ["age"]},
        "executor": {
            "kind": "workflow",
            "workflow": "agent.yml",
            "ref": "main",
            "assignee": "bot",
            "pr_timeout": 120,
            "pr_authors": ["x"],
        },
        "checks": {"timeout": 120, "required": ["test"]},
        "merge": {"method": "rebase"},
        "policy": {"on_task_failure": "fail_run", "on_stale": "fail", "max_dispatches": 3},
        "discord": {
            "guild_ids": ["1"],
            "channel_ids": ["2"],
            "default_member_permissions": "0",
            "rate_limit": 5,
        },
        "permissions": {
            "prevent_self_approval": True,
            "plan": {"roles": ["3"]},
            "approve": {"users": ["4"]},
            "ship": {"roles": ["5"], "users": ["6"]},
            "cancel": {"roles": ["7"]},
        },
        "ship": {
            "deploy_workflow": "deploy.yml",
            "ref": "prod",
            "inputs": {"run_id": "{run_id}"},
            "deploy_timeout": 600,
        },
        "schedule": {
            "timezone": "Europe/Paris",
            "plan": "0 9 * * 1-5",
            "digest": "0 17 * * 1-5",
            "channel_id": "8",
        },
    }
    assert set(full) == set(SCHEMA)
    for name, keys in SCHEMA.items():
        assert set(full[name]) == set(keys), name
    policy = policy_from_mapping(full)
    assert policy.merge_method == "rebase"
    assert policy.permissions.grant("ship").users == frozenset({"6"})


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.dictionaries(st.text(min_size=1, max_size=12), st.integers(), max_size=3),
        max_size=4,
    )
)
def test_any_unknown_name_is_named_in_the_error(data: dict[str, dict[str, int]]) -> None:
    """Whatever the names, an unknown one never passes silently and is named."""
    data.pop("repositories", None)  # an array of tables: tests/core/test_repository_rules.py
    unknown = [n for n in data if n not in SCHEMA]
    unknown_keys = [
        f"{n}.{k}"
        for n, section in data.items()
        if n in SCHEMA
        for k in section
        if k not in SCHEMA[n]
    ]
    problems = unknown_names(data)
    assert len(problems) == len(unknown) + len(unknown_keys)
    for name in unknown:
        assert any(f"[{name}]" in p for p in problems)
    for key in unknown_keys:
        assert any(f"unknown key {key}" in p for p in problems)


def test_the_summary_shows_defaults_and_who_may_act() -> None:
    lines = policy_summary(
        policy_from_mapping(
            {"permissions": {"plan": {"roles": ["11"]}}, "merge": {"method": "merge"}}
        )
    )
    text = "\n".join(lines)
    assert "merge: method=merge" in text
    assert "plan: roles=['11'] users=[]" in text
    assert "approve: nobody (denied to everyone)" in text
    assert "discord: no guild_ids" in text
    assert "labels: ready='ready'" in text
