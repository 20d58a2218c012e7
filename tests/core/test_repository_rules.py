"""``[[repositories]]`` in valine.toml: each entry's overrides merged over the top level."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valine.core.errors import ConfigurationError
from valine.core.policy import (
    Labels,
    Policy,
    policy_from_mapping,
    rules_from_mapping,
    rules_summary,
)

TOP: dict[str, Any] = {
    "labels": {"ready": "todo", "blocking": ["hold"]},
    "executor": {"kind": "workflow", "workflow": "agent.yml", "ref": "main"},
    "merge": {"method": "rebase"},
    "permissions": {"plan": {"roles": ["1"]}, "approve": {"users": ["2"]}},
    "schedule": {"plan": "0 9 * * 1-5", "channel_id": "900"},
}


def test_an_entry_overrides_key_by_key_and_inherits_the_rest() -> None:
    rules = rules_from_mapping(
        {
            **TOP,
            "repositories": [
                {"name": "acme/rocket", "channel_id": "100"},
                {
                    "name": "acme/probe",
                    "channel_id": "200",
                    "installation_id": 77,
                    "labels": {"ready": "go"},
                    "executor": {"kind": "assign", "assignee": "robot"},
                    "permissions": {"approve": {"roles": ["3"]}},
                    "checks": {"required": ["test"]},
                },
            ],
        }
    )
    top = policy_from_mapping(TOP)
    assert rules.policy == top
    rocket, probe = rules.repositories
    assert (rocket.name, rocket.channel_id, rocket.installation_id) == ("acme/rocket", "100", None)
    # nothing overridden: the top level's rules, scheduled posts in its own channel
    assert rocket.policy == replace(top, schedule=replace(top.schedule, channel_id="100"))
    assert probe.installation_id == "77"
    assert probe.policy.labels == Labels(ready="go", blocking=("hold",))
    assert probe.policy.executor.kind == "assign"
    assert probe.policy.executor.assignee == "robot"
    assert probe.policy.executor.ref == "main"  # inherited
    assert probe.policy.merge_method == "rebase"  # inherited
    assert probe.policy.required_checks == ("test",)
    # one action's grant replaced, the others inherited
    assert probe.policy.permissions.grant("approve").roles == frozenset({"3"})
    assert probe.policy.permissions.grant("approve").users == frozenset()
    assert probe.policy.permissions.grant("plan").roles == frozenset({"1"})
    assert probe.policy.schedule.channel_id == "200"


@given(
    ready=st.none() | st.text(min_size=1, max_size=20),
    shipped=st.none() | st.text(min_size=1, max_size=20),
    max_tasks=st.none() | st.integers(1, 100),
    method=st.none() | st.sampled_from(["merge", "squash", "rebase"]),
)
def test_any_override_changes_exactly_its_keys(
    ready: str | None, shipped: str | None, max_tasks: int | None, method: str | None
) -> None:
    """Whatever an entry overrides, its policy is the top level's with those keys only."""
    labels = {k: v for k, v in (("ready", ready), ("shipped", shipped)) if v is not None}
    entry: dict[str, Any] = {"name": "acme/probe", "labels": labels}
    if max_tasks is not None:
        entry["planner"] = {"max_tasks": max_tasks}
    if method is not None:
        entry["merge"] = {"method": method}
    top = policy_from_mapping(TOP)
    (probe,) = rules_from_mapping({**TOP, "repositories": [entry]}).repositories
    expected = replace(
        top,
        labels=replace(top.labels, **labels),
        planner=replace(top.planner, max_tasks=max_tasks or top.planner.max_tasks),
        merge_method=method or top.merge_method,
    )
    assert probe.policy == expected


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [{"channel_id": "1"}],
            'repositories: entry 1: name must look like owner/name ("acme/rocket")',
        ),
        ([{"name": "rocket"}], "repositories: rocket: name must look like owner/name"),
        (
            [{"name": "acme/rocket", "chanel_id": "1"}],
            "repositories: acme/rocket: unknown key chanel_id; did you mean channel_id?",
        ),
        (
            [{"name": "acme/rocket", "labels": {"redy": "x"}}],
            "repositories: acme/rocket: unknown key labels.redy; did you mean labels.ready?",
        ),
        (
            [{"name": "acme/rocket", "discord": {"guild_ids": ["1"]}}],
            "repositories: acme/rocket: unknown key discord (known: name, channel_id,",
        ),
        (
            [{"name": "acme/rocket", "channel_id": "general"}],
            "repositories: acme/rocket: channel_id must be a Discord channel id (digits)",
        ),
        (
            [{"name": "acme/rocket", "installation_id": "x1"}],
            "repositories: acme/rocket: installation_id must be a GitHub App installation id",
        ),
        (
            [{"name": "acme/rocket", "executor": {"kind": "assign"}}],
            "repositories: acme/rocket: executor.assignee is required when executor.kind = assign",
        ),
        (
            [{"name": "acme/rocket"}, {"name": "ACME/Rocket"}],
            "repositories: ACME/Rocket is listed twice",
        ),
        (
            [{"name": "acme/a", "channel_id": "5"}, {"name": "acme/b", "channel_id": "5"}],
            "repositories: acme/a and acme/b share channel_id 5: a channel plans one repository",
        ),
        (
            [{"name": "acme/a", "merge": "squash"}],
            "repositories: acme/a: [repositories.merge] must be a table",
        ),
    ],
)
def test_a_bad_entry_is_refused_naming_it(entries: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        rules_from_mapping({"repositories": entries})
    assert str(caught.value).startswith(message)


def test_repositories_must_be_an_array_of_tables() -> None:
    with pytest.raises(ConfigurationError, match=r"array of tables"):
        rules_from_mapping({"repositories": {"name": "acme/rocket"}})


def test_a_channel_the_bot_does_not_answer_in_is_refused() -> None:
    data = {
        "discord": {"guild_ids": ["1"], "channel_ids": ["10"]},
        "repositories": [{"name": "acme/a", "channel_id": "11"}],
    }
    with pytest.raises(ConfigurationError, match=r"not in \[discord\] channel_ids"):
        rules_from_mapping(data)


def test_every_problem_of_the_entries_is_reported_at_once() -> None:
    data = {
        "planer": {},
        "repositories": [{"name": "acme/a", "labls": {}}, {"name": "acme/b", "merge": {"x": 1}}],
    }
    with pytest.raises(ConfigurationError) as caught:
        rules_from_mapping(data)
    text = str(caught.value)
    assert text.startswith("3 problems:")
    assert "repositories: acme/a: unknown key labls; did you mean labels?" in text
    assert "repositories: acme/b: unknown key merge.x" in text


def test_without_entries_the_rules_are_the_top_levels() -> None:
    rules = rules_from_mapping(TOP)
    assert rules.repositories == ()
    assert rules.policy == policy_from_mapping(TOP)
    assert rules_from_mapping({}).policy == Policy()


def test_the_summary_shows_each_repository_and_only_what_it_changes() -> None:
    rules = rules_from_mapping(
        {
            **TOP,
            "repositories": [
                {"name": "acme/rocket"},
                {"name": "acme/probe", "channel_id": "200", "merge": {"method": "merge"}},
            ],
        }
    )
    text = "\n".join(rules_summary(rules))
    assert "merge: method=rebase" in text
    assert "repository acme/rocket: channel_id=none" in text
    assert "  (the top-level rules)" in text
    assert "repository acme/probe: channel_id=200 installation_id=looked up" in text
    assert "  merge: method=merge" in text


def test_ship_and_schedule_are_overridden_per_repository_key_by_key() -> None:
    top = {
        **TOP,
        "ship": {"deploy_workflow": "deploy.yml", "ref": "main", "deploy_timeout": 1800},
        "schedule": {"timezone": "Europe/Paris", "plan": "0 9 * * 1-5", "channel_id": "900"},
    }
    rules = rules_from_mapping(
        {
            **top,
            "repositories": [
                {"name": "acme/rocket", "channel_id": "100"},
                {
                    "name": "acme/probe",
                    "channel_id": "200",
                    "ship": {"deploy_workflow": "release.yml"},
                    "schedule": {"plan": "0 10 * * *", "digest": "0 18 * * *"},
                },
                {"name": "acme/lander", "schedule": {"channel_id": "300", "timezone": "UTC"}},
            ],
        }
    )
    rocket, probe, lander = rules.repositories
    assert rocket.policy.ship == rules.policy.ship
    assert probe.policy.ship.deploy_workflow == "release.yml"
    assert (probe.policy.ship.ref, probe.policy.ship.deploy_timeout) == ("main", 1800)
    assert probe.policy.schedule.entries == {"plan": "0 10 * * *", "digest": "0 18 * * *"}
    assert probe.policy.schedule.timezone == "Europe/Paris"  # inherited
    assert probe.policy.schedule.channel_id == "200"  # its channel, over the top level's
    assert rocket.policy.schedule.entries == {"plan": "0 9 * * 1-5"}
    # no channel_id of its own: its [repositories.schedule] channel, else the top level's
    assert (lander.policy.schedule.channel_id, lander.policy.schedule.timezone) == ("300", "UTC")
    summary = rules_summary(rules)
    assert "  ship: deploy_workflow='release.yml' ref='main' inputs={} deploy_timeout=1800s" in (
        summary
    )


def test_a_schedule_of_its_own_needs_no_top_level_schedule() -> None:
    (probe,) = rules_from_mapping(
        {
            "repositories": [
                {"name": "acme/probe", "channel_id": "200", "schedule": {"digest": "0 18 * * *"}}
            ]
        }
    ).repositories
    assert probe.policy.schedule.entries == {"digest": "0 18 * * *"}
    assert probe.policy.schedule.channel_id == "200"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"ship": {"deploy_timeout": 1}}, "repositories: acme/probe: ship.deploy_timeout must be"),
        ({"ship": {"inputs": {"x": "{nope}"}}}, "repositories: acme/probe: ship.inputs.x: unknown"),
        (
            {"ship": {"deploy_workflw": "d.yml"}},
            "repositories: acme/probe: unknown key ship.deploy_",
        ),
        (
            {"schedule": {"plan": "0 9 * * *"}},
            "repositories: acme/probe: schedule.channel_id is required",
        ),
        (
            {"schedule": "daily"},
            "repositories: acme/probe: [repositories.schedule] must be a table",
        ),
    ],
)
def test_a_bad_ship_or_schedule_override_names_its_entry(
    entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        rules_from_mapping({"repositories": [{"name": "acme/probe", **entry}]})
    assert str(caught.value).startswith(message), caught.value


def test_an_entry_turns_off_a_slot_it_would_inherit_with_false() -> None:
    top = {"schedule": {"plan": "0 9 * * 1-5", "digest": "0 17 * * 1-5", "channel_id": "900"}}
    rules = rules_from_mapping(
        {**top, "repositories": [{"name": "acme/probe", "schedule": {"plan": False}}]}
    )
    (probe,) = rules.repositories
    assert probe.policy.schedule.entries == {"digest": "0 17 * * 1-5"}
    assert rules.policy.schedule.entries == {"plan": "0 9 * * 1-5", "digest": "0 17 * * 1-5"}
    with pytest.raises(ConfigurationError, match=r"schedule\.plan must be a cron expression"):
        rules_from_mapping({"repositories": [{"name": "acme/probe", "schedule": {"plan": True}}]})
