"""HMAC-SHA256 verification of GitHub webhook deliveries (stdlib only)."""

from __future__ import annotations

import hashlib
import hmac

_PREFIX = "sha256="


def signature_for(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value GitHub sends for ``body``."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True if ``header`` is the right signature of ``body``; compared in constant time."""
    if not header or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(signature_for(secret, body), header.strip())
