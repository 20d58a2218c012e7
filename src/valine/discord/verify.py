"""Ed25519 verification of Discord interaction requests (PyNaCl, imported here only)."""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey


class InteractionVerifier:
    """Checks ``X-Signature-Ed25519`` over ``X-Signature-Timestamp`` + raw body."""

    def __init__(self, public_key_hex: str) -> None:
        self._key = VerifyKey(bytes.fromhex(public_key_hex))

    def verify(self, signature_hex: str | None, timestamp: str | None, body: bytes) -> bool:
        """True only if the signature is well-formed and valid for this request."""
        if not signature_hex or not timestamp or len(signature_hex) != 128:
            return False
        try:
            signature = bytes.fromhex(signature_hex)
            self._key.verify(timestamp.encode() + body, signature)
        except (BadSignatureError, ValueError):
            return False
        return True
