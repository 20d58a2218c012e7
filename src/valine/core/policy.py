"""The workflow rules of one repository, read from ``valine.toml`` (parsed by the runtime).

Every field has a default, so a team can start with no file at all::

    [labels]
    ready = "ready"
    in_progress = "in-progress"
    shipped = "shipped"
    blocking = ["blocked"]

    [planner]
    max_tasks = 5
    priority_labels = ["P0", "P1", "P2", "P3"]   # first is most urgent
    order = ["priority", "milestone", "age"]

    [executor]
    kind = "label"            # "workflow", "assign" or "label"
    workflow = "agent.yml"    # kind = "workflow": the workflow file (or id) to dispatch
    ref = "main"              # kind = "workflow": the branch it runs on
    assignee = "agent-login"  # kind = "assign": who gets the issue
    pr_timeout = 3600         # seconds a handed-over task may go without a pull request
    pr_authors = ["a-login"]  # more logins whose pull requests may claim tasks

    [checks]
    timeout = 3600            # seconds a pull request's checks may take to conclude
    required = ["test", "lint"]   # only these checks count (default: every check counts)

    [merge]
    method = "squash"         # "merge", "squash" or "rebase"

    [policy]
    on_task_failure = "continue"   # or "fail_run"
    on_stale = "notify"            # "notify", "redispatch" or "fail"
    max_dispatches = 2             # hand-overs of one task in all, the first included

    [permissions]                  # deny by default: see valine.core.authz
    prevent_self_approval = false
    approve = { roles = ["<discord role id>"], users = ["<discord user id>"] }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from valine.core.authz import Permissions, permissions_from_mapping
from valine.core.errors import ConfigurationError

EXECUTOR_KINDS = ("workflow", "assign", "label")
MERGE_METHODS = ("merge", "squash", "rebase")
ORDER_KEYS = ("priority", "milestone", "age")
FAILURE_POLICIES = ("continue", "fail_run")
STALE_POLICIES = ("notify", "redispatch", "fail")
#: Shortest timeout accepted: the reconcile that notices stale work runs every 5 minutes.
MIN_TIMEOUT = 60


@dataclass(frozen=True, slots=True)
class Labels:
    """The labels the workflow reads and writes."""

    ready: str = "ready"
    in_progress: str = "in-progress"
    shipped: str = "shipped"
    blocking: tuple[str, ...] = ("blocked",)


@dataclass(frozen=True, slots=True)
class PlannerRules:
    """How the planner picks and orders the day's tasks."""

    max_tasks: int = 5
    priority_labels: tuple[str, ...] = ("P0", "P1", "P2", "P3")
    order: tuple[str, ...] = ORDER_KEYS


@dataclass(frozen=True, slots=True)
class Executor:
    """Who works on a task once the run is approved."""

    kind: str = "label"
    workflow: str | None = None
    ref: str = "main"
    assignee: str | None = None
    #: Logins whose pull requests may claim tasks besides collaborators and bots.
    pr_authors: tuple[str, ...] = ()
    #: Seconds a handed-over task may go without a pull request before it is stale.
    pr_timeout: int = 3600

    @property
    def trusted_logins(self) -> frozenset[str]:
        """Lower-case logins trusted as pull request authors (assignee and pr_authors)."""
        logins = (*self.pr_authors, *((self.assignee,) if isinstance(self.assignee, str) else ()))
        return frozenset(login.lower() for login in logins)


