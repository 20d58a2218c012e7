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

    [ship]                         # optional: deploy after ship
    deploy_workflow = "deploy.yml" # dispatched once when a run has shipped
    ref = "main"
    inputs = { run_id = "{run_id}", pull_requests = "{pull_requests}" }
    deploy_timeout = 3600          # seconds the deployment may take to conclude

    [schedule]                     # optional: the day's rhythm (cron, in timezone)
    timezone = "Europe/Paris"
    plan = "0 9 * * 1-5"           # post the plan for approval
    digest = "0 17 * * 1-5"        # post the day's digest
    channel_id = "<discord channel id>"   # where both are posted

    [discord]                      # deny by default: nothing answers without guild_ids
    guild_ids = ["<discord server id>"]
    channel_ids = []               # optional: only these channels
    default_member_permissions = "0"   # optional: who sees the commands (a bit set)
    rate_limit = 10                # guarded commands per user per minute

    [permissions]                  # deny by default: see valine.core.authz
    prevent_self_approval = false
    approve = { roles = ["<discord role id>"], users = ["<discord user id>"] }

    [[repositories]]               # optional: several repositories per deployment
    name = "acme/rocket"
    channel_id = "<discord channel id>"   # its plans (and scheduled posts) go there
    installation_id = 42           # optional: its GitHub App installation (else looked up)
    [repositories.executor]        # optional overrides of labels, planner, executor,
    kind = "assign"                # checks, merge, policy, permissions, ship and
    assignee = "agent-login"       # schedule, key by key; the rest from the top level

:func:`rules_from_mapping` reads a whole file (the top level and its repositories);
:func:`policy_from_mapping` the top level alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from valine.core.authz import GUARDED_ACTIONS, Permissions, permissions_from_mapping
from valine.core.errors import ConfigurationError
from valine.core.executors import KINDS, kind_of

#: The ``[executor] kind`` values (one entry each in :mod:`valine.core.executors`).
EXECUTOR_KINDS = tuple(KINDS)
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
class DiscordScope:
    """Where the bot answers: the team's servers (and channels), and how often."""

    guild_ids: tuple[str, ...] = ()
    channel_ids: tuple[str, ...] = ()
    #: Registered as the commands' ``default_member_permissions`` (None: Discord's default).
    default_member_permissions: str | None = None
    #: Guarded commands and buttons per user per minute.
    rate_limit: int = 10

    def refusal(
        self, guild_id: str | None, channel_id: str | None, parent_id: str | None = None
    ) -> str | None:
        """None if an interaction from ``guild_id``/``channel_id`` is in scope; else why not.

        ``parent_id`` is the channel of a thread the interaction comes from: a thread of a
        served channel is served (a run's thread, started from its plan).
        """
        if not self.guild_ids:
            return (
                "Valine is not set up for any Discord server yet: add "
                '`[discord] guild_ids = ["<your server id>"]` to valine.toml.'
            )
        served = ", ".join(self.guild_ids)
        if guild_id not in self.guild_ids:
            where = "in direct messages" if not guild_id else "in this server"
            return f"Valine does not answer {where}: it serves only the Discord server {served}."
        if self.channel_ids and not {channel_id, parent_id} & set(self.channel_ids):
            channels = ", ".join(f"<#{c}>" for c in self.channel_ids)
            return f"Valine answers only in {channels}."
        return None


#: The placeholders a deploy input may use, and what each becomes.
DEPLOY_PLACEHOLDERS = {
    "run_id": "the run id",
    "pull_requests": "the merged pull requests' numbers, comma-separated",
    "issues": "the shipped issues' numbers, comma-separated",
}
_PLACEHOLDER = re.compile(r"\{([a-z_]*)\}")


@dataclass(frozen=True, slots=True)
class ShipRules:
    """What happens after a run has shipped: an optional deploy workflow."""

    deploy_workflow: str | None = None
    ref: str = "main"
    #: Inputs of the dispatch; values may use ``{run_id}``, ``{pull_requests}``, ``{issues}``.
    inputs: tuple[tuple[str, str], ...] = ()
    #: Seconds the deployment may take (dispatch to conclusion) before it counts as failed.
    deploy_timeout: int = 3600


def deploy_inputs(
    rules: ShipRules, run_id: str, prs: list[int], issues: list[int]
) -> dict[str, str]:
    """The dispatch inputs of ``rules`` with the placeholders filled in."""
    values = {
        "run_id": run_id,
        "pull_requests": ",".join(str(n) for n in prs),
        "issues": ",".join(str(n) for n in issues),
    }
    return {
        name: _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
        for name, template in rules.inputs
    }


