"""Test helpers shared by every suite: webhook payloads from GitHub's examples, keys.

Signing (:mod:`valine.testing.signing`) and the service process
(:mod:`valine.testing.service`) are the testing kit's, shared with the demo, the bench
and the proving ground; they are re-exported here under the names the tests use.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from valine.testing import payloads, signing
from valine.testing.service import Service, free_port, start_service, stop_service
from valine.testing.signing import discord_headers

__all__ = [
    "EXAMPLES_INDEX",
    "GUILD",
    "ROOT",
    "WEBHOOK_SECRET",
    "Service",
    "check_suite_event",
    "discord_headers",
    "free_port",
    "github_headers",
    "interaction",
    "issue_event",
    "pr_event",
    "rsa_key_pair",
    "run_node",
    "start_service",
    "stop_service",
]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_INDEX = (
    ROOT / ".cache/material/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
)
WEBHOOK_SECRET = "test-webhook-secret-" + uuid.uuid4().hex  # generated, never a real secret


def github_headers(
    body: bytes, event: str, delivery: str | None = None, secret: str = WEBHOOK_SECRET
) -> dict[str, str]:
    """Headers GitHub sends with a delivery signed with ``secret`` (the tests' by default)."""
    return signing.github_headers(secret, event, body, delivery)


#: The Discord server the interactions come from; tests/world.py's DEFAULT_CONFIG serves it.
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


# --- webhook payloads built from @octokit/webhooks-examples --------------------------------


def _example(examples: dict[str, list[dict[str, Any]]], event: str, action: str) -> dict[str, Any]:
    """A deep copy of a real example of ``event`` (of ``action`` when there is one)."""
    candidates = examples[event]
    chosen = next((e for e in candidates if e.get("action") == action), candidates[0])
    payload: dict[str, Any] = json.loads(json.dumps(chosen))
    payload["action"] = action
    return payload


def _set_repo(payload: dict[str, Any], repo: str) -> None:
    owner, name = repo.split("/")
    payload["repository"]["full_name"] = repo
    payload["repository"]["name"] = name
    payload["repository"]["owner"]["login"] = owner


def pr_event(
    examples: dict[str, list[dict[str, Any]]],
    action: str,
    *,
    repo: str,
    number: int,
    body: str = "",
    head_ref: str = "feature",
    head_sha: str = "a" * 40,
    merged: bool = False,
    author: str | None = None,
    author_association: str = "MEMBER",
    user_type: str = "User",
    head_repo: str | None = None,
) -> dict[str, Any]:
    """A ``pull_request`` delivery for PR ``number`` of ``repo``, from a real example.

    By default from a member of the repository, with the head branch in ``repo``;
    ``head_repo`` makes it a fork's.
    """
    payload = _example(examples, "pull_request", action)
    _set_repo(payload, repo)
    pull = payload["pull_request"]
    payload["number"] = pull["number"] = number
    pull["body"] = body
    pull["head"]["ref"], pull["head"]["sha"] = head_ref, head_sha
    pull["head"]["repo"]["full_name"] = head_repo or repo
    pull["author_association"] = author_association
    pull["user"]["type"] = user_type
    if author is not None:
        pull["user"]["login"] = author
    pull["merged"] = merged
    pull["state"] = "closed" if action == "closed" else "open"
    return payload


def check_suite_event(
    examples: dict[str, list[dict[str, Any]]],
    action: str,
    *,
    repo: str,
    head_sha: str,
    conclusion: str | None,
    pulls: list[int],
) -> dict[str, Any]:
    """A ``check_suite`` delivery for ``head_sha`` covering PRs ``pulls``."""
    payload = _example(examples, "check_suite", action)
    _set_repo(payload, repo)
    suite = payload["check_suite"]
    suite["head_sha"] = head_sha
    suite["conclusion"] = conclusion
    suite["status"] = "completed" if action == "completed" else "queued"
    template = suite["pull_requests"][0] if suite["pull_requests"] else {"head": {}, "base": {}}
    suite["pull_requests"] = [
        {**template, "number": n, "head": {**template["head"], "sha": head_sha}} for n in pulls
    ]
    return payload


def issue_event(
    examples: dict[str, list[dict[str, Any]]],
    action: str,
    *,
    repo: str,
    number: int,
    labels: list[str],
    label: str | None = None,
    sender: str = "octocat",
) -> dict[str, Any]:
    """An ``issues`` delivery for issue ``number`` with its current ``labels``."""
    payload = _example(examples, "issues", action)
    _set_repo(payload, repo)
    issue = payload["issue"]
    issue["number"] = number
    issue["state"] = "closed" if action == "closed" else "open"
    issue["labels"] = [
        {"id": i, "name": n, "color": "ededed", "default": False} for i, n in enumerate(labels, 1)
    ]
    if label is not None:
        payload["label"] = {"id": 99, "name": label, "color": "ededed", "default": False}
    payload["sender"]["login"] = sender
    return payload


def rsa_key_pair() -> tuple[str, str]:
    """A fresh (private, public) PEM pair, as a GitHub App's key (generated per test run)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def run_node(script: Path, args: list[str], request: Any, what: str, timeout: float = 60) -> Any:
    """Run a Node script of the test material with ``request`` as JSON on stdin; its JSON.

    ``what`` names what it needs, for the failure message when ``node`` is missing.
    """
    import shutil

    import pytest

    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH: it is needed to run {what}")
    try:
        completed = subprocess.run(
            [node, str(script), *args],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script.name} did not answer within {timeout} s")
    if completed.returncode != 0:
        pytest.fail(f"{script.name} failed ({completed.returncode}):\n{completed.stderr}")
    return json.loads(completed.stdout)
