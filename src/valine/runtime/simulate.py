"""``valine simulate``: correctly signed requests to a running service, no accounts needed.

Discord signs interactions with the application's private key, which only Discord has;
to try the service without Discord, ``valine simulate keygen`` makes a key pair of your
own, keeps the private half in ``.valine/simulate.key`` and prints the public half to put
in ``.env`` as ``DISCORD_PUBLIC_KEY``. GitHub deliveries are signed with
``GITHUB_WEBHOOK_SECRET``, as GitHub does.

The parser is built for every ``valine`` command, ``serve`` too, so this module imports
the payload builders and the HTTP client only when a simulation runs (they cost the
idle service about 1.5 MB of memory otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KEY_FILE = Path(".valine/simulate.key")


def add_parser(commands: Any) -> None:
    """Add ``simulate`` and its sub-commands to the CLI's sub-parsers."""
    simulate = commands.add_parser("simulate", help="send signed requests to a running service")
    simulate.add_argument("--url", default="http://127.0.0.1:8787", help="the service")
    kinds = simulate.add_subparsers(required=True, metavar="KIND")

    keygen = kinds.add_parser("keygen", help="make a Discord key pair for simulating")
    keygen.set_defaults(func=_keygen)

    discord = kinds.add_parser("discord", help="a slash command, button press or autocomplete")
    discord.add_argument("command", nargs="?", help="e.g. /plan, approve, status")
    discord.add_argument("options", nargs="*", help="name=value, e.g. run_id=r20261125-abc123")
    discord.add_argument("--button", metavar="CUSTOM_ID", help="press a button, e.g. ship:RUN")
    discord.add_argument("--autocomplete", metavar="OPTION", help="the focused option")
    discord.add_argument("--ping", action="store_true", help="send a PING")
    discord.add_argument("--user", default="42", help="Discord user id of the sender")
    discord.add_argument("--role", action="append", default=[], help="a role id (repeatable)")
    discord.set_defaults(func=_discord)

    github = kinds.add_parser("github", help="a webhook delivery")
    github.add_argument(
        "event", help="pull_request, check_suite, status, issues, issue_comment, ping"
    )
    github.add_argument("--action", default=None, help="e.g. opened, completed, closed")
    github.add_argument("--file", type=Path, help="the payload (JSON); else a minimal one")
    github.add_argument("--repo", default=os.environ.get("GITHUB_REPOSITORY", "owner/repo"))
    github.add_argument("--number", type=int, default=1, help="PR or issue number")
    github.add_argument("--sha", default="0" * 40, help="head SHA")
    github.add_argument("--body", default="", help="PR body, e.g. 'Fixes #12'")
    github.add_argument("--conclusion", default="success", help="check suite conclusion")
    github.add_argument(
        "--state",
        default="success",
        choices=("error", "failure", "pending", "success"),
        help="commit status state (status)",
    )
    github.add_argument("--context", default="ci", help="commit status context (status)")
    github.add_argument("--target-url", default=None, help="commit status link (status)")
    github.add_argument("--delivery", help="X-GitHub-Delivery (repeat one to test dedupe)")
    github.set_defaults(func=_github)


def _keygen(args: argparse.Namespace) -> int:
    from nacl.signing import SigningKey

    key = SigningKey.generate()
    KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEY_FILE.write_text(key.encode().hex())
    KEY_FILE.chmod(0o600)
    print(f"private key written to {KEY_FILE} (keep it out of version control)")
    print("put this in .env (or the environment) and restart `valine serve`:")
    print(f"DISCORD_PUBLIC_KEY={key.verify_key.encode().hex()}")
    return 0


def _signing_key() -> Any:
    from nacl.signing import SigningKey

    if not KEY_FILE.exists():
        raise SystemExit("valine: no simulation key; run `valine simulate keygen` first")
    return SigningKey(bytes.fromhex(KEY_FILE.read_text().strip()))


def _discord(args: argparse.Namespace) -> int:
    from valine.testing import payloads, signing

    roles = tuple(args.role)
    if args.ping:
        document = payloads.interaction(1)
    elif args.button:
        document = payloads.interaction(3, custom_id=args.button, user_id=args.user, roles=roles)
    elif args.command:
        options = dict(_option(o) for o in args.options)
        kind = 4 if args.autocomplete else 2
        document = payloads.interaction(
            kind,
            args.command.lstrip("/"),
            options,
            user_id=args.user,
            roles=roles,
            focused=args.autocomplete,
        )
    else:
        raise SystemExit("valine: name a command, or use --button or --ping")
    body = payloads.encode(document)
    status, answer = _post(
        args.url, "/discord", body, signing.discord_headers(_signing_key(), body)
    )
    return _report(status, answer)


def _github(args: argparse.Namespace) -> int:
    from valine.runtime.config import local_settings
    from valine.testing import payloads, signing

    secret = local_settings().github_webhook_secret
    if not secret:
        raise SystemExit("valine: GITHUB_WEBHOOK_SECRET is not set (environment or .env)")
    document = json.loads(args.file.read_text()) if args.file else _minimal(args)
    body = payloads.encode(document)
    headers = signing.github_headers(secret, args.event, body, args.delivery)
    return _report(*_post(args.url, "/github/webhook", body, headers))


def _minimal(args: argparse.Namespace) -> dict[str, Any]:
    from valine.testing import payloads

    if args.event == "pull_request":
        return payloads.pull_request(
            args.repo,
            args.action or "opened",
            args.number,
            args.sha,
            args.body,
            merged=args.action == "closed",
        )
    if args.event == "check_suite":
        return payloads.check_suite(
            args.repo, args.sha, args.conclusion, args.number, args.action or "completed"
        )
    if args.event == "status":
        return payloads.status(args.repo, args.sha, args.state, args.context, args.target_url)
    if args.event == "issues":
        return payloads.issues(args.repo, args.action or "closed", args.number, [])
    if args.event == "ping":
        return {"zen": "Keep it logically awesome.", "hook_id": 1}
    return {"action": args.action or "created", "repository": payloads.repository(args.repo)}


def _option(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"valine: options are name=value, got {text!r}")
    return name, value


def _post(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError as exc:
        raise SystemExit(f"valine: cannot reach {url}: {exc}. Is `valine serve` running?") from None
    finally:
        conn.close()


def _report(status: int, answer: bytes) -> int:
    print(f"HTTP {status}")
    try:
        print(json.dumps(json.loads(answer), indent=2, ensure_ascii=False))
    except ValueError:
        print(answer.decode(errors="replace"))
    return 0 if status < 400 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `valine simulate`")
