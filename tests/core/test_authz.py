"""Authorisation: deny by default, roles or users, self-approval, and the messages."""

from __future__ import annotations

import pytest

from valine.core.authz import Grant, Permissions, decide, permissions_from_mapping
from valine.core.errors import ConfigurationError

PERMS = Permissions(
    {
        "plan": Grant(roles=frozenset({"10"})),
        "approve": Grant(roles=frozenset({"20"}), users=frozenset({"7"})),
        "ship": Grant(users=frozenset({"7"})),
    },
    prevent_self_approval=True,
)


@pytest.mark.parametrize(
    ("action", "user", "roles", "planned_by", "allowed"),
    [
        ("plan", "1", ["10"], None, True),
        ("plan", "1", ["11"], None, False),
        ("approve", "1", ["20"], "2", True),  # by role
        ("approve", "7", [], "2", True),  # by user id
        ("approve", "1", [], "2", False),
        ("approve", "7", [], "7", False),  # planned it: self-approval refused
        ("ship", "7", [], "7", True),  # self-approval is about approving only
        ("ship", "1", ["10", "20"], None, False),
        ("cancel", "7", ["10", "20"], None, False),  # nobody configured: denied
        ("status", "1", [], None, True),
        ("help", "1", [], None, True),
    ],
)
def test_decisions(
    action: str, user: str, roles: list[str], planned_by: str | None, allowed: bool
) -> None:
    assert decide(PERMS, action, user, roles, planned_by).allowed is allowed


def test_messages_say_who_may_and_how_to_configure() -> None:
    refused = decide(PERMS, "approve", "1", ["99"])
    assert "<@&20>" in refused.reason
    assert "<@7>" in refused.reason
    nobody = decide(PERMS, "cancel", "7", [])
    assert "[permissions.cancel]" in nobody.reason
    assert "valine.toml" in nobody.reason
    assert "prevent_self_approval" in decide(PERMS, "approve", "7", [], "7").reason


def test_parsing_the_permissions_table() -> None:
    perms = permissions_from_mapping(
        {"prevent_self_approval": True, "ship": {"roles": ["123"], "users": [456]}}
    )
    assert perms.prevent_self_approval
    assert perms.grant("ship") == Grant(frozenset({"123"}), frozenset({"456"}))
    assert perms.grant("plan").empty


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"ship": {"roles": "123"}}, "permissions.ship.roles"),
        ({"ship": {"users": ["ada"]}}, "permissions.ship.users"),
        ({"deploy": {}}, "deploy"),
        ({"prevent_self_approval": "yes"}, "prevent_self_approval"),
        ({"plan": ["1"]}, "permissions.plan"),
    ],
)
def test_bad_permissions_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")):
        permissions_from_mapping(data)
