"""Smoke check of a deployed (or local) Valine: the two endpoints answer as they must.

1. ``POST /discord`` with a badly signed interaction must be refused with 401 (Discord
   itself sends such requests and delists an endpoint that accepts them).
2. ``POST /github/webhook`` with a GitHub ``ping`` signed with the webhook secret must get
   200 (the secret in the stack and the one the sender uses agree).

Usage (the deploy workflow runs it after ``sam deploy``)::

    GITHUB_WEBHOOK_SECRET=... python scripts/smoke_check.py \\
        --discord-url https://.../discord --github-url https://.../github/webhook

Only the standard library, so it runs anywhere. Exit status 0 when both hold, 1 otherwise;
it prints one line per check and never the secret.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` and return the HTTP status (an error status is a status too)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def bad_interaction() -> tuple[bytes, dict[str, str]]:
    """A PING interaction with a well-formed but wrong Ed25519 signature."""
    body = json.dumps({"type": 1, "id": "smoke", "application_id": "0"}).encode()
    return body, {
        "content-type": "application/json",
        "x-signature-ed25519": secrets.token_hex(64),
        "x-signature-timestamp": str(int(time.time())),
        "user-agent": "valine-smoke-check",
    }


def signed_ping(secret: str) -> tuple[bytes, dict[str, str]]:
    """A GitHub ``ping`` delivery signed with ``secret`` (a fresh body each time)."""
    body = json.dumps(
        {"zen": f"smoke check {secrets.token_hex(8)}", "hook_id": 0, "hook": {"events": []}}
    ).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "content-type": "application/json",
        "x-github-event": "ping",
        "x-github-delivery": f"smoke-{secrets.token_hex(8)}",
        "x-hub-signature-256": f"sha256={digest}",
        "user-agent": "GitHub-Hookshot/valine-smoke-check",
    }


def main(argv: list[str] | None = None) -> int:
    """Run both checks; 0 when both hold."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--discord-url", required=True)
    parser.add_argument("--github-url", required=True)
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    secret = os.environ.get("GITHUB_WEBHOOK_SECRET", "")
    if not secret:
        print("smoke: GITHUB_WEBHOOK_SECRET is not set", file=sys.stderr)
        return 1
    failures = 0
    status = post(args.discord_url, *bad_interaction(), timeout=args.timeout)
    failures += _report("badly signed interaction refused", status, 401)
    status = post(args.github_url, *signed_ping(secret), timeout=args.timeout)
    failures += _report("signed GitHub ping accepted", status, 200)
    return 1 if failures else 0


def _report(what: str, status: int, wanted: int) -> int:
    ok = status == wanted
    print(f"smoke: {'ok' if ok else 'FAILED'}: {what} (HTTP {status}, want {wanted})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