@dataclass(frozen=True, slots=True)
class Schedule:
    """The day's rhythm: when to post the plan and the digest (cron, in ``timezone``).

    The expressions are checked by the scheduler (a cron library, loaded only there).
    """

    timezone: str = "UTC"
    plan: str | None = None
    digest: str | None = None
    channel_id: str | None = None

    @property
    def entries(self) -> dict[str, str]:
        """The configured schedules by what they post (``plan``, ``digest``)."""
        return {k: v for k, v in (("plan", self.plan), ("digest", self.digest)) if v}


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
    discord: DiscordScope = field(default_factory=DiscordScope)
    ship: ShipRules = field(default_factory=ShipRules)
    schedule: Schedule = field(default_factory=Schedule)


#: Every section of ``valine.toml`` and its keys. A name not listed here is an error that
#: names the closest known one: a mistyped ``[permission]`` silently ignored would leave
#: every guarded action denied without a word. A key whose value is ``None`` holds a
#: table of the keys listed in :data:`PERMISSION_GRANT_KEYS`.
SCHEMA: Mapping[str, tuple[str, ...]] = {
    "labels": ("ready", "in_progress", "shipped", "blocking"),
    "planner": ("max_tasks", "priority_labels", "order"),
    "executor": ("kind", "workflow", "ref", "assignee", "pr_timeout", "pr_authors"),
    "checks": ("timeout", "required"),
    "merge": ("method",),
    "policy": ("on_task_failure", "on_stale", "max_dispatches"),
    "discord": ("guild_ids", "channel_ids", "default_member_permissions", "rate_limit"),
    "permissions": ("prevent_self_approval", *GUARDED_ACTIONS),
    "ship": ("deploy_workflow", "ref", "inputs", "deploy_timeout"),
    "schedule": ("timezone", "plan", "digest", "channel_id"),
}
#: The keys of one action's table under ``[permissions]`` (``approve = { roles = [...] }``).
PERMISSION_GRANT_KEYS = ("roles", "users")
#: The array of tables naming the repositories of a deployment (``[[repositories]]``).
REPOSITORIES = "repositories"
#: The sections a ``[[repositories]]`` entry may override; the others are the deployment's.
REPOSITORY_SECTIONS = (
    "labels",
    "planner",
    "executor",
    "checks",
    "merge",
    "policy",
    "permissions",
    "ship",
    "schedule",
)
#: Every key of a ``[[repositories]]`` entry.
REPOSITORY_KEYS = ("name", "channel_id", "installation_id", *REPOSITORY_SECTIONS)
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def unknown_names(data: Mapping[str, Any]) -> list[str]:
    """One message per section or key of ``data`` that :data:`SCHEMA` does not know.

    Each message names the closest known name when there is one
    (``unknown section [permission]; did you mean [permissions]?``).
    """
    problems: list[str] = []
    for name, section in data.items():
        if name == REPOSITORIES:
            problems += _unknown_in_repositories(section)
            continue
        if name not in SCHEMA:
            problems.append(f"unknown section [{name}]{_suggest(name, SCHEMA, '[{}]')}")
            continue
        if not isinstance(section, Mapping):
            continue  # reported as "must be a table" by the section's reader
        known = SCHEMA[name]
        for key, value in section.items():
            if key not in known:
                problems.append(f"unknown key {name}.{key}{_suggest(key, known, name + '.{}')}")
            elif name == "permissions" and key in GUARDED_ACTIONS and isinstance(value, Mapping):
                for sub in value:
                    if sub not in PERMISSION_GRANT_KEYS:
                        where = f"permissions.{key}"
                        hint = _suggest(sub, PERMISSION_GRANT_KEYS, where + ".{}")
                        problems.append(f"unknown key {where}.{sub}{hint}")
    return problems


def _unknown_in_repositories(entries: Any) -> list[str]:
    """The unknown keys of every ``[[repositories]]`` entry, each named by its entry."""
    if not isinstance(entries, list):
        return []  # reported as "must be an array of tables" by the reader
    problems: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        where = _entry_name(index, entry)
        for key in entry:
            if key not in REPOSITORY_KEYS:
                problems.append(f"{where}: unknown key {key}{_suggest(key, REPOSITORY_KEYS, '{}')}")
        sections = {k: v for k, v in entry.items() if k in REPOSITORY_SECTIONS}
        problems += [f"{where}: {p}" for p in unknown_names(sections)]
    return problems


