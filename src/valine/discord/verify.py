"""Ed25519 verification of Discord interaction requests (PyNaCl, imported here only)."""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

_HEX = frozenset("0123456789abcdefABCDEF")


class InteractionVerifier:
    """Checks ``X-Signature-Ed25519`` over ``X-Signature-Timestamp`` + raw body."""

    def __init__(self, public_key_hex: str) -> None:
        self._key = VerifyKey(bytes.fromhex(public_key_hex))

    def verify(self, signature_hex: str | None, timestamp: str | None, body: bytes) -> bool:
        """True only if the signature is well-formed and valid for this request.

        Any header bytes are refused cleanly: the signature must be 128 hexadecimal
        characters and the timestamp 1 to 12 ASCII digits (seconds since the epoch).
        """
        if not signature_hex or len(signature_hex) != 128 or not _HEX.issuperset(signature_hex):
            return False
        if not timestamp or len(timestamp) > 12 or not timestamp.isascii():
            return False
        if not timestamp.isdigit():
            return False
        try:
            self._key.verify(timestamp.encode("ascii") + body, bytes.fromhex(signature_hex))
        except (BadSignatureError, ValueError):
            return False
        return True
