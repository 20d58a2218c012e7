"""Test helpers shared by every suite: keys, request signing, the service process."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from valine.testing import payloads

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_INDEX = (
    ROOT / ".cache/material/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
)
WEBHOOK_SECRET = "test-webhook-secret-" + uuid.uuid4().hex  # generated, never a real secret


def discord_headers(key: SigningKey, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    """Headers Discord sends with an interaction signed by ``key``."""
    ts = timestamp or str(int(time.time()))
    signature = key.sign(ts.encode() + body).signature.hex()
    return {
        "content-type": "application/json",
        "x-signature-ed25519": signature,
        "x-signature-timestamp": ts,
    }


def github_headers(
    body: bytes, event: str, delivery: str | None = None, secret: str = WEBHOOK_SECRET
) -> dict[str, str]:
    """Headers GitHub sends with a delivery signed with ``secret``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + digest,
    }


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A running ``valine serve`` process."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """One HTTP request over a fresh loopback connection: (status, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def logs(self) -> str:
        """Everything the process has logged so far."""
        return self.log_path.read_text()


#: ``valine serve`` itself, and the testing launcher: the same service with the test hooks
#: (``VALINE_TEST_*``, see ``valine.testing.launcher``), which the product never reads.
SERVE = ("valine.runtime.cli", "serve")
SERVE_WITH_HOOKS = ("valine.testing.launcher",)


def start_service(workdir: Path, env: dict[str, str]) -> Service:
    """Start ``valine serve`` in ``workdir`` and wait (bounded) until /healthz answers.

    An ``env`` that sets a ``VALINE_TEST_*`` hook starts it through the testing launcher.
    """
    port = free_port()
    log_path = workdir / "service.log"
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "GITHUB_", "VALINE_"))
    }
    full_env.update(env)
    command = SERVE_WITH_HOOKS if any(k.startswith("VALINE_TEST_") for k in env) else SERVE
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", *command, "--port", str(port)],
            cwd=workdir,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    service = Service(process, port, workdir, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"valine serve exited early:\n{service.logs()}")
        try:
            if service.request("GET", "/healthz")[0] == 200:
                return service
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"valine serve did not answer in time:\n{service.logs()}")


def stop_service(service: Service) -> None:
    """SIGTERM, then SIGKILL after a bounded wait."""
    service.process.terminate()
    try:
        service.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(timeout=10)


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