def _entry_name(index: int, entry: Mapping[str, Any]) -> str:
    """How an error names a ``[[repositories]]`` entry: by its name, else its position."""
    name = entry.get("name")
    if isinstance(name, str) and name:
        return f"repositories: {name}"
    return f"repositories: entry {index + 1}"


def _suggest(name: str, known: Iterable[str], shape: str) -> str:
    """``; did you mean X?`` for the closest of ``known`` to ``name``, or nothing."""
    from difflib import get_close_matches  # only on the error path: not on the cold start

    close = get_close_matches(name.lower(), list(known), n=1, cutoff=0.6)
    if not close:
        return f" (known: {', '.join(shape.format(k) for k in known)})"
    return f"; did you mean {shape.format(close[0])}?"


def policy_from_mapping(data: Mapping[str, Any]) -> Policy:
    """The policy a parsed ``valine.toml`` describes; raises ConfigurationError naming the key.

    Unknown sections and keys are refused (see :func:`unknown_names`), all of them at once.
    """
    problems = unknown_names(data)
    if problems:
        raise ConfigurationError(problems[0] if len(problems) == 1 else _listed(problems))
    return _policy(data)


def _policy(data: Mapping[str, Any]) -> Policy:
    """The policy of ``data``, whose names are known (``[[repositories]]`` is not read)."""
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
        discord=_discord(_section(data, "discord")),
        ship=_ship(_section(data, "ship")),
        schedule=_schedule(_section(data, "schedule")),
    )
    _check(policy)
    return policy


@dataclass(frozen=True, slots=True)
class RepositoryRules:
    """One ``[[repositories]]`` entry: the repository, its channel and its merged policy."""

    name: str
    #: The Discord channel its plans go to (and where its commands need no option).
    channel_id: str | None = None
    #: Its GitHub App installation, when known ahead (else looked up once).
    installation_id: str | None = None
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True, slots=True)
class Rules:
    """A whole ``valine.toml``: the top-level policy and the repositories it names."""

    policy: Policy = field(default_factory=Policy)
    repositories: tuple[RepositoryRules, ...] = ()


