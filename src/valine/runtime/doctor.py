"""``valine doctor``: the settings checked against GitHub and Discord, each finding with its fix.

It reads, never writes: the rules file, the settings, then on GitHub the repository (the
token's access), its labels, its webhooks and its organisation's (when the credentials
may read them), and on Discord the registered commands (against the one schema) and the
application's Interactions Endpoint URL; it prints the invite URL with the permissions the bot needs
(threads included). Each check is a pure function of what was read (:func:`check_access`,
:func:`check_labels`, :func:`check_hooks`, ...), so the verdicts are tested without a
network; :func:`diagnose` does the reading.

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for a
configuration error (an invalid ``valine.toml`` or a malformed setting).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from valine.core.errors import ValineError
from valine.core.policy import Policy
from valine.runtime.config import Settings, read_rules

if TYPE_CHECKING:
    from valine.github.client import GitHubClient
    from valine.runtime.repositories import Repositories

#: The events the webhook must send (README "Connect GitHub").
REQUIRED_EVENTS = ("issues", "issue_comment", "pull_request", "check_suite", "status")
WEBHOOK_PATH = "/github/webhook"
INTERACTIONS_PATH = "/discord"


class Finding(NamedTuple):
    """One verdict: ``ok``, ``warn`` or ``fail``, what was found, and how to fix it."""

    level: str
    what: str
    fix: str = ""


def ok(what: str) -> Finding:
    """A check that passed."""
    return Finding("ok", what)


def warn(what: str, fix: str) -> Finding:
    """Something that works but may not be what you want."""
    return Finding("warn", what, fix)


def fail(what: str, fix: str) -> Finding:
    """Something that stops the workflow."""
    return Finding("fail", what, fix)


# ------------------------------------------------------------------ the rules and settings


def check_rules(
    policy: Policy, settings: Settings, repositories: Repositories | None = None
) -> list[Finding]:
    """The rules file and the settings the workflow needs (a ``[[repositories]]`` entry
    stands for ``GITHUB_REPOSITORY``)."""
    found = [ok("valine.toml is valid (valine config check prints the effective rules)")]
    if not policy.discord.guild_ids:
        found.append(
            fail(
                "no [discord] guild_ids: every command is refused",
                'add `[discord] guild_ids = ["<your server id>"]` to valine.toml',
            )
        )
    nobody = [a for a in ("plan", "approve", "ship", "cancel") if policy.permissions.grant(a).empty]
    if nobody:
        found.append(
            warn(
                f"nobody may {', '.join(nobody)}: those commands are refused to everyone",
                "list Discord role or user ids under [permissions.<action>] in valine.toml",
            )
        )
    served = repositories is not None and len(repositories) > 0
    for name in settings.missing():
        if served and name == "GITHUB_REPOSITORY":
            continue
        found.append(fail(f"{name} is not set", f"set {name} in the environment or in .env"))
    return found


# ------------------------------------------------------------------ GitHub


def check_access(repo: str, document: Mapping[str, Any] | None) -> list[Finding]:
    """The token's access to the repository (``None``: GitHub answered 404)."""
    if document is None:
        return [
            fail(
                f"the GitHub token cannot see {repo}",
                "check GITHUB_REPOSITORY, and give the token (or install the App on) the "
                "repository",
            )
        ]
    permissions = document.get("permissions")
    if not isinstance(permissions, Mapping):  # an App installation token: no permissions
        return [ok(f"GitHub: {repo} is readable")]
    if not permissions.get("push"):
        return [
            fail(
                f"the GitHub token may read {repo} but not write to it",
                "give it write access (issues, pull requests, contents; actions for the "
                "workflow executor)",
            )
        ]
    return [ok(f"GitHub: the token may write to {repo}")]


