"""Fixtures shared by every suite; plain helpers live in helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from nacl.signing import SigningKey

from helpers import WEBHOOK_SECRET, Service, examples, start_service, stop_service
from valine.testing.examples import MaterialMissing, load_examples
from world import World, start_world, stop_world

# Property-based tests: no per-example deadline (the machine is shared, and a slow example
# is not a failure; speed lives in `make bench`); the example database stays out of the tree.
# ``VALINE_FUZZ_SCALE`` multiplies every count (helpers.examples), this default 100 included.
settings.register_profile(
    "valine",
    max_examples=examples(100),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("valine")


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """A fresh Ed25519 key standing in for the Discord application's."""
    return SigningKey.generate()


@pytest.fixture(scope="session")
def public_key_hex(signing_key: SigningKey) -> str:
    """The hex public key the service is configured with (DISCORD_PUBLIC_KEY)."""
    return signing_key.verify_key.encode().hex()


@pytest.fixture(scope="session")
def webhook_examples() -> dict[str, list[dict[str, Any]]]:
    """Real webhook payloads from @octokit/webhooks-examples, by event name (make material)."""
    try:
        return load_examples()
    except MaterialMissing as missing:
        pytest.fail(str(missing))


@pytest.fixture
def service(tmp_path: Path, public_key_hex: str) -> Iterator[Service]:
    """``valine serve`` in its own process, keys set, GitHub/Discord credentials missing."""
    running = start_service(
        tmp_path,
        {
            "DISCORD_PUBLIC_KEY": public_key_hex,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    try:
        yield running
    finally:
        stop_service(running)


@pytest.fixture
def world(
    tmp_path: Path, signing_key: SigningKey, webhook_examples: dict[str, list[dict[str, Any]]]
) -> Iterator[World]:
    """GitHub and Discord stand-ins with ``valine serve`` wired to them."""
    running = start_world(tmp_path, signing_key, webhook_examples)
    try:
        yield running
    finally:
        stop_world(running)