def rules_from_mapping(data: Mapping[str, Any]) -> Rules:
    """The rules of a parsed ``valine.toml``; raises ConfigurationError naming the key.

    Each ``[[repositories]]`` entry's sections override the top level's key by key (an
    entry's ``[repositories.executor] kind`` replaces ``[executor] kind`` and keeps the
    other ``[executor]`` keys; a ``[repositories.permissions]`` action replaces that
    action's grant); its ``channel_id`` is also where its scheduled posts go, unless its
    own ``[repositories.schedule] channel_id`` says otherwise.
    """
    problems = unknown_names(data)
    if problems:
        raise ConfigurationError(problems[0] if len(problems) == 1 else _listed(problems))
    top = {k: v for k, v in data.items() if k != REPOSITORIES}
    policy = _policy(top)
    entries = data.get(REPOSITORIES, [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigurationError(
            '[[repositories]] must be an array of tables (each one starting "[[repositories]]")'
        )
    repositories = tuple(_repository(i, e, top, policy) for i, e in enumerate(entries))
    _check_repositories(repositories, policy)
    return Rules(policy=policy, repositories=repositories)


def _repository(
    index: int, entry: Mapping[str, Any], top: Mapping[str, Any], policy: Policy
) -> RepositoryRules:
    """One entry, its sections merged over the top level's and checked as a whole."""
    where = _entry_name(index, entry)
    name = entry.get("name")
    if not isinstance(name, str) or not _REPOSITORY_NAME.fullmatch(name):
        raise ConfigurationError(f'{where}: name must look like owner/name ("acme/rocket")')
    channel = entry.get("channel_id")
    if channel is not None and not (isinstance(channel, str) and channel.isdigit()):
        raise ConfigurationError(f"{where}: channel_id must be a Discord channel id (digits)")
    merged = dict(top)
    for section in REPOSITORY_SECTIONS:
        if section in entry:
            override = entry[section]
            if not isinstance(override, Mapping):
                raise ConfigurationError(f"{where}: [repositories.{section}] must be a table")
            merged[section] = {**_section(top, section), **override}
    if channel is not None and ("schedule" in top or "schedule" in entry):
        # its scheduled posts go to its channel, unless its own [schedule] names one
        own = {"channel_id": channel, **entry.get("schedule", {})}
        merged["schedule"] = {**_section(top, "schedule"), **own}
    try:
        merged_policy = _policy(merged)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    return RepositoryRules(
        name=name,
        channel_id=channel,
        installation_id=_installation(where, entry.get("installation_id")),
        policy=merged_policy,
    )


def _installation(where: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ConfigurationError(f"{where}: installation_id must be a GitHub App installation id")
    return str(int(value))


def _check_repositories(repositories: tuple[RepositoryRules, ...], policy: Policy) -> None:
    """One entry per repository, one repository per channel, channels the bot answers in."""
    names: set[str] = set()
    channels: dict[str, str] = {}
    for repository in repositories:
        if repository.name.lower() in names:
            raise ConfigurationError(f"repositories: {repository.name} is listed twice")
        names.add(repository.name.lower())
        channel = repository.channel_id
        if channel is None:
            continue
        if channel in channels:
            raise ConfigurationError(
                f"repositories: {channels[channel]} and {repository.name} share channel_id "
                f"{channel}: a channel plans one repository"
            )
        channels[channel] = repository.name
        allowed = policy.discord.channel_ids
        if allowed and channel not in allowed:
            raise ConfigurationError(
                f"repositories: {repository.name}'s channel_id {channel} is not in "
                "[discord] channel_ids: the bot would not answer there"
            )


def _listed(problems: list[str]) -> str:
    return f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def _check(policy: Policy) -> None:
    executor = policy.executor
    if executor.kind not in KINDS:
        raise ConfigurationError(f"executor.kind must be one of {', '.join(EXECUTOR_KINDS)}")
    problem = kind_of(executor).problem(executor)
    if problem is not None:
        raise ConfigurationError(problem)
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


def _discord(section: Mapping[str, Any]) -> DiscordScope:
    unknown = set(section) - {
        "guild_ids",
        "channel_ids",
        "default_member_permissions",
        "rate_limit",
    }
    if unknown:
        raise ConfigurationError(f"discord: unknown key(s) {', '.join(sorted(unknown))}")
    permissions = section.get("default_member_permissions")
    if permissions is not None and not (isinstance(permissions, str) and permissions.isdigit()):
        raise ConfigurationError(
            'discord.default_member_permissions must be a permission bit set as digits ("0")'
        )
    scope = DiscordScope(
        guild_ids=_ids(section, "discord.guild_ids"),
        channel_ids=_ids(section, "discord.channel_ids"),
        default_member_permissions=permissions,
        rate_limit=_int(section, "discord.rate_limit", 10),
    )
    if not 1 <= scope.rate_limit <= 1000:
        raise ConfigurationError("discord.rate_limit must be between 1 and 1000")
    return scope


def _ship(section: Mapping[str, Any]) -> ShipRules:
    workflow = section.get("deploy_workflow")
    if workflow is not None and (not isinstance(workflow, str) or not workflow.strip()):
        raise ConfigurationError("ship.deploy_workflow must be a workflow file name or id")
    raw = section.get("inputs", {})
    if not isinstance(raw, Mapping):
        raise ConfigurationError("ship.inputs must be a table of strings")
    if len(raw) > 25:  # GitHub's limit for a workflow dispatch
        raise ConfigurationError("ship.inputs: at most 25 inputs")
    inputs = []
    for name, value in raw.items():
        if not isinstance(value, str):
            raise ConfigurationError(f"ship.inputs.{name} must be a string")
        for placeholder in _PLACEHOLDER.findall(value):
            if placeholder not in DEPLOY_PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in DEPLOY_PLACEHOLDERS)
                raise ConfigurationError(
                    f"ship.inputs.{name}: unknown placeholder {{{placeholder}}} (known: {known})"
                )
        inputs.append((str(name), value))
    rules = ShipRules(
        deploy_workflow=workflow.strip() if isinstance(workflow, str) else None,
        ref=_str(section, "ship.ref", "main"),
        inputs=tuple(inputs),
        deploy_timeout=_int(section, "ship.deploy_timeout", 3600),
    )
    if rules.deploy_timeout < MIN_TIMEOUT:
        raise ConfigurationError(f"ship.deploy_timeout must be at least {MIN_TIMEOUT} seconds")
    return rules


def _schedule(section: Mapping[str, Any]) -> Schedule:
    crons = {}
    for key in ("plan", "digest"):
        value = section.get(key)
        if value is False:  # none (a repository turning off a slot it would inherit)
            value = None
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigurationError(
                f'schedule.{key} must be a cron expression ("0 9 * * 1-5"), or false for none'
            )
        crons[key] = value.strip() if isinstance(value, str) else None
    channel = section.get("channel_id")
    if channel is not None and not (isinstance(channel, str) and channel.isdigit()):
        raise ConfigurationError("schedule.channel_id must be a Discord channel id (digits)")
    if (crons["plan"] or crons["digest"]) and channel is None:
        raise ConfigurationError(
            "schedule.channel_id is required with schedule.plan or schedule.digest: "
            "the channel they are posted in"
        )
    return Schedule(
        timezone=_str(section, "schedule.timezone", "UTC"),
        plan=crons["plan"],
        digest=crons["digest"],
        channel_id=channel,
    )


def _ids(section: Mapping[str, Any], key: str) -> tuple[str, ...]:
    values = _strs(section, key, ())
    for value in values:
        if not (value.isascii() and value.isdigit()):
            raise ConfigurationError(f"{key}: {value!r} is not a Discord id (digits only)")
    return values


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


def policy_summary(policy: Policy) -> list[str]:
    """The effective rules, one line each, defaults included (``valine config check``)."""
    labels, planner, executor, live = (
        policy.labels,
        policy.planner,
        policy.executor,
        policy.liveness,
    )
    lines = [
        f"labels: ready={labels.ready!r} in_progress={labels.in_progress!r} "
        f"shipped={labels.shipped!r} blocking={list(labels.blocking)}",
        f"planner: max_tasks={planner.max_tasks} priority_labels={list(planner.priority_labels)} "
        f"order={list(planner.order)}",
        f"executor: {_executor_line(executor)} pr_timeout={executor.pr_timeout}s "
        f"pr_authors={list(executor.pr_authors)}",
        f"checks: timeout={live.checks_timeout}s required="
        + (str(list(policy.required_checks)) if policy.required_checks else "every check"),
        f"merge: method={policy.merge_method}",
        f"policy: on_task_failure={policy.on_task_failure} on_stale={live.on_stale} "
        f"max_dispatches={live.max_dispatches}",
        _discord_line(policy.discord),
        _ship_line(policy.ship),
        _schedule_line(policy.schedule),
    ]
    lines += _permission_lines(policy.permissions)
    return lines


def rules_summary(rules: Rules) -> list[str]:
    """The effective rules of a whole file: the top level's, then each repository's
    channel and the lines where its merged policy differs from the top level's."""
    lines = policy_summary(rules.policy)
    top = set(lines)
    for repository in rules.repositories:
        channel = repository.channel_id or "none (commands name it with the repository option)"
        installation = repository.installation_id or "looked up"
        lines.append(
            f"repository {repository.name}: channel_id={channel} installation_id={installation}"
        )
        own = [line for line in policy_summary(repository.policy) if line not in top]
        lines += [f"  {line.strip()}" for line in own] or ["  (the top-level rules)"]
    return lines


def _ship_line(rules: ShipRules) -> str:
    if not rules.deploy_workflow:
        return "ship: no deploy_workflow: a run ends at its merges"
    return (
        f"ship: deploy_workflow={rules.deploy_workflow!r} ref={rules.ref!r} "
        f"inputs={dict(rules.inputs)} deploy_timeout={rules.deploy_timeout}s"
    )


def _schedule_line(schedule: Schedule) -> str:
    if not schedule.entries:
        return "schedule: none (plan only when someone types /plan)"
    entries = " ".join(f"{k}={v!r}" for k, v in schedule.entries.items())
    return f"schedule: {entries} timezone={schedule.timezone} channel_id={schedule.channel_id}"


def _executor_line(executor: Executor) -> str:
    return kind_of(executor).line(executor)


def _discord_line(scope: DiscordScope) -> str:
    if not scope.guild_ids:
        return "discord: no guild_ids: every command is refused until one is set"
    channels = list(scope.channel_ids) if scope.channel_ids else "any"
    return (
        f"discord: guild_ids={list(scope.guild_ids)} channel_ids={channels} "
        f"rate_limit={scope.rate_limit}/min"
    )


def _permission_lines(permissions: Permissions) -> list[str]:
    lines = [f"permissions: prevent_self_approval={permissions.prevent_self_approval}"]
    for action in GUARDED_ACTIONS:
        grant = permissions.grant(action)
        if grant.empty:
            lines.append(f"  {action}: nobody (denied to everyone)")
        else:
            lines.append(f"  {action}: roles={sorted(grant.roles)} users={sorted(grant.users)}")
    return lines
