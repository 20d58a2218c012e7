"""A whole world for end-to-end tests: GitHub and Discord stand-ins and ``valine serve``.

The service runs as its own process, pointed at the stand-ins by ``GITHUB_API_URL`` and
``DISCORD_API_URL``, and the tests talk to it only with signed HTTP requests.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from helpers import (
    GUILD,
    WEBHOOK_SECRET,
    Service,
    check_suite_event,
    discord_headers,
    github_headers,
    interaction,
    pr_event,
    start_service,
    stop_service,
)
from valine.testing import wait_for
from valine.testing.discord_standin import DiscordStandIn
from valine.testing.github import GitHubStandIn
from valine.testing.service import standin_env

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

    # -- Discord users ----------------------------------------------------------------

    def command(self, name: str, user: str = "42", **options: str) -> dict[str, Any]:
        """Send a signed slash command; returns Discord's view of the answer."""
        body = interaction(name=name, **options)
        document = json.loads(body)
        document["member"]["user"]["id"] = user
        body = json.dumps(document).encode()
        self.tokens[name] = document["token"]
        status, answer = self.service.request(
            "POST", "/discord", body, discord_headers(self.key, body)
        )
        assert status == 200, answer
        result: dict[str, Any] = json.loads(answer)
        return result

    def press(self, custom_id: str, user: str = "42") -> dict[str, Any]:
        """Press a button (a signed MESSAGE_COMPONENT interaction)."""
        document = json.loads(interaction(kind=3))
        document["data"] = {"custom_id": custom_id, "component_type": 2}
        document["member"]["user"]["id"] = user
        body = json.dumps(document).encode()
        status, answer = self.service.request(
            "POST", "/discord", body, discord_headers(self.key, body)
        )
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

    def status(self, run_id: str) -> str:
        """The run's state as ``/status run_id`` reports it."""
        answer = self.command("status", run_id=run_id)
        title = answer["data"]["embeds"][0]["title"]
        return str(title.rsplit("·", 1)[1].strip().replace(" ", "_"))

    def wait_state(self, run_id: str, state: str, timeout: float = 20.0) -> None:
        """Poll ``/status`` until the run is in ``state``."""
        wait_for(f"run {run_id} to be {state}", lambda: self.status(run_id) == state, timeout)

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

    def github_requests(self) -> int:
        """How many API requests the service has sent to GitHub so far."""
        return len(self.github.requests)


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
    return World(github, discord, service, key, examples)


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
