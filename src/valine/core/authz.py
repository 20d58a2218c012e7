"""Who may do what: deny by default for every action that changes something.

``valine.toml`` lists, per action, the Discord role ids and user ids allowed::

    [permissions]
    prevent_self_approval = true   # whoever planned a run may not approve it

    [permissions.approve]
    roles = ["1200000000000000001"]
    users = ["1100000000000000042"]

An action with nobody configured is refused with a message saying how to configure it.
``/status`` and ``/help`` are open to everyone. Decisions are data; the use cases record
every one of them in the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from valine.core.errors import ConfigurationError

#: The actions that need a permission (each a ``[permissions]`` entry); everything
#: else is open.
GUARDED_ACTIONS = ("plan", "approve", "ship", "cancel")
#: What each guarded action (its own grant, or one of ``GRANTED_AS``) lets one do, in
#: the words of a refusal. A command's permission is its entry here.
VERBS: dict[str, str] = {
    "plan": "plan runs",
    "approve": "approve runs",
    "ship": "ship runs",
    "cancel": "cancel runs",
    "retry": "retry tasks",
    "deploy": "deploy runs",
}
#: Actions authorised by another action's grant: retrying a task hands it to the
#: executor again, which is what approving does, so the approvers may; deploying a
#: shipped run is part of shipping, so those who may ship may.
GRANTED_AS: dict[str, str] = {"retry": "approve", "deploy": "ship"}


def grant_name(action: str) -> str:
    """The ``[permissions]`` entry that authorises ``action``."""
    return GRANTED_AS.get(action, action)


def is_guarded(action: str) -> bool:
    """True when ``action`` needs a permission (its own grant or another's)."""
    return grant_name(action) in GUARDED_ACTIONS


@dataclass(frozen=True, slots=True)
class Grant:
    """The roles and users allowed one action."""

    roles: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        """True when nobody at all is allowed."""
        return not self.roles and not self.users


@dataclass(frozen=True, slots=True)
class Permissions:
    """Every action's grant, and the self-approval rule."""

    grants: Mapping[str, Grant] = field(default_factory=dict)
    prevent_self_approval: bool = False

    def grant(self, action: str) -> Grant:
        """The grant of ``action`` (empty if not configured)."""
        return self.grants.get(action, Grant())


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an attempt is allowed, and the message for the user if not."""

    allowed: bool
    reason: str = ""


def decide(
    permissions: Permissions,
    action: str,
    user_id: str,
    roles: Iterable[str],
    planned_by: str | None = None,
) -> Decision:
    """May ``user_id`` (with ``roles``) do ``action``? ``planned_by``: who planned the run."""
    if not is_guarded(action):
        return Decision(True)
    grant = permissions.grant(grant_name(action))
    if grant.empty:
        return Decision(
            False,
            f"Nobody may {VERBS[action]} yet: add Discord role or user "
            f"ids to `[permissions.{grant_name(action)}]` in valine.toml.",
        )
    if user_id not in grant.users and not grant.roles.intersection(roles):
        return Decision(False, f"You may not {VERBS[action]}. {who_may(grant)}")
    if action == "approve" and permissions.prevent_self_approval and planned_by == user_id:
        return Decision(
            False,
            "You planned this run, and this server requires someone else "
            "to approve it (`prevent_self_approval`).",
        )
    return Decision(True)


def who_may(grant: Grant) -> str:
    """A sentence naming the roles and users of ``grant``, with Discord mentions."""
    parts = [f"<@&{r}>" for r in sorted(grant.roles)] + [f"<@{u}>" for u in sorted(grant.users)]
    if not parts:
        return "Nobody is configured."
    return "Allowed: " + ", ".join(parts) + "."


def permissions_from_mapping(data: Mapping[str, Any]) -> Permissions:
    """The ``[permissions]`` table of ``valine.toml``; raises ConfigurationError naming keys."""
    grants = {}
    for action in GUARDED_ACTIONS:
        section = data.get(action, {})
        if not isinstance(section, Mapping):
            raise ConfigurationError(f"permissions.{action} must be a table")
        grant = Grant(
            roles=_ids(section, f"permissions.{action}.roles"),
            users=_ids(section, f"permissions.{action}.users"),
        )
        if not grant.empty:
            grants[action] = grant
    unknown = set(data) - set(GUARDED_ACTIONS) - {"prevent_self_approval"}
    if unknown:
        raise ConfigurationError(
            f"permissions: unknown key(s) {', '.join(sorted(unknown))} "
            f"(actions are {', '.join(GUARDED_ACTIONS)})"
        )
    flag = data.get("prevent_self_approval", False)
    if not isinstance(flag, bool):
        raise ConfigurationError("permissions.prevent_self_approval must be true or false")
    return Permissions(grants, flag)


def _ids(section: Mapping[str, Any], key: str) -> frozenset[str]:
    values = section.get(key.rsplit(".", 1)[1], [])
    if not isinstance(values, list):
        raise ConfigurationError(f"{key} must be a list of Discord ids")
    ids = [str(v) for v in values]
    for value in ids:
        if not value.isdigit():
            raise ConfigurationError(f"{key}: {value!r} is not a Discord id (digits only)")
    return frozenset(ids)
