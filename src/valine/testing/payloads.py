"""Minimal request bodies as Discord and GitHub send them, for `valine demo` and `simulate`.

They carry the fields the service reads (the tests use GitHub's real example payloads
from @octokit/webhooks-examples instead); :mod:`valine.testing.signing` signs them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

APPLICATION_ID = "1100000000000000000"


def interaction(
    kind: int = 2,
    name: str | None = None,
    options: dict[str, str] | None = None,
    *,
    user_id: str = "42",
    roles: tuple[str, ...] = (),
    custom_id: str | None = None,
    focused: str | None = None,
) -> dict[str, Any]:
    """An interaction: 1 PING, 2 command, 3 button (``custom_id``), 4 autocomplete."""
    document: dict[str, Any] = {
        "id": str(uuid.uuid4().int)[:18],
        "type": kind,
        "application_id": APPLICATION_ID,
        "token": "sim-" + uuid.uuid4().hex,
        "version": 1,
        "channel_id": "3",
        "guild_id": "4",
        "member": {"user": {"id": user_id, "username": f"user{user_id}"}, "roles": list(roles)},
    }
    if kind == 3:
        document["data"] = {"custom_id": custom_id or "", "component_type": 2}
    elif name is not None:
        document["data"] = {
            "id": "5",
            "name": name,
            "type": 1,
            "options": [
                {"name": k, "type": 3, "value": v, **({"focused": True} if k == focused else {})}
                for k, v in (options or {}).items()
            ],
        }
    return document


def repository(repo: str) -> dict[str, Any]:
    """The ``repository`` object of a delivery."""
    owner, name = repo.split("/")
    return {"full_name": repo, "name": name, "owner": {"login": owner}}


def pull_request(
    repo: str,
    action: str,
    number: int,
    sha: str,
    body: str = "",
    *,
    ref: str = "",
    merged: bool = False,
) -> dict[str, Any]:
    """A ``pull_request`` delivery."""
    return {
        "action": action,
        "number": number,
        "repository": repository(repo),
        "sender": {"login": "coding-agent[bot]"},
        "pull_request": {
            "number": number,
            "body": body,
            "state": "closed" if action == "closed" else "open",
            "merged": merged,
            "user": {"login": "coding-agent[bot]", "type": "Bot"},
            "author_association": "NONE",
            "head": {"ref": ref, "sha": sha, "repo": {"full_name": repo}},
        },
    }


def check_suite(
    repo: str, sha: str, conclusion: str | None, pr: int, action: str = "completed"
) -> dict[str, Any]:
    """A ``check_suite`` delivery for ``sha`` of PR ``pr``."""
    return {
        "action": action,
        "repository": repository(repo),
        "sender": {"login": "ci"},
        "check_suite": {
            "head_sha": sha,
            "status": "completed" if action == "completed" else "queued",
            "conclusion": conclusion,
            "pull_requests": [{"number": pr, "head": {"sha": sha}}],
        },
    }


def status(
    repo: str, sha: str, state: str, context: str, target_url: str | None = None
) -> dict[str, Any]:
    """A ``status`` delivery: commit status ``context`` on ``sha`` is now ``state``.

    GitHub sends it for every status created (``error``, ``failure``, ``pending``,
    ``success``); it has no ``action``.
    """
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "id": uuid.uuid4().int % 10**9,
        "sha": sha,
        "name": repo,
        "target_url": target_url,
        "context": context,
        "description": None,
        "state": state,
        "commit": {"sha": sha},
        "branches": [],
        "created_at": now,
        "updated_at": now,
        "repository": repository(repo),
        "sender": {"login": "ci"},
    }


def issues(
    repo: str, action: str, number: int, labels: list[str], label: str | None = None
) -> dict[str, Any]:
    """An ``issues`` delivery."""
    payload: dict[str, Any] = {
        "action": action,
        "repository": repository(repo),
        "sender": {"login": "octocat"},
        "issue": {
            "number": number,
            "state": "closed" if action == "closed" else "open",
            "labels": [{"name": n} for n in labels],
        },
    }
    if label is not None:
        payload["label"] = {"name": label}
    return payload


def encode(document: dict[str, Any]) -> bytes:
    """The compact JSON body of ``document``."""
    return json.dumps(document, separators=(",", ":")).encode()
