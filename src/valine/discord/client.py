"""Discord REST client: interaction follow-ups, channel messages, command registration.

One pooled :class:`httpx.Client` per :class:`DiscordClient`, shared by worker threads.

* Interaction webhooks (``edit_original``, ``followup``) are authorised by the interaction
  token in the URL, so they send no bot token; channel and application routes send
  ``Authorization: Bot <token>``.
* 429: waits Discord's ``retry_after`` (JSON body, float seconds; else ``Retry-After``),
  globally when the limit is global, then retries. A response saying
  ``X-RateLimit-Remaining: 0`` makes the next request on the same route and top-level
  resource wait ``X-RateLimit-Reset-After`` first. Every wait counts against
  ``max_retry_wait``; a limit that would outlast it raises ``DiscordUnavailable`` at once.
* 5xx and network errors: retried with exponential backoff and jitter (the service's one
  formula, :func:`valine.infra.http_client.backoff_delay`), then ``DiscordUnavailable``.
  A ``POST`` that may have reached Discord (a 5xx, or a network error after connecting)
  is never sent blindly again unless it is idempotent (a channel message with ``nonce``
  and ``enforce_nonce``: Discord then returns the first message instead of creating a
  second); ``DiscordUnavailable.request_sent`` says whether it may have arrived.
* Other 4xx: :class:`~valine.ports.DiscordError` with Discord's JSON error ``code``.
* Logs name the route template (``/webhooks/{application_id}/{token}``), never the URL:
  interaction tokens are in URLs. A filter on the ``httpx`` logger redacts them from the
  library's own request log too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from valine import __version__, metrics
from valine.core.errors import ConfigurationError, DiscordUnavailable
from valine.core.replies import Message
from valine.discord.render import message_body
from valine.infra.http_client import RateLimitGate, backoff_delay, may_have_arrived
from valine.logs import get_logger, redact
from valine.ports import THREAD_ALREADY_CREATED, DiscordError

#: What the client sends: a domain message (the port's), or a message body as is
#: (Discord's wire format: the tests and the contract checks use it).
Body = Message | Mapping[str, Any]

log = get_logger("valine.discord.client")

#: Discord asks bots for ``DiscordBot ($url, $version)``.
USER_AGENT = f"DiscordBot (valine-orchestrator, {__version__})"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_MAX_RETRY_WAIT = 15.0
#: First backoff after a 5xx or network error; doubles per attempt up to the cap.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 4.0
#: Wait after a 429 that names no duration.
DEFAULT_RETRY_AFTER = 1.0
#: Minutes of inactivity after which a run's thread leaves the channel list (Discord
#: takes 60, 1440, 4320 or 10080); a post brings it back.
DEFAULT_AUTO_ARCHIVE = 1440

_WEBHOOK = "/webhooks/{application_id}/{token}"
_ORIGINAL = _WEBHOOK + "/messages/@original"
_CHANNEL_MESSAGES = "/channels/{channel_id}/messages"
_CHANNEL_MESSAGE = "/channels/{channel_id}/messages/{message_id}"
_MESSAGE_THREADS = _CHANNEL_MESSAGE + "/threads"
_CHANNEL = "/channels/{channel_id}"
_COMMANDS = "/applications/{application_id}/commands"
_GUILD_COMMANDS = "/applications/{application_id}/guilds/{guild_id}/commands"
_APPLICATION = "/applications/@me"

#: The key of Discord's global rate limit among the route buckets.
_GLOBAL = "global"
# Interaction and webhook tokens as they appear in URLs.
_TOKEN_IN_URL = re.compile(r"(/(?:webhooks|interactions)/[^/\s]+/)[^/\s?#\"']+")


@dataclass(frozen=True, slots=True)
class _Call:
    """One logical request: what to send, how to log it, how to retry it."""

    method: str
    template: str
    path: str
    bucket: str
    body: bytes | None = None
    params: Mapping[str, str] | None = None
    bot: bool = False
    idempotent: bool = True
    secret: str = ""

    @property
    def route(self) -> str:
        """``METHOD /template``: what logs and errors name instead of the URL."""
        return f"{self.method} {self.template}"


class DiscordClient:
    """The :class:`~valine.ports.Discord` port over Discord's REST API (v10).

    ``application_id`` is the default for the interaction routes (which also take it as
    an argument) and is needed for command registration; ``bot_token`` is needed for the
    channel and application routes. A missing one raises ``ConfigurationError`` naming
    its environment variable when an operation needs it. ``sleep``, ``clock`` and
    ``jitter`` are injectable so tests neither wait nor depend on timing or chance.
    """

    def __init__(
        self,
        api_url: str,
        application_id: str | None = None,
        bot_token: str | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.application_id = application_id or None
        self._bot_token = bot_token or None
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self.max_retry_wait = max_retry_wait
        self.max_attempts = max(1, max_attempts)
        self._limits = RateLimitGate(clock)  # route buckets, and _GLOBAL
        self._http = httpx.Client(
            base_url=self.api_url + "/",
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )
        install_url_redaction()

    def __repr__(self) -> str:
        return f"DiscordClient({self.api_url!r}, application_id={self.application_id!r})"

    # -- the Discord port ---------------------------------------------------------------

    def edit_original(self, application_id: str, token: str, message: Body) -> str:
        """``PATCH /webhooks/{app}/{token}/messages/@original``; the message id."""
        app = self._app(application_id)
        call = _Call(
            "PATCH",
            _ORIGINAL,
            f"webhooks/{_seg(app)}/{_seg(token)}/messages/@original",
            _bucket("PATCH", _ORIGINAL, app, token),
            body=_encode(_document(message)),
            secret=token,
        )
        return _message_id(self._send(call), call)

    def followup(self, application_id: str, token: str, message: Body) -> str:
        """``POST /webhooks/{app}/{token}?wait=true``; the new message's id."""
        app = self._app(application_id)
        call = _Call(
            "POST",
            _WEBHOOK,
            f"webhooks/{_seg(app)}/{_seg(token)}",
            _bucket("POST", _WEBHOOK, app, token),
            body=_encode(_document(message)),
            params={"wait": "true"},
            idempotent=False,
            secret=token,
        )
        return _message_id(self._send(call), call)

    def create_message(self, channel_id: str, message: Body, nonce: str | None = None) -> str:
        """``POST /channels/{channel_id}/messages`` with the bot token; the message id.

        A ``nonce`` is sent with ``enforce_nonce``. Retried after a network error only
        if the body carries both (Discord then refuses to create a duplicate).
        """
        document = _document(message)
        if nonce is not None:
            document = {**document, "nonce": nonce, "enforce_nonce": True}
        call = _Call(
            "POST",
            _CHANNEL_MESSAGES,
            f"channels/{_seg(channel_id)}/messages",
            _bucket("POST", _CHANNEL_MESSAGES, channel_id),
            body=_encode(document),
            bot=True,
            idempotent=bool(document.get("nonce") and document.get("enforce_nonce")),
        )
        return _message_id(self._send(call), call)

    def edit_message(self, channel_id: str, message_id: str, message: Body) -> None:
        """``PATCH /channels/{channel_id}/messages/{message_id}`` with the bot token."""
        call = _Call(
            "PATCH",
            _CHANNEL_MESSAGE,
            f"channels/{_seg(channel_id)}/messages/{_seg(message_id)}",
            _bucket("PATCH", _CHANNEL_MESSAGE, channel_id),
            body=_encode(_document(message)),
            bot=True,
        )
        self._send(call)

    def start_thread(
        self,
        channel_id: str,
        message_id: str,
        name: str,
        auto_archive_duration: int = DEFAULT_AUTO_ARCHIVE,
    ) -> str:
        """``POST /channels/{channel_id}/messages/{message_id}/threads``; the thread's id.

        Discord allows one thread per message (the thread shares the message's id) and
        answers a second start with 400 / 160004: then the message is read back and its
        ``thread`` is the answer. So a start whose answer was lost is safely sent again,
        and a start after a crash finds the thread the first attempt made.
        """
        call = _Call(
            "POST",
            _MESSAGE_THREADS,
            f"channels/{_seg(channel_id)}/messages/{_seg(message_id)}/threads",
            _bucket("POST", _MESSAGE_THREADS, channel_id),
            body=_encode({"name": name[:100], "auto_archive_duration": auto_archive_duration}),
            bot=True,
        )
        try:
            return _message_id(self._send(call), call)
        except DiscordError as exc:
            if exc.code != THREAD_ALREADY_CREATED:
                raise
        log.info("discord %s: the message has its thread already; reading it", call.route)
        return self._thread_of(channel_id, message_id)

    def _thread_of(self, channel_id: str, message_id: str) -> str:
        """The id of the thread started from a message (its ``thread`` field)."""
        call = _Call(
            "GET",
            _CHANNEL_MESSAGE,
            f"channels/{_seg(channel_id)}/messages/{_seg(message_id)}",
            _bucket("GET", _CHANNEL_MESSAGE, channel_id),
            bot=True,
        )
        body = _json(self._send(call))
        thread = body.get("thread") if isinstance(body, dict) else None
        if isinstance(thread, dict) and isinstance(thread.get("id"), str | int):
            return str(thread["id"])
        # Discord said the thread exists; it shares the message's id (Threads topic).
        return str(message_id)

    def archive_thread(self, thread_id: str) -> None:
        """``PATCH /channels/{thread_id}`` with ``archived: true`` (idempotent).

        The bot started the thread, so it may archive it without Manage Threads; a later
        post in it unarchives it again (unless a moderator locked it).
        """
        call = _Call(
            "PATCH",
            _CHANNEL,
            f"channels/{_seg(thread_id)}",
            _bucket("PATCH", _CHANNEL, thread_id),
            body=_encode({"archived": True}),
            bot=True,
        )
        self._send(call)

    # -- command registration -----------------------------------------------------------

    def register_commands(
        self, commands: Sequence[Mapping[str, Any]], guild_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Bulk-overwrite the slash commands (globally, or of one guild); Discord's list."""
        call = self._commands_call("PUT", guild_id, _encode(list(commands)))
        return _command_list(self._send(call), call)

    def get_commands(self, guild_id: str | None = None) -> list[dict[str, Any]]:
        """The registered slash commands (globally, or of one guild)."""
        call = self._commands_call("GET", guild_id, None)
        return _command_list(self._send(call), call)

    def get_application(self) -> dict[str, Any]:
        """The bot's own application (``valine doctor`` reads its interactions endpoint)."""
        call = _Call(
            "GET", _APPLICATION, "applications/@me", _bucket("GET", _APPLICATION), bot=True
        )
        body = _json(self._send(call))
        if not isinstance(body, dict):
            raise DiscordError(200, f"{call.route} answered without an application")
        return body

    def _commands_call(self, method: str, guild_id: str | None, body: bytes | None) -> _Call:
        app = self._app(None)
        if guild_id:
            path = f"applications/{_seg(app)}/guilds/{_seg(guild_id)}/commands"
            bucket = _bucket(method, _GUILD_COMMANDS, guild_id)
            return _Call(method, _GUILD_COMMANDS, path, bucket, body=body, bot=True)
        path = f"applications/{_seg(app)}/commands"
        return _Call(method, _COMMANDS, path, _bucket(method, _COMMANDS), body=body, bot=True)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> DiscordClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the request loop ---------------------------------------------------------------

    def _app(self, application_id: str | None) -> str:
        app = application_id or self.application_id
        if not app:
            raise ConfigurationError(
                "DISCORD_APPLICATION_ID is not set: it is needed to call Discord's "
                "interaction and command routes"
            )
        return app

    def _headers(self, call: _Call) -> dict[str, str]:
        headers = {}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        if call.bot:
            if not self._bot_token:
                raise ConfigurationError(
                    f"DISCORD_BOT_TOKEN is not set: {call.route} needs the bot token"
                )
            headers["Authorization"] = f"Bot {self._bot_token}"
        return headers

    def _send(self, call: _Call) -> httpx.Response:
        headers = self._headers(call)
        waited = 0.0  # seconds slept for this call so far (rate limits and backoff)
        slept_until = 0.0  # the clock time this call already waited for
        attempt = 0
        while True:
            attempt += 1
            waited += self._wait_for_bucket(call, waited, slept_until)
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, content=call.body, headers=headers
                )
            except httpx.TransportError as exc:
                reason = self._redact(f"{type(exc).__name__}: {exc}", call)
                sent = may_have_arrived(exc)
                if not call.idempotent and sent:
                    log.warning(
                        "discord %s: %s; not retried, it may have arrived", call.route, reason
                    )
                    raise DiscordUnavailable(f"Discord {call.route}: {reason}") from None
                waited += self._backoff(call, attempt, waited, reason, sent)
                continue
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                reason = self._redact(f"{type(exc).__name__}: {exc}", call)
                log.warning("discord %s: %s", call.route, reason)
                raise DiscordUnavailable(f"Discord {call.route}: {reason}") from None
            status = response.status_code
            self._remember_bucket(call, response)
            metrics.count("discord_requests")
            if status == 429:
                metrics.count("discord_rate_limited")
                retry_after, is_global = _retry_after(response)
                if attempt >= self.max_attempts or waited + retry_after > self.max_retry_wait:
                    log.warning(
                        "discord %s: rate limited for %.2fs, giving up", call.route, retry_after
                    )
                    raise DiscordUnavailable(
                        f"Discord {call.route}: rate limited for {retry_after:.2f}s "
                        f"(global={is_global}) after {attempt} attempt(s)",
                        request_sent=False,
                    )
                slept_until = self._block(call, retry_after, is_global)
                log.warning(
                    "discord %s: rate limited, retrying in %.2fs (global=%s)",
                    call.route,
                    retry_after,
                    is_global,
                )
                self._sleep(retry_after)
                waited += retry_after
                continue
            if status >= 500:
                reason = f"Discord answered {status}"
                if not call.idempotent:
                    log.warning(
                        "discord %s: %s; not retried, it may have arrived", call.route, reason
                    )
                    raise DiscordUnavailable(f"Discord {call.route}: {reason}")
                waited += self._backoff(call, attempt, waited, reason, True)
                continue
            if status >= 400:
                error = _error(response)
                log.warning(
                    "discord %s: %d %s (code %s)",
                    call.route,
                    status,
                    self._redact(error.message, call),
                    error.code,
                )
                raise error
            log.debug("discord %s: %d", call.route, status)
            return response

    def _backoff(self, call: _Call, attempt: int, waited: float, reason: str, sent: bool) -> float:
        """Sleep before retrying a 5xx or network error, or raise when out of retries."""
        delay = backoff_delay(attempt, BACKOFF_BASE, BACKOFF_CAP, self._jitter)
        if attempt >= self.max_attempts or waited + delay > self.max_retry_wait:
            log.warning(
                "discord %s: %s; giving up after %d attempt(s)", call.route, reason, attempt
            )
            raise DiscordUnavailable(
                f"Discord {call.route}: {reason} after {attempt} attempt(s)", request_sent=sent
            )
        log.info("discord %s: %s; retrying in %.2fs", call.route, reason, delay)
        self._sleep(delay)
        return delay

    def _wait_for_bucket(self, call: _Call, waited: float, slept_until: float) -> float:
        """Sleep until the route's bucket (and the global limit) frees up; seconds slept."""
        until = self._limits.until(_GLOBAL, call.bucket)
        now = self._clock()
        if until <= max(now, slept_until):
            return 0.0
        delay = until - now
        if waited + delay > self.max_retry_wait:
            raise DiscordUnavailable(
                f"Discord {call.route}: rate limit resets in {delay:.2f}s, "
                f"more than the {self.max_retry_wait:.0f}s this client waits"
            )
        log.info("discord %s: waiting %.2fs for the rate limit to reset", call.route, delay)
        self._sleep(delay)
        return delay

    def _remember_bucket(self, call: _Call, response: httpx.Response) -> None:
        """After ``X-RateLimit-Remaining: 0``, hold the bucket for ``Reset-After``."""
        if response.headers.get("x-ratelimit-remaining") != "0":
            return
        reset_after = _float(response.headers.get("x-ratelimit-reset-after"))
        if reset_after is not None and reset_after > 0:
            self._block(call, reset_after, is_global=False)

    def _block(self, call: _Call, seconds: float, is_global: bool) -> float:
        return self._limits.block(_GLOBAL if is_global else call.bucket, seconds)

    def _redact(self, text: str, call: _Call) -> str:
        return redact(text, (call.secret, self._bot_token), (_TOKEN_IN_URL,))


