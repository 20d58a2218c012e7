"""A whole world for end-to-end runs: the GitHub and Discord stand-ins and ``valine serve``.

The service runs as its own process (:mod:`valine.testing.service`), pointed at the
stand-ins by ``GITHUB_API_URL`` and ``DISCORD_API_URL``, and a :class:`World` talks to
it only with signed HTTP requests, as Discord users and as GitHub (people and CI). The
end-to-end tests (tests/world.py re-exports this module) and the proving ground drive it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from nacl.signing import SigningKey

from valine.testing import payloads, signing, wait_for
from valine.testing.discord_standin import CHAT_INPUT_COMMAND, DiscordStandIn
from valine.testing.examples import check_suite_event, pr_event, workflow_run_event
from valine.testing.github import GitHubStandIn
from valine.testing.service import Service, standin_env, start_service, stop_service

#: The webhook secret of every world: generated per process, never a real secret.
WEBHOOK_SECRET = "test-webhook-secret-" + uuid.uuid4().hex


def github_headers(
    body: bytes, event: str, delivery: str | None = None, secret: str = WEBHOOK_SECRET
) -> dict[str, str]:
    """Headers GitHub sends with a delivery signed with ``secret`` (the tests' by default)."""
    return signing.github_headers(secret, event, body, delivery)


#: The Discord server the interactions come from; DEFAULT_CONFIG below serves it.
GUILD = "4"


def interaction(
    kind: int = 2, name: str | None = None, *, guild: str | None = GUILD, **options: Any
) -> bytes:
    """The body of a Discord interaction from user 42 with role 7 (1 PING, 2 command).

    It comes from server ``guild`` (the one the test config serves); ``guild=None`` makes
    it a DM (``user`` instead of ``member``, as Discord sends).
    """
    document = payloads.interaction(
        kind, name, {k: str(v) for k, v in options.items()}, roles=("7",)
    )
    if guild is None:
        del document["guild_id"]
        document["user"] = document.pop("member")["user"]
    else:
        document["guild_id"] = guild
    if kind == 3:
        del document["data"]  # a bare component interaction; tests add their own data
    return json.dumps(document).encode()


def button(custom_id: str, user: str = "42") -> dict[str, Any]:
    """The document of a press on button ``custom_id`` by ``user``."""
    document: dict[str, Any] = json.loads(interaction(kind=3))
    document["data"] = {"custom_id": custom_id, "component_type": 2}
    document["member"]["user"]["id"] = user
    return document


REPO = "octo/widgets"

DEFAULT_CONFIG = f"""
[discord]
guild_ids = ["{GUILD}"]

[executor]
kind = "workflow"
workflow = "agent.yml"
ref = "main"

[merge]
method = "squash"

[permissions.plan]
roles = ["7"]

[permissions.approve]
users = ["42", "43"]

[permissions.ship]
users = ["42"]

[permissions.cancel]
users = ["42"]
"""


@dataclass
class World:
    """The stand-ins, the service and helpers to act as Discord users and as GitHub."""

    github: GitHubStandIn
    discord: DiscordStandIn
    service: Service
    key: SigningKey
    examples: dict[str, list[dict[str, Any]]]
    tokens: dict[str, str] = field(default_factory=dict)
    #: The extra settings the service was started with (a restart keeps them).
    extra_env: dict[str, str] = field(default_factory=dict)

    # -- Discord users ----------------------------------------------------------------

    def send(self, document: dict[str, Any]) -> tuple[int, bytes]:
        """POST one interaction document, signed with the world's key; (status, body)."""
        if document.get("token") and document.get("channel_id"):
            self.discord.interaction_received(document["token"], document["channel_id"])
        body = json.dumps(document).encode()
        headers = signing.discord_headers(self.key, body)
        return self.service.request("POST", "/discord", body, headers)

    def command(self, name: str, user: str = "42", **options: str) -> dict[str, Any]:
        """Send a signed slash command; returns Discord's view of the answer."""
        document = json.loads(interaction(2, name, **cast(dict[str, Any], options)))
        document["member"]["user"]["id"] = user
        self.tokens[name] = document["token"]
        status, answer = self.send(document)
        assert status == 200, answer
        result: dict[str, Any] = json.loads(answer)
        return result

    def press(self, custom_id: str, user: str = "42") -> dict[str, Any]:
        """Press a button (a signed MESSAGE_COMPONENT interaction)."""
        status, answer = self.send(button(custom_id, user))
        assert status == 200, answer
        result: dict[str, Any] = json.loads(answer)
        return result

    def plan(self) -> str:
        """``/plan``, then wait for the deferred answer to become the plan; its run id."""
        assert self.command("plan") == {"type": 5}
        token = self.tokens["plan"]
        message = wait_for("the plan message", lambda: _titled(self.discord.original(token)))
        match = re.search(r"Run (r\d{8}-\w+)", message["embeds"][0]["title"])
        assert match, message
        return match.group(1)

    def posted(self, text: str = "") -> list[dict[str, Any]]:
        """The messages the service posted that say ``text`` (in their content or an
        embed's title or description): follow-ups, channel messages and the messages in
        runs' threads, oldest first; interaction originals (the plans) left out."""
        return [
            m
            for m in self.discord.messages()
            if m.get("type") != CHAT_INPUT_COMMAND and text in message_text(m)
        ]

    def thread(self, run_id: str) -> dict[str, Any] | None:
        """The thread of the run whose plan answered ``/plan`` last (None: no thread)."""
        plan = self.discord.original(self.tokens["plan"])
        thread = (plan or {}).get("thread")
        if not thread or run_id not in json.dumps(plan):
            return None
        return self.discord.thread(thread["id"])

    def status(self, run_id: str) -> str:
        """The run's state as ``/status run_id`` reports it."""
        answer = self.command("status", run_id=run_id)
        title = answer["data"]["embeds"][0]["title"]  # "Run r… · shipped · deployed"
        return str(title.split("·")[1].strip().replace(" ", "_"))

    def deploy_status(self, run_id: str) -> str | None:
        """The deployment's word in ``/status run_id`` (``deployed``), or None."""
        title = self.command("status", run_id=run_id)["data"]["embeds"][0]["title"]
        parts = title.split("·")
        return parts[2].strip() if len(parts) > 2 else None

    def described(self, run_id: str) -> str:
        """The run's ``/status run_id`` description (from stored state: no GitHub request)."""
        answer = self.command("status", run_id=run_id)
        return str(answer["data"]["embeds"][0]["description"])

    def wait_state(self, run_id: str, state: str, timeout: float = 20.0) -> None:
        """Poll ``/status`` until the run is in ``state``."""
        wait_for(f"run {run_id} to be {state}", lambda: self.status(run_id) == state, timeout)

    # -- the steps many tests share ----------------------------------------------------

    def ready_issues(self, count: int, labels: Sequence[str] = ("ready", "P1")) -> list[int]:
        """Open ``count`` issues labelled ``labels`` (``ready``: for the next plan)."""
        return [self.github.add_issue(REPO, f"Task {i}", list(labels)) for i in range(count)]

    def approve(self, run_id: str, dispatches: int, user: str = "42") -> dict[str, Any]:
        """``/approve`` the run, then wait for ``dispatches`` workflow dispatches in all and
        for the run to be ``executing``; the command's answer."""
        answer = self.command("approve", user=user, run_id=run_id)
        assert f"approved by <@{user}>" in answer["data"]["content"], answer
        wait_for("dispatches", lambda: len(self.github.dispatches(REPO)) == dispatches)
        self.wait_state(run_id, "executing")
        return answer

    def start(
        self, count: int = 1, labels: Sequence[str] = ("ready", "P1")
    ) -> tuple[str, list[int]]:
        """Plan and approve a run of ``count`` new ready issues; its id and the issues."""
        issues = self.ready_issues(count, labels)
        run_id = self.plan()
        self.approve(run_id, len(self.github.dispatches(REPO)) + count)
        return run_id, issues

    def to_ready_to_ship(
        self, count: int, labels: Sequence[str] = ("ready", "P1")
    ) -> tuple[str, list[int], dict[int, tuple[int, str]]]:
        """A started run whose every task has a member's pull request with green checks,
        ``ready_to_ship``; its id, issues and ``{issue: (pr, head sha)}``."""
        run_id, issues = self.start(count, labels)
        prs = {}
        for number in issues:
            prs[number] = self.open_pr(run_id, number)
            self.checks(*prs[number], "success")
        self.wait_state(run_id, "ready_to_ship")
        return run_id, issues, prs

    def cli(self, *args: str) -> str:
        """What ``valine ARGS`` prints, run as an operator would in the service's directory."""
        return subprocess.run(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "valine.runtime.cli", *args],
            cwd=self.service.workdir,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={"VALINE_STORE": "sqlite:///.valine/valine.db", "PATH": "/usr/bin:/bin"},
        ).stdout

    # -- GitHub, as people and CI ------------------------------------------------------

    def deliver(self, event: str, payload: dict[str, Any], delivery: str | None = None) -> int:
        """POST a signed webhook delivery; returns the HTTP status."""
        body = json.dumps(payload).encode()
        headers = github_headers(body, event, delivery or str(uuid.uuid4()))
        return self.service.request("POST", "/github/webhook", body, headers)[0]

    def open_pr(
        self,
        run_id: str,
        issue: int,
        *,
        link: str = "keyword",
        body: str | None = None,
        author: str = "octocat",
        association: str = "MEMBER",
        user_type: str = "User",
        head_repo: str | None = None,
    ) -> tuple[int, str]:
        """Open a PR for ``issue`` on the stand-in and deliver ``pull_request.opened``.

        By default a member's, from a branch of the repository; ``head_repo`` makes it
        a fork's, ``association`` says what GitHub says of the author.
        """
        if body is None:
            body = f"Fixes #{issue}" if link == "keyword" else "An unrelated change"
        ref = f"valine/{run_id}/{issue}" if link == "branch" else f"fix-{issue}"
        number, sha = self.github.open_pull(
            REPO, ref, body, author=author, head_repo=head_repo, author_association=association
        )
        assert (
            self.deliver(
                "pull_request",
                pr_event(
                    self.examples,
                    "opened",
                    repo=REPO,
                    number=number,
                    body=body,
                    head_ref=ref,
                    head_sha=sha,
                    author=author,
                    author_association=association,
                    user_type=user_type,
                    head_repo=head_repo,
                ),
            )
            == 202
        )
        return number, sha

    def checks(self, pr: int, sha: str, conclusion: str, *, app: str = "ci") -> None:
        """A check suite of App ``app`` concludes on ``sha`` (the stand-in records it)
        and its ``check_suite.completed`` is delivered."""
        suite = self.github.report_checks(REPO, sha, conclusion, app=app)
        self.deliver_suite(pr, sha, conclusion, suite_id=suite)

    def deliver_suite(
        self, pr: int, sha: str, conclusion: str, *, suite_id: int | None = None
    ) -> None:
        """Deliver ``check_suite.completed`` for ``sha`` of PR ``pr`` (nothing recorded).

        Like GitHub's, each delivery is its own body (the suite's id and time), so two
        suites concluding are two events, not a replay of one.
        """
        payload = check_suite_event(
            self.examples, "completed", repo=REPO, head_sha=sha, conclusion=conclusion, pulls=[pr]
        )
        payload["check_suite"]["id"] = (
            suite_id if suite_id is not None else uuid.uuid4().int % 10**9
        )
        payload["check_suite"]["updated_at"] = f"{time.time():.6f}"
        assert self.deliver("check_suite", payload) == 202

    def push(self, pr: int) -> str:
        """Push to PR ``pr`` on the stand-in and deliver ``pull_request.synchronize``."""
        sha = self.github.push(REPO, pr)
        assert (
            self.deliver(
                "pull_request",
                pr_event(self.examples, "synchronize", repo=REPO, number=pr, head_sha=sha),
            )
            == 202
        )
        return sha

    def workflow_run(self, run_id: int, status: str, conclusion: str | None = None) -> int:
        """A workflow run moves on (on the stand-in) and its ``workflow_run`` is delivered."""
        if status != "queued":
            self.github.advance_workflow_run(REPO, run_id, status, conclusion)
        payload = workflow_run_event(
            self.examples, REPO, self.github.workflow_run_payload(REPO, run_id)
        )
        return self.deliver("workflow_run", payload)

    def restart(self, env: dict[str, str] | None = None) -> None:
        """Stop ``valine serve`` and start it again on the same directory (same state)."""
        stop_service(self.service)
        self.service = start_service(self.service.workdir, self.env(env))

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a ``valine serve`` of this world (plus ``extra``)."""
        return {**world_env(self.github, self.discord, self.key), **self.extra_env, **(extra or {})}

    def github_requests(self) -> int:
        """How many API requests the service has sent to GitHub so far."""
        return len(self.github.requests)


def message_text(message: dict[str, Any]) -> str:
    """A message's content and its embeds' titles and descriptions, as one text."""
    embeds = message.get("embeds") or []
    parts = [str(message.get("content") or "")]
    parts += [f"{e.get('title') or ''}\n{e.get('description') or ''}" for e in embeds]
    return "\n".join(parts)


def _titled(message: dict[str, Any] | None) -> dict[str, Any] | None:
    if message and message.get("embeds") and "Run r" in message["embeds"][0].get("title", ""):
        return message
    return None


def start_world(
    workdir: Path,
    key: SigningKey,
    examples: dict[str, list[dict[str, Any]]],
    config: str = DEFAULT_CONFIG,
    env: dict[str, str] | None = None,
) -> World:
    """Start both stand-ins and ``valine serve`` wired to them (``env``: extra settings)."""
    github = GitHubStandIn().start()
    github.add_repo(REPO)
    discord = DiscordStandIn().start()
    (workdir / "valine.toml").write_text(config)
    try:
        service = start_service(workdir, {**world_env(github, discord, key), **(env or {})})
    except BaseException:
        github.stop()
        discord.stop()
        raise
    return World(github, discord, service, key, examples, extra_env=dict(env or {}))


def world_env(github: GitHubStandIn, discord: DiscordStandIn, key: SigningKey) -> dict[str, str]:
    """The environment of a ``valine serve`` wired to these stand-ins and this key."""
    public_key = key.verify_key.encode().hex()
    return standin_env(
        github, discord, public_key=public_key, webhook_secret=WEBHOOK_SECRET, repo=REPO
    )


def stop_world(world: World) -> None:
    """Stop the service and both stand-ins."""
    try:
        stop_service(world.service)
    finally:
        world.github.stop()
        world.discord.stop()
