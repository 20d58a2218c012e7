"""Webhook deliveries built from GitHub's own examples (``@octokit/webhooks-examples``).

The tests and the proving ground send the service real payloads, changed only where a
scenario needs it (repository, numbers, SHAs, authors). The examples are test material:
``make material`` installs them into ``.cache/material`` (an editable install's tree);
:func:`load_examples` says so when they are missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The index of @octokit/webhooks-examples, where ``make material`` installs it.
EXAMPLES_INDEX = (
    Path(__file__).resolve().parents[3]
    / ".cache/material/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
)


class MaterialMissing(RuntimeError):
    """The test material is not installed (``make material`` installs it)."""


def load_examples(index: Path = EXAMPLES_INDEX) -> dict[str, list[dict[str, Any]]]:
    """Every example delivery, by event name; :class:`MaterialMissing` if not installed."""
    if not index.exists():
        raise MaterialMissing("test material missing: run `make material` (make test does it)")
    entries = json.loads(index.read_text())
    return {entry["name"]: entry["examples"] for entry in entries}


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


def workflow_run_event(
    examples: dict[str, list[dict[str, Any]]], repo: str, standin_payload: dict[str, Any]
) -> dict[str, Any]:
    """A ``workflow_run`` delivery from a real example, carrying the stand-in's run.

    The example gives every field GitHub sends; the stand-in's payload
    (``GitHubStandIn.workflow_run_payload``) gives the action, the run's id, status,
    conclusion, event, branch, title, times and URLs, and the workflow's path.
    """
    action = standin_payload["action"]
    payload = _example(examples, "workflow_run", action)
    _set_repo(payload, repo)
    run = standin_payload["workflow_run"]
    for key in (
        "id",
        "status",
        "conclusion",
        "event",
        "head_branch",
        "head_sha",
        "display_title",
        "path",
        "created_at",
        "updated_at",
        "html_url",
        "url",
    ):
        payload["workflow_run"][key] = run[key]
    payload["workflow"]["path"] = standin_payload["workflow"]["path"]
    return payload


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