def check_labels(names: Iterable[str], policy: Policy) -> list[Finding]:
    """The labels the rules name, against the repository's labels."""
    have = {name.lower() for name in names}
    labels = policy.labels
    found = []
    if labels.ready.lower() in have:
        found.append(ok(f"label {labels.ready!r} exists"))
    else:
        found.append(
            fail(
                f"label {labels.ready!r} is missing: /plan will find no issues",
                f"create the label {labels.ready!r} and put it on the issues to plan, or set "
                "[labels] ready to the label you use",
            )
        )
    for name in (labels.in_progress, labels.shipped):
        if name.lower() not in have:
            found.append(
                warn(
                    f"label {name!r} is missing",
                    "nothing to do: the first run creates it (or create it yourself)",
                )
            )
    return found


class OrgHooks(NamedTuple):
    """What was read of the webhooks of the organisation owning a repository."""

    login: str
    #: The organisation's webhooks; None: they could not be read (403 or 404).
    hooks: Sequence[Mapping[str, Any]] | None


def check_hooks(
    hooks: Sequence[Mapping[str, Any]] | None,
    endpoint: str | None,
    org: OrgHooks | None = None,
) -> list[Finding]:
    """The repository's webhooks (``None``: the token may not read them) and, for a
    repository owned by an organisation, the organisation's (``org``): a webhook of
    either that sends to the service counts."""
    wanted = endpoint.rstrip("/") + WEBHOOK_PATH if endpoint else None
    mine = _ours(hooks or (), wanted)
    theirs = _ours(org.hooks or (), wanted) if org else []
    if mine or theirs:
        found = [f for hook in mine for f in _check_hook(hook, "webhook")]
        found += [f for hook in theirs for f in _check_hook(hook, "organisation webhook")]
        if mine and theirs:
            found.append(
                warn(
                    "both a repository and an organisation webhook send here: "
                    "every event arrives twice",
                    "delete one of them",
                )
            )
        return found
    return _no_hook(hooks, wanted, org)


def _no_hook(
    hooks: Sequence[Mapping[str, Any]] | None, wanted: str | None, org: OrgHooks | None
) -> list[Finding]:
    """The findings when no webhook that was read sends to the service."""
    where = wanted or f"a URL ending in {WEBHOOK_PATH}"
    found = []
    if hooks is None:
        found.append(
            warn(
                "cannot read the repository's webhooks with these credentials (a token needs "
                "admin access; a GitHub App the Repository permission Webhooks: read)",
                f"check by hand: Settings → Webhooks: payload URL ending in {WEBHOOK_PATH}, "
                f"content type application/json, events {', '.join(REQUIRED_EVENTS)}",
            )
        )
    if org is not None and org.hooks is None:
        return [
            *found,
            warn(
                f"could not check the organisation webhooks of {org.login}"
                + ("" if hooks is None else f"; no repository webhook sends to {where}"),
                "give the GitHub App the Organization permission Webhooks: read (or use a "
                "token with admin:org_hook), or check by hand: the organisation's Settings → "
                "Webhooks",
            ),
        ]
    if hooks is None:
        return found
    others = ", ".join(sorted(_hook_url(h) for h in hooks)) or "none"
    if org is not None:
        others += "; the organisation's: " + (
            ", ".join(sorted(_hook_url(h) for h in org.hooks or ())) or "none"
        )
    return [
        fail(
            f"no webhook sends to {where} (the repository's: {others})",
            'add one: Settings → Webhooks → Add webhook (README "Connect GitHub")',
        )
    ]


def _ours(hooks: Iterable[Mapping[str, Any]], wanted: str | None) -> list[Mapping[str, Any]]:
    """The webhooks sending to ``wanted`` (any URL ending in the webhook path if None)."""
    return [h for h in hooks if _hook_url(h) == wanted or (not wanted and _is_ours(h))]


