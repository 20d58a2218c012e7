"""``valine demo``: the whole workflow, plan to ship, against the GitHub and Discord stand-ins.

It starts both stand-ins in this process, ``valine serve`` as a separate process pointed
at them, and then plays every part over real HTTP: a Discord user typing commands
(signed with a key made for the demo), coding agents opening pull requests, CI reporting
check results (signed webhook deliveries). It prints what Discord would show at each
step. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from valine.testing import payloads, service, signing, wait_for

REPO = "acme/rocket"
CONFIG = """[executor]
kind = "workflow"
workflow = "coding-agent.yml"
ref = "main"

[discord]
guild_ids = ["4"]

[permissions]
plan = { users = ["42"] }
approve = { users = ["42"] }
ship = { users = ["42"] }
cancel = { users = ["42"] }
"""


def main() -> int:
    """Run the demo; returns the exit status."""
    from nacl.signing import SigningKey

    from valine.testing.discord_standin import DiscordStandIn

    try:
        from valine.testing.github import GitHubStandIn
    except ImportError as missing:  # graphql-core: a development extra (make demo has it)
        raise SystemExit(
            f"valine demo: the GitHub stand-in needs {missing.name}, a development extra: "
            "`make demo` installs it (pip install -c constraints.txt -e '.[dev]')"
        ) from None

    with (
        tempfile.TemporaryDirectory(prefix="valine-demo-") as workdir,
        GitHubStandIn() as github,
        DiscordStandIn() as discord,
    ):
        github.add_repo(REPO)
        if github.graphql_schema.source != "published":
            _say(
                "GitHub stand-in: GraphQL checked against the part of GitHub's schema it "
                "serves (GitHub's published schema is not installed; `make material` adds it)."
            )
        demo = Demo(Path(workdir), github, discord, SigningKey.generate())
        try:
            demo.start_service()
            demo.play()
        except TimeoutError as exc:
            raise SystemExit(f"demo: {exc}") from None
        finally:
            demo.stop_service()
    return 0


class Demo:
    """The parts the demo plays, and the service it talks to."""

    def __init__(self, workdir: Path, github: Any, discord: Any, key: Any) -> None:
        self.workdir = workdir
        self.github = github
        self.discord = discord
        self.key = key
        self.secret = secrets.token_hex(16)
        self.service: service.Service | None = None

    # -- the service ----------------------------------------------------------------------

    def start_service(self) -> None:
        """Start ``valine serve`` wired to the stand-ins and wait until it answers."""
        (self.workdir / "valine.toml").write_text(CONFIG)
        env = service.standin_env(
            self.github,
            self.discord,
            public_key=self.key.verify_key.encode().hex(),
            webhook_secret=self.secret,
            repo=REPO,
        )
        try:
            self.service = service.start_service(
                self.workdir, {**env, "VALINE_LOG_LEVEL": "WARNING"}
            )
        except service.ServiceFailed as failed:
            raise SystemExit(f"demo: {failed}") from None

    def stop_service(self) -> None:
        """Stop the service process (SIGTERM, then SIGKILL after 10 s)."""
        if self.service is not None:
            service.stop_service(self.service)

    # -- the story ------------------------------------------------------------------------

    def play(self) -> None:
        """Plan, approve, work, check, ship -- printing Discord's view at each step."""
        titles = ["Add a launch countdown", "Fix the fuel gauge rounding", "Document the API"]
        issues = [
            self.github.add_issue(REPO, t, ["ready", f"P{i}"]) for i, t in enumerate(titles, 1)
        ]
        self.github.add_issue(REPO, "Rewrite everything", ["ready", "blocked"])
        _say(f"GitHub: {REPO} has {len(issues)} issues labelled ready (and one blocked).")

        token = self._command("plan")
        plan = wait_for("the plan", lambda: _with_embed(self.discord.original(token)), 20)
        run_id = plan["embeds"][0]["title"].split()[1]
        _show("Discord, after /plan (the deferred answer becomes the plan)", plan)

        self._command("approve", run_id=run_id, expect_public=True)
        wait_for("the dispatches", lambda: len(self.github.dispatches(REPO)) == len(issues), 20)
        _say(
            "GitHub: "
            + "; ".join(f"#{n} labels={self.github.issue(REPO, n).labels}" for n in issues)
        )
        for dispatch in self.github.dispatches(REPO):
            _say(f"GitHub: workflow_dispatch {dispatch.workflow} inputs={dispatch.inputs}")

        prs = {}
        for number in issues:
            pr, sha = self.github.open_pull(
                REPO, f"valine/{run_id}/{number}", f"Fixes #{number}", author="coding-agent[bot]"
            )
            self._deliver(
                "pull_request",
                payloads.pull_request(REPO, "opened", pr, sha, f"Fixes #{number}"),
            )
            prs[number] = (pr, sha)
        _say("Agents opened a pull request per issue; CI reports: one red, two green.")
        first_pr, first_sha = prs[issues[0]]
        self.github.report_checks(REPO, first_sha, "failure", names=["test"])
        self._deliver("check_suite", payloads.check_suite(REPO, first_sha, "failure", first_pr))
        for number in issues[1:]:
            self.github.report_checks(REPO, prs[number][1], "success", names=["test"])
            self._deliver(
                "check_suite", payloads.check_suite(REPO, prs[number][1], "success", prs[number][0])
            )
        time.sleep(0.6)
        _show("Discord, the plan message edited in place", self.discord.original(token))

        fixed = self.github.push(REPO, first_pr)
        self._deliver("pull_request", payloads.pull_request(REPO, "synchronize", first_pr, fixed))
        self.github.report_checks(REPO, fixed, "success", names=["test"])
        self._deliver("check_suite", payloads.check_suite(REPO, fixed, "success", first_pr))
        _say(f"The agent pushed a fix to PR #{first_pr}; CI is green.")
        ready = wait_for(
            "ready to ship", lambda: _followup(self.discord, token, "Ready to ship"), 20
        )
        _show("Discord, in the run's thread (started from the plan message)", ready)

        self._command("ship", run_id=run_id, expect_public=True)
        summary = wait_for("the summary", lambda: _followup(self.discord, token, "Shipped"), 20)
        _show("Discord, after /ship, in the run's thread", summary)
        _show("Discord, the plan message at the end", self.discord.original(token))
        _say(
            "GitHub: "
            + "; ".join(f"#{n} {_issue_line(self.github.issue(REPO, n))}" for n in issues)
        )
        status = self._interact(payloads.interaction(2, "status", {"run_id": run_id}))
        _show("Discord, /status " + run_id + " (only you can see this)", status["data"])
        overview = self._interact(payloads.interaction(2, "status"))
        _show("Discord, /status (only you can see this)", overview["data"])
        _say(f"GitHub requests the service made in all: {len(self.github.requests)}")

    # -- HTTP ------------------------------------------------------------------------------

    def _command(self, name: str, expect_public: bool = False, **options: str) -> str:
        document = payloads.interaction(2, name, options)
        answer = self._interact(document)
        _say(f"{'You'} typed /{name} {' '.join(options.values())}".rstrip())
        if answer.get("type") == 4:
            _show("Discord, the immediate answer", answer["data"])
        if expect_public and answer["data"].get("flags"):
            raise SystemExit(f"demo: /{name} was refused: {answer['data']['content']}")
        return str(document["token"])

    def _interact(self, document: dict[str, Any]) -> dict[str, Any]:
        self.discord.interaction_received(str(document["token"]), str(document["channel_id"]))
        body = payloads.encode(document)
        status, answer = self._post("/discord", body, signing.discord_headers(self.key, body))
        if status != 200:
            raise SystemExit(f"demo: the service answered {status}: {answer!r}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def _deliver(self, event: str, payload: dict[str, Any]) -> None:
        body = payloads.encode(payload)
        headers = signing.github_headers(self.secret, event, body)
        status, _ = self._post("/github/webhook", body, headers)
        if status >= 300:
            raise SystemExit(f"demo: webhook {event} answered {status}")

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self.service is not None, "the service is not started"
        return self.service.request("POST", path, body, headers)


# -- printing ------------------------------------------------------------------------------


_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")


def as_text(message: dict[str, Any] | None) -> str:
    """A Discord message as plain text, as a person reads it: links show their text."""
    return _LINK.sub(r"\1", _as_text(message))


def _as_text(message: dict[str, Any] | None) -> str:
    if not message:
        return "(no message)"
    lines = [message["content"]] if message.get("content") else []
    for embed in message.get("embeds") or []:
        lines.append(f"┃ {embed.get('title', '')}")
        lines += [f"┃ {line}" for line in str(embed.get("description", "")).splitlines()]
        if embed.get("footer"):
            lines.append(f"┃ — {embed['footer']['text']}")
    for row in message.get("components") or []:
        lines.append("  ".join(f"[ {b['label']} ]" for b in row.get("components", [])))
    return "\n".join(lines)


def _show(title: str, message: dict[str, Any] | None) -> None:
    print(f"\n── {title} " + "─" * max(0, 70 - len(title)))
    print(as_text(message))


def _say(text: str) -> None:
    print(f"\n• {text}")


def _issue_line(issue: Any) -> str:
    return f"{issue.state} labels={issue.labels}"


def _with_embed(message: dict[str, Any] | None) -> dict[str, Any] | None:
    return message if message and message.get("embeds") else None


def _followup(discord: Any, token: str, needle: str) -> dict[str, Any] | None:
    """The first post of the run saying ``needle``: in the thread started from its plan
    message, or a follow-up of the plan's interaction (a run without a thread)."""
    thread = (discord.original(token) or {}).get("thread") or {}
    posts = discord.channel_messages(thread["id"]) if thread else []
    for message in [*posts, *discord.followups(token)]:
        text = (message.get("content") or "") + "".join(
            str(e.get("description", "")) for e in message.get("embeds") or []
        )
        if needle in text:
            return dict(message)
    return None