@dataclass(frozen=True, slots=True)
class Liveness:
    """What happens to work that stops moving."""

    #: Seconds a pull request's checks may take to conclude before its task is stale.
    checks_timeout: int = 3600
    #: "notify" (say so, keep waiting), "redispatch" (hand a task without a pull
    #: request to its executor again) or "fail" (the task fails).
    on_stale: str = "notify"
    #: Hand-overs of one task in all, the first included, that ``redispatch`` may reach.
    max_dispatches: int = 2


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything ``valine.toml`` configures."""

    labels: Labels = field(default_factory=Labels)
    planner: PlannerRules = field(default_factory=PlannerRules)
    executor: Executor = field(default_factory=Executor)
    merge_method: str = "squash"
    on_task_failure: str = "continue"
    permissions: Permissions = field(default_factory=Permissions)
    #: ``[checks] required``: the only check names that count; None: every check counts.
    required_checks: tuple[str, ...] | None = None
    liveness: Liveness = field(default_factory=Liveness)


def policy_from_mapping(data: Mapping[str, Any]) -> Policy:
    """The policy a parsed ``valine.toml`` describes; raises ConfigurationError naming the key."""
    labels = _section(data, "labels")
    planner = _section(data, "planner")
    executor = _section(data, "executor")
    policy = Policy(
        labels=Labels(
            ready=_str(labels, "labels.ready", "ready"),
            in_progress=_str(labels, "labels.in_progress", "in-progress"),
            shipped=_str(labels, "labels.shipped", "shipped"),
            blocking=_strs(labels, "labels.blocking", ("blocked",)),
        ),
        planner=PlannerRules(
            max_tasks=_int(planner, "planner.max_tasks", 5),
            priority_labels=_strs(planner, "planner.priority_labels", ("P0", "P1", "P2", "P3")),
            order=_strs(planner, "planner.order", ORDER_KEYS),
        ),
        executor=Executor(
            kind=_str(executor, "executor.kind", "label"),
            workflow=executor.get("workflow"),
            ref=_str(executor, "executor.ref", "main"),
            assignee=executor.get("assignee"),
            pr_authors=_strs(executor, "executor.pr_authors", ()),
            pr_timeout=_int(executor, "executor.pr_timeout", 3600),
        ),
        merge_method=_str(_section(data, "merge"), "merge.method", "squash"),
        on_task_failure=_str(_section(data, "policy"), "policy.on_task_failure", "continue"),
        permissions=permissions_from_mapping(_section(data, "permissions")),
        required_checks=_required_checks(_section(data, "checks")),
        liveness=Liveness(
            checks_timeout=_int(_section(data, "checks"), "checks.timeout", 3600),
            on_stale=_str(_section(data, "policy"), "policy.on_stale", "notify"),
            max_dispatches=_int(_section(data, "policy"), "policy.max_dispatches", 2),
        ),
    )
    _check(policy)
    return policy


def _check(policy: Policy) -> None:
    executor = policy.executor
    if executor.kind not in EXECUTOR_KINDS:
        raise ConfigurationError(f"executor.kind must be one of {', '.join(EXECUTOR_KINDS)}")
    if executor.kind == "workflow" and not executor.workflow:
        raise ConfigurationError("executor.workflow is required when executor.kind = workflow")
    if executor.kind == "assign" and not executor.assignee:
        raise ConfigurationError("executor.assignee is required when executor.kind = assign")
    if policy.merge_method not in MERGE_METHODS:
        raise ConfigurationError(f"merge.method must be one of {', '.join(MERGE_METHODS)}")
    if policy.on_task_failure not in FAILURE_POLICIES:
        raise ConfigurationError("policy.on_task_failure must be continue or fail_run")
    _check_liveness(policy)
    if not 1 <= policy.planner.max_tasks <= 100:
        raise ConfigurationError("planner.max_tasks must be between 1 and 100")
    unknown = set(policy.planner.order) - set(ORDER_KEYS)
    if unknown:
        raise ConfigurationError(f"planner.order: unknown key(s) {', '.join(sorted(unknown))}")


def _required_checks(section: Mapping[str, Any]) -> tuple[str, ...] | None:
    if "required" not in section:
        return None
    names = _strs(section, "checks.required", ())
    if not names or not all(names):
        raise ConfigurationError("checks.required must list at least one check name")
    return names


def _check_liveness(policy: Policy) -> None:
    live = policy.liveness
    if policy.executor.pr_timeout < MIN_TIMEOUT:
        raise ConfigurationError(f"executor.pr_timeout must be at least {MIN_TIMEOUT} seconds")
    if live.checks_timeout < MIN_TIMEOUT:
        raise ConfigurationError(f"checks.timeout must be at least {MIN_TIMEOUT} seconds")
    if live.on_stale not in STALE_POLICIES:
        raise ConfigurationError(f"policy.on_stale must be one of {', '.join(STALE_POLICIES)}")
    if not 1 <= live.max_dispatches <= 10:
        raise ConfigurationError("policy.max_dispatches must be between 1 and 10")


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigurationError(f"[{name}] must be a table")
    return section


def _str(section: Mapping[str, Any], key: str, default: str) -> str:
    value = section.get(key.rsplit(".", 1)[1], default)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{key} must be a non-empty string")
    return value


def _int(section: Mapping[str, Any], key: str, default: int) -> int:
    value = section.get(key.rsplit(".", 1)[1], default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(f"{key} must be a whole number")
    return value


def _strs(section: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = section.get(key.rsplit(".", 1)[1], default)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{key} must be a list of strings")
    return tuple(value)