def _check_hook(hook: Mapping[str, Any], kind: str) -> list[Finding]:
    name = f"{kind} {hook.get('id')} ({_hook_url(hook)})"
    events = set(hook.get("events") or ())
    config = hook.get("config") or {}
    found = []
    missing = [] if "*" in events else [e for e in REQUIRED_EVENTS if e not in events]
    if missing:
        found.append(
            fail(
                f"{name} does not send {', '.join(missing)}",
                f"edit the webhook and tick {', '.join(missing)} (Let me select individual events)",
            )
        )
    if config.get("content_type") != "json":
        found.append(fail(f"{name} sends form data", "set its content type to application/json"))
    if not hook.get("active", True):
        found.append(fail(f"{name} is inactive", "tick Active on the webhook"))
    if not found:
        found.append(ok(f"{name} sends every event the service reads"))
    return found


def _hook_url(hook: Mapping[str, Any]) -> str:
    config = hook.get("config") or {}
    return str(config.get("url") or "")


def _is_ours(hook: Mapping[str, Any]) -> bool:
    return _hook_url(hook).rstrip("/").endswith(WEBHOOK_PATH)


# ------------------------------------------------------------------ Discord


def check_commands(where: str, changes: Sequence[str]) -> list[Finding]:
    """The registered commands against the schema (``changes``: what a registration sends)."""
    if not changes:
        return [ok(f"Discord: the commands registered {where} match the schema")]
    return [
        fail(
            f"Discord: the commands registered {where} differ from the schema: "
            + "; ".join(changes),
            "run `valine register-commands`",
        )
    ]


def check_interactions_endpoint(url: str | None, endpoint: str | None) -> list[Finding]:
    """The application's Interactions Endpoint URL."""
    wanted = endpoint.rstrip("/") + INTERACTIONS_PATH if endpoint else None
    if not url:
        return [
            fail(
                "Discord: the application has no Interactions Endpoint URL",
                "Developer Portal → General Information → Interactions Endpoint URL: "
                + (wanted or f"the service's URL ending in {INTERACTIONS_PATH}"),
            )
        ]
    if wanted and url.rstrip("/") != wanted:
        return [
            fail(
                f"Discord sends interactions to {url}, not to {wanted}",
                f"set the Interactions Endpoint URL to {wanted} (Discord checks it on save)",
            )
        ]
    return [ok(f"Discord: interactions go to {url}")]


#: What the bot needs in the plan channels (Discord's permission bits): posting and
#: editing the plans, reading a message back, and the runs' threads.
BOT_PERMISSIONS = {
    "View Channel": 1 << 10,
    "Send Messages": 1 << 11,
    "Embed Links": 1 << 14,
    "Read Message History": 1 << 16,
    "Create Public Threads": 1 << 35,
    "Send Messages in Threads": 1 << 38,
}


def invite_url(application_id: str) -> str:
    """The bot's invite URL: the ``bot`` and ``applications.commands`` scopes and
    :data:`BOT_PERMISSIONS`."""
    permissions = sum(BOT_PERMISSIONS.values())
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&scope=bot+applications.commands&permissions={permissions}"
    )


def check_invite(application_id: str) -> list[Finding]:
    """The permissions the bot needs, with the invite URL that grants them (Discord
    does not tell a bot its channel permissions over REST without reading every role)."""
    *first, last = BOT_PERMISSIONS
    names = f"{', '.join(first)} and {last}"
    return [ok(f"Discord: invite the bot with {names}: {invite_url(application_id)}")]


# ------------------------------------------------------------------ reading


def diagnose(settings: Settings, endpoint: str | None = None) -> list[Finding]:
    """Every finding, reading the rules file, GitHub (each served repository) and
    Discord (read-only)."""
    from valine.runtime.repositories import Repositories

    rules = read_rules(settings.config_path)
    policy = rules.policy
    repositories = Repositories.of(settings, rules)
    found = check_rules(policy, settings, repositories)
    if len(repositories) and (settings.github_token or settings.github_app_id):
        found += _guarded("GitHub", lambda: _github(settings, repositories, endpoint))
    if settings.discord_application_id and settings.discord_bot_token:
        found += _guarded("Discord", lambda: _discord(settings, policy, endpoint))
    return found


