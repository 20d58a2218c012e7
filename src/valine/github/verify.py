"""HMAC-SHA256 verification of GitHub webhook deliveries (stdlib only)."""

from __future__ import annotations

import hashlib
import hmac

_PREFIX = "sha256="


def signature_for(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value GitHub sends for ``body``."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True if ``header`` is the right signature of ``body``; compared in constant time.

    Whatever the header's bytes (non-ASCII, control characters), the answer is False,
    never an exception: both sides are compared as bytes.
    """
    if not header:
        return False
    given = header.strip().encode("utf-8", "surrogatepass")
    if not given.startswith(_PREFIX.encode()):
        return False
    return hmac.compare_digest(signature_for(secret, body).encode(), given)
