"""Test helpers shared by every suite: keys, Node-run validators, and the testing kit.

Signing (:mod:`valine.testing.signing`), the service process
(:mod:`valine.testing.service`), GitHub's example deliveries
(:mod:`valine.testing.examples`) and the tests' interactions (:mod:`valine.testing.world`)
are the testing kit's, shared with the demo, the bench and the proving ground; they are
re-exported here under the names the tests use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from valine.testing.examples import (
    EXAMPLES_INDEX,
    _example,
    _set_repo,
    check_suite_event,
    issue_event,
    pr_event,
    workflow_run_event,
)
from valine.testing.service import Service, free_port, start_service, stop_service
from valine.testing.signing import discord_headers
from valine.testing.world import GUILD, WEBHOOK_SECRET, github_headers, interaction

__all__ = [
    "EXAMPLES_INDEX",
    "FUZZ_SCALE",
    "GUILD",
    "ROOT",
    "SEED_COMMANDS",
    "WEBHOOK_SECRET",
    "Service",
    "_example",
    "_set_repo",
    "check_suite_event",
    "discord_headers",
    "examples",
    "free_port",
    "github_headers",
    "interaction",
    "issue_event",
    "pr_event",
    "rsa_key_pair",
    "run_node",
    "start_service",
    "stop_service",
    "workflow_run_event",
]

ROOT = Path(__file__).resolve().parents[1]

#: How many times ``make test``'s example counts every property-based test runs:
#: ``VALINE_FUZZ_SCALE=20 make properties`` (the volume behind the README's "never" claims).
FUZZ_SCALE = max(1, int(os.environ.get("VALINE_FUZZ_SCALE", "1")))


def examples(count: int) -> int:
    """``count`` Hypothesis examples, times ``VALINE_FUZZ_SCALE``."""
    return count * FUZZ_SCALE


#: The slash commands a user sees after ``valine register-commands``, spelled out once:
#: the README's command table promises these names (a new command changes this set).
SEED_COMMANDS = frozenset(
    {"plan", "approve", "status", "ship", "cancel", "retry", "deploy", "digest", "help"}
)


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


def assert_loaded_only_by(module: str, setup: str, first_use: str) -> None:
    """In a fresh interpreter, ``setup`` leaves ``module`` unimported and ``first_use``
    imports it (the lazy imports that keep a cold start or an idle process light)."""
    code = (
        f"import sys\n{setup}\n"
        f"print({module!r} in sys.modules, end=' ')\n{first_use}\n"
        f"print({module!r} in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False True\n"


def paths_in(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``document`` (keys; indexes of a list's first 3 items)."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths_in(value, (*prefix, key))
    elif isinstance(document, list):
        for i, value in enumerate(document[:3]):
            found += paths_in(value, (*prefix, i))
    return found


def set_at(document: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set the value at ``path`` (from :func:`paths_in`) inside ``document``."""
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


#: Values of every JSON type, to put where a payload has a value of another one.
WRONG_TYPES = ["7", 7, True, [], {}, [1, 2], {"x": 1}, 1.5, -3, None]