def _guarded(platform: str, read: Callable[[], list[Finding]]) -> list[Finding]:
    """``read()``; a platform that cannot be reached is one finding, not a crash."""
    try:
        return read()
    except ValineError as exc:
        return [fail(f"{platform} could not be read: {exc}", f"check the {platform} settings")]


def _github(settings: Settings, repositories: Repositories, endpoint: str | None) -> list[Finding]:
    """The findings of every served repository (each named when there are several)."""
    from valine.runtime.clients import github_client

    found: list[Finding] = []
    with github_client(settings, repositories, max_attempts=2) as client:
        for repository in repositories:
            findings = _repository(client, repository.name, repository.policy, endpoint)
            if len(repositories) > 1:
                findings = [f._replace(what=f"{repository.name}: {f.what}") for f in findings]
            found += findings
    return found


def _repository(
    client: GitHubClient, repo: str, policy: Policy, endpoint: str | None
) -> list[Finding]:
    """One repository's findings: the token's access, its labels, its webhooks (and its
    organisation's)."""
    from valine.core.errors import NotFound

    try:
        document = client.read_repository(repo)
    except NotFound:
        return check_access(repo, None)
    found = check_access(repo, document)
    labels = client.read_repository(repo, "labels")
    found += check_labels((str(label.get("name", "")) for label in labels), policy)
    hooks = _readable(lambda: client.read_repository(repo, "hooks"))
    org = None
    owner = document.get("owner") or {}
    if owner.get("type") == "Organization":  # its webhooks receive this repository's events
        org = OrgHooks(
            str(owner.get("login") or repo.partition("/")[0]),
            _readable(lambda: client.read_organisation_hooks(repo)),
        )
    return found + check_hooks(hooks, endpoint, org)


def _readable(read: Callable[[], Any]) -> Any:
    """``read()``, or None when GitHub refuses it (404: no access; 403: a fine-grained
    token or an App installation without the webhooks permission)."""
    from valine.core.errors import NotFound
    from valine.ports import GitHubError

    try:
        return read()
    except NotFound:
        return None
    except GitHubError as exc:
        if exc.status != 403:
            raise
        return None


def _discord(settings: Settings, policy: Policy, endpoint: str | None) -> list[Finding]:
    from valine.core.commands import command_changes, registration_payload
    from valine.runtime.clients import discord_client

    payload = registration_payload(policy.discord.default_member_permissions)
    guilds: list[str | None] = list(policy.discord.guild_ids) or [None]
    found: list[Finding] = []
    with discord_client(settings, max_attempts=2) as client:
        for guild in guilds:
            where = f"in guild {guild}" if guild else "globally"
            found += check_commands(where, command_changes(client.get_commands(guild), payload))
        application = client.get_application()
    url = application.get("interactions_endpoint_url")
    found += check_interactions_endpoint(url if isinstance(url, str) else None, endpoint)
    return found + check_invite(str(settings.discord_application_id))


# ------------------------------------------------------------------ printing


_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def report(findings: Sequence[Finding], out: TextIO) -> int:
    """Print the findings (each failure and warning with its fix); the exit status."""
    for finding in findings:
        out.write(f"{_MARKS[finding.level]}  {finding.what}\n")
        if finding.fix:
            out.write(f"      fix: {finding.fix}\n")
    failed = sum(1 for f in findings if f.level == "fail")
    warned = sum(1 for f in findings if f.level == "warn")
    out.write(f"{failed} problem(s), {warned} warning(s)\n")
    return 1 if failed else 0


def run_doctor(settings: Settings, endpoint: str | None = None, out: TextIO | None = None) -> int:
    """``valine doctor``: diagnose and print; 0 healthy, 1 a check failed."""
    return report(diagnose(settings, endpoint), out or sys.stdout)