_REDACTION_LOCK = threading.Lock()


class _RedactTokensInUrls(logging.Filter):
    """Replaces interaction tokens in ``httpx``'s ``HTTP Request: ... <url>`` records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message, patterns=(_TOKEN_IN_URL,))
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install_url_redaction() -> None:
    """Make ``httpx``'s own request log redact webhook tokens (idempotent)."""
    logger = logging.getLogger("httpx")
    with _REDACTION_LOCK:
        if not any(isinstance(f, _RedactTokensInUrls) for f in logger.filters):
            logger.addFilter(_RedactTokensInUrls())


def _seg(value: str) -> str:
    """One URL path segment, percent-encoded (ids and tokens are never paths)."""
    return quote(str(value), safe="")


def _bucket(method: str, template: str, *major: str) -> str:
    """The rate-limit memory key: route plus its top-level resource, tokens hashed."""
    digest = hashlib.blake2s("\x00".join(major).encode(), digest_size=12).hexdigest()
    return f"{method} {template} {digest}"


def _document(message: Body) -> Mapping[str, Any]:
    """The wire body of a domain message (rendered), or of a body given as is."""
    return message_body(message) if isinstance(message, Message) else message


def _encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> tuple[float, bool]:
    """Seconds to wait after a 429, and whether the limit is the global one."""
    body = _json(response)
    body = body if isinstance(body, dict) else {}
    seconds = body.get("retry_after")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        seconds = _float(response.headers.get("retry-after"))
    if seconds is None:
        seconds = _float(response.headers.get("x-ratelimit-reset-after"))
    is_global = (
        body.get("global") is True
        or response.headers.get("x-ratelimit-global", "").lower() == "true"
        or response.headers.get("x-ratelimit-scope", "").lower() == "global"
    )
    return (DEFAULT_RETRY_AFTER if seconds is None else float(seconds)), is_global


