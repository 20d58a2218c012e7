"""Signed requests as Discord and GitHub send them: the one builder of tests, demo, bench.

Discord signs ``timestamp + body`` with the application's Ed25519 key
(``x-signature-ed25519``, ``x-signature-timestamp``); GitHub signs the body with the
webhook's secret, HMAC-SHA256 (``x-hub-signature-256: sha256=<hex>``), and names the event
and the delivery. Header names are lower-case, as HTTP/2 and the service read them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any


def discord_headers(signing_key: Any, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    """Headers of an interaction signed with ``signing_key`` (a nacl ``SigningKey``).

    ``timestamp`` (epoch seconds as text) defaults to now.
    """
    ts = timestamp or str(int(time.time()))
    signature = signing_key.sign(ts.encode() + body).signature.hex()
    return {
        "content-type": "application/json",
        "x-signature-ed25519": signature,
        "x-signature-timestamp": ts,
    }


def github_headers(
    secret: str, event: str, body: bytes, delivery: str | None = None
) -> dict[str, str]:
    """Headers of a webhook delivery of ``event`` signed with ``secret``.

    The HMAC is computed here, not with the service's own :mod:`valine.github.verify`,
    so a defect there cannot sign and verify alike.
    """
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": "sha256=" + digest,
    }