def _error(response: httpx.Response) -> DiscordError:
    """Discord's JSON error ``{code, message, errors}`` as a DiscordError."""
    body = _json(response)
    code = None
    message = response.reason_phrase or "error"
    if isinstance(body, dict):
        if isinstance(body.get("code"), int) and not isinstance(body.get("code"), bool):
            code = body["code"]
        if isinstance(body.get("message"), str) and body["message"]:
            message = body["message"]
        details = _flatten_errors(body.get("errors"))
        if details:
            message = f"{message} ({'; '.join(details[:5])})"
    return DiscordError(response.status_code, message, code)


def _flatten_errors(errors: Any, path: str = "") -> list[str]:
    """``{"embeds": {"0": {"title": {"_errors": [...]}}}}`` as ``embeds.0.title: ...``."""
    if not isinstance(errors, dict):
        return []
    found: list[str] = []
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in value]
            found.append(f"{path or '<body>'}: {', '.join(messages)}")
        else:
            found.extend(_flatten_errors(value, f"{path}.{key}" if path else str(key)))
    return found


def _message_id(response: httpx.Response, call: _Call) -> str:
    body = _json(response)
    if isinstance(body, dict) and isinstance(body.get("id"), str | int):
        return str(body["id"])
    raise DiscordError(response.status_code, f"{call.route} answered without a message id")


def _command_list(response: httpx.Response, call: _Call) -> list[dict[str, Any]]:
    body = _json(response)
    if isinstance(body, list) and all(isinstance(c, dict) for c in body):
        return body
    raise DiscordError(response.status_code, f"{call.route} answered without a command list")
