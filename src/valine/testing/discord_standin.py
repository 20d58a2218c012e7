"""A stateful stand-in of the Discord REST routes the product calls, over real HTTP.

Stdlib only (:class:`http.server.ThreadingHTTPServer` on a free 127.0.0.1 port), so
tests, ``valine demo`` and local runs can point ``DISCORD_API_URL`` at :attr:`url`.

It keeps messages the way Discord does -- the original response and follow-ups of each
interaction token, and channel messages -- and answers with message objects shaped like
Discord's (snowflake ids, ``channel_id``, ``content``, ``embeds``, ``components``,
``timestamp``, ``author`` ...). Errors use Discord's JSON ``{"message", "code"}``:
404/10008 *Unknown Message*, 401/50027 *Invalid Webhook Token* for tokens marked with
:meth:`DiscordStandIn.expire_token`, 401/0 without the right ``Authorization: Bot``
header on channel and application routes.

Channel messages honour ``nonce`` with ``enforce_nonce`` as Discord documents it: when
``enforce_nonce`` is true and a message with the same nonce was created by the same
author in the last few minutes (:attr:`DiscordStandIn.nonce_window`, 5 minutes), that
message is returned and no new one is created. Without ``enforce_nonce`` the nonce is only
echoed back.

Threads are modelled as Discord documents them (the Threads topic and *Start Thread from
Message*): a public thread started from a message shares the message's id, one per message
(a second start answers 400 / 160004 *A thread has already been created for this
message*), and the message then carries the thread in its ``thread`` field. Messages
posted to ``/channels/{thread_id}/messages`` go into the thread; posting in an archived
thread unarchives it unless it is locked (a locked thread refuses the post, 400 / 160005
*Thread is locked*, to a bot without Manage Threads). ``PATCH /channels/{thread_id}``
archives or unarchives it (the bot created it, so it may). The bot's channel permissions
are a switch (:meth:`DiscordStandIn.deny`): without Create Public Threads or Send Messages
in Threads those requests answer 403 / 50013 *Missing Permissions*; without View Channel,
403 / 50001 *Missing Access*.

Faults are injected through :attr:`DiscordStandIn.faults` (a
:class:`valine.testing.faults.FaultPlan`) or the short-hands
:meth:`~DiscordStandIn.rate_limit_next`, :meth:`~DiscordStandIn.fail_next`,
:meth:`~DiscordStandIn.apply_then_fail_next` and :meth:`~DiscordStandIn.bucket_empty_next`.

Every request is recorded (:attr:`DiscordStandIn.requests`) with its route template;
the ``Authorization`` header is never recorded, only its scheme.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from valine.testing import faults as fault_kit
from valine.testing.faults import Fault, FaultPlan, FaultRequest, Match, Phase

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_APPLICATION_ID = "1100000000000000000"
DEFAULT_BOT_USER_ID = "1100000000000000000"
DEFAULT_CHANNEL_ID = "1200000000000000003"
DEFAULT_GUILD_ID = "4"
API_PREFIX = "/api/v10"
EPHEMERAL = 1 << 6
# Message types (Discord API: Message Object).
DEFAULT_MESSAGE = 0
CHAT_INPUT_COMMAND = 20
#: Channel type of a thread started from a message in a text channel.
PUBLIC_THREAD = 11
#: The ``auto_archive_duration`` values Discord accepts (minutes).
AUTO_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)
#: The bot's permissions in every channel unless :meth:`DiscordStandIn.deny` took some away.
PERMISSIONS = frozenset({"view_channel", "create_public_threads", "send_messages_in_threads"})

#: (method, route template) the stand-in serves; a path matches the template's regex.
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/webhooks/{application_id}/{token}/messages/@original"),
    ("PATCH", "/webhooks/{application_id}/{token}/messages/@original"),
    ("DELETE", "/webhooks/{application_id}/{token}/messages/@original"),
    ("POST", "/webhooks/{application_id}/{token}"),
    ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}"),
    ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}"),
    ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}"),
    ("POST", "/channels/{channel_id}/messages"),
    ("GET", "/channels/{channel_id}/messages/{message_id}"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
    ("POST", "/channels/{channel_id}/messages/{message_id}/threads"),
    ("GET", "/channels/{channel_id}"),
    ("PATCH", "/channels/{channel_id}"),
    ("GET", "/applications/@me"),
    ("GET", "/applications/{application_id}/commands"),
    ("PUT", "/applications/{application_id}/commands"),
    ("GET", "/applications/{application_id}/guilds/{guild_id}/commands"),
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"),
)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", template)
    pattern = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(pattern + "$")


_MATCHERS = [(m, t, _template_regex(t)) for m, t in ROUTES]
#: Message fields an edit replaces (the rest of a request body is not stored).
_EDITABLE_FIELDS = ("content", "embeds", "components")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stand-in received, and the status it answered."""

    method: str
    #: The route template (``/channels/{channel_id}/messages``), or the path if unknown.
    route: str
    #: The path below the API prefix, without the query string.
    path: str
    query: dict[str, str]
    json: Any
    #: Header names lower-case; ``authorization`` is never kept (see :attr:`auth_scheme`).
    headers: dict[str, str]
    #: ``"Bot"`` for a bot token, another scheme, or None without an Authorization header.
    auth_scheme: str | None
    status: int
    #: Path parameters of the route (``channel_id``, ``token`` ...).
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Incoming:
    method: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    document: Any
    authorization: str | None


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The injected fault that shaped this answer (its delay and DROP apply when sending).
    fault: Fault | None = None


class _DiscordError(Exception):
    def __init__(self, status: int, message: str, code: int, **extra: Any) -> None:
        super().__init__(message)
        self.answer = _Answer(status, {"message": message, "code": code, **extra})


_INJECTED_FAILURE = {"message": "upstream failure (injected)", "code": 0}


def _unknown_message() -> _DiscordError:
    return _DiscordError(404, "Unknown Message", 10008)


class DiscordStandIn:
    """Discord's interaction-webhook, channel-message and command routes, in memory."""

    def __init__(
        self,
        *,
        application_id: str = DEFAULT_APPLICATION_ID,
        bot_token: str | None = None,
        bot_user_id: str = DEFAULT_BOT_USER_ID,
        interaction_channel_id: str = DEFAULT_CHANNEL_ID,
        guild_id: str = DEFAULT_GUILD_ID,
        strict_originals: bool = False,
    ) -> None:
        self.application_id = application_id
        #: The only token channel and application routes accept (``Bot <token>``).
        self.bot_token = bot_token or "standin-bot-token-" + secrets.token_hex(12)
        self.bot_user_id = bot_user_id
        self.interaction_channel_id = interaction_channel_id
        self.guild_id = guild_id
        #: When True, editing ``@original`` before :meth:`defer` answers 10008.
        self.strict_originals = strict_originals
        self._lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._message_source: dict[str, tuple[str, str]] = {}  # id -> (kind, token/channel)
        self._originals: dict[str, str] = {}  # interaction token -> message id
        self._followups: dict[str, list[str]] = {}
        self._expired: set[str] = set()
        self._commands: dict[str | None, list[dict[str, Any]]] = {}
        #: interaction token -> the channel the interaction came from (its messages go there).
        self._interaction_channels: dict[str, str] = {}
        #: thread id (= the id of the message it was started from) -> the channel object.
        self._threads: dict[str, dict[str, Any]] = {}
        #: Channels (threads) deleted by :meth:`delete_thread`.
        self._deleted: set[str] = set()
        #: channel id (None: every channel) -> the permissions taken from the bot there.
        self._denied: dict[str | None, set[str]] = {}
        #: The application's Interactions Endpoint URL (``GET /applications/@me``).
        self.interactions_endpoint_url: str | None = None
        #: Injected faults (see :mod:`valine.testing.faults`); the short-hands add to it.
        self.faults = FaultPlan()
        #: Seconds a channel message's nonce is remembered for ``enforce_nonce``.
        self.nonce_window = 300.0
        #: (author id, nonce) -> (message id, created at, monotonic seconds).
        self._nonces: dict[tuple[str, str], tuple[str, float]] = {}
        self._last_snowflake = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> DiscordStandIn:
        """Listen on a free 127.0.0.1 port in a background thread; returns self."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},  # how quickly stop() returns
            name="discord-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections (a stopped stand-in is unreachable)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DiscordStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the Discord stand-in is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to use as ``DISCORD_API_URL`` (``http://127.0.0.1:N/api/v10``)."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    # -- scenario control ---------------------------------------------------------------

    def expire_token(self, token: str) -> None:
        """From now on, requests with this interaction token get 401 / 50027."""
        with self._lock:
            self._expired.add(token)

    def interaction_received(self, token: str, channel_id: str) -> None:
        """Discord received an interaction with ``token`` in ``channel_id``: its original
        response and follow-ups are messages of that channel (as on Discord)."""
        with self._lock:
            self._interaction_channels[token] = channel_id

    def deny(self, *permissions: str, channel_id: str | None = None) -> None:
        """Take ``permissions`` (``create_public_threads``, ``send_messages_in_threads``,
        ``view_channel``) from the bot, in one channel or (``None``) everywhere."""
        unknown = set(permissions) - PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permission(s): {', '.join(sorted(unknown))}")
        with self._lock:
            self._denied.setdefault(channel_id, set()).update(permissions)

    def allow_all(self) -> None:
        """Give the bot back every permission :meth:`deny` took."""
        with self._lock:
            self._denied.clear()

    def lock_thread(self, thread_id: str, *, archived: bool = True) -> None:
        """A moderator locks (and by default archives) the thread: the bot cannot post."""
        with self._lock:
            thread = self._threads[thread_id]
            thread["thread_metadata"]["locked"] = True
            if archived:
                self._set_archived(thread, True)
            self._sync_thread(thread_id)

    def delete_thread(self, thread_id: str) -> None:
        """A moderator deletes the thread: its channel is gone (404 / 10003 from now on)."""
        with self._lock:
            del self._threads[thread_id]
            self._deleted.add(thread_id)
            starter = self._messages.get(thread_id)
            if starter is not None:
                starter.pop("thread", None)

    def defer(self, token: str, *, ephemeral: bool = False) -> dict[str, Any]:
        """Record the interaction's deferred response: its (empty) original message."""
        with self._lock:
            return copy.deepcopy(self._create_original(token, EPHEMERAL if ephemeral else 0))

    def rate_limit_next(self, retry_after: float = 0.05, global_: bool = False) -> None:
        """Answer the next request with 429 and Discord's rate-limit body and headers."""
        self.faults.add(fault_kit.discord_rate_limited(retry_after, is_global=global_))

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        """Answer the next ``n`` requests with ``status`` (a server error by default)."""
        self.faults.add(fault_kit.server_error(status, body=_INJECTED_FAILURE), n)

    def apply_then_fail_next(
        self, status: int = 502, *, match: Match | None = None, count: int = 1
    ) -> None:
        """Serve (and apply) the next matching request, then answer ``status`` instead."""
        fault = fault_kit.server_error(
            status, phase=Phase.AFTER, match=match or fault_kit.ANY, body=_INJECTED_FAILURE
        )
        self.faults.add(fault, count)

    def bucket_empty_next(self, reset_after: float = 0.05) -> None:
        """Serve the next request, saying ``X-RateLimit-Remaining: 0`` for ``reset_after``."""
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": f"{reset_after:g}"}
        headers["X-RateLimit-Reset"] = "now+" + f"{reset_after:g}"
        self.faults.add(Fault(Phase.AFTER, None, None, headers, 0.0, fault_kit.ANY, "bucket-empty"))

    def clear_requests(self) -> None:
        """Forget the recorded requests (state and messages stay)."""
        with self._lock:
            self._requests.clear()

    # -- accessors ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def messages(self) -> list[dict[str, Any]]:
        """Every message that exists now, in creation order (copies)."""
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages.values()]

    def message(self, message_id: str) -> dict[str, Any] | None:
        """One message by id, or None."""
        with self._lock:
            found = self._messages.get(message_id)
            return copy.deepcopy(found) if found is not None else None

    def original(self, token: str) -> dict[str, Any] | None:
        """The original response of the interaction with this token, or None."""
        with self._lock:
            message_id = self._originals.get(token)
            return self.message(message_id) if message_id else None

    def followups(self, token: str) -> list[dict[str, Any]]:
        """The follow-up messages of the interaction with this token."""
        with self._lock:
            ids = self._followups.get(token, [])
            return [copy.deepcopy(self._messages[i]) for i in ids if i in self._messages]

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        """Messages posted in a channel with the bot token."""
        with self._lock:
            return [
                copy.deepcopy(self._messages[i])
                for i, (kind, where) in self._message_source.items()
                if kind == "channel" and where == channel_id
            ]

    def threads(self) -> list[dict[str, Any]]:
        """Every thread started so far, oldest first (channel objects, copies)."""
        with self._lock:
            return [copy.deepcopy(t) for t in self._threads.values()]

    def thread(self, thread_id: str) -> dict[str, Any] | None:
        """One thread (a channel object) by id, or None."""
        with self._lock:
            found = self._threads.get(thread_id)
            return copy.deepcopy(found) if found is not None else None

    def registered_commands(self, guild_id: str | None = None) -> list[dict[str, Any]]:
        """The commands of the last bulk overwrite (global, or of one guild)."""
        with self._lock:
            return copy.deepcopy(self._commands.get(guild_id, []))

    # -- request handling (called from the server's threads) ----------------------------

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Answer:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query))
        path = split.path[len(API_PREFIX) :] if split.path.startswith(API_PREFIX + "/") else ""
        authorization = headers.pop("authorization", None)
        scheme = authorization.split(" ", 1)[0] if authorization else None
        route = path or split.path
        params: dict[str, str] = {}
        match = self._match(method, path) if path else None
        document: Any = None
        answer: _Answer | None = None
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            answer = _Answer(
                400, {"message": "The request body contains invalid JSON.", "code": 50109}
            )
        with self._lock:
            if answer is None and match is not None:
                route, params = match
                answer = self._dispatch(
                    _Incoming(method, route, params, query, document, authorization), path
                )
            elif answer is None:
                known = path and any(regex.match(path) for _, _, regex in _MATCHERS)
                answer = (
                    _Answer(405, {"message": "405: Method Not Allowed", "code": 0})
                    if known
                    else _Answer(404, {"message": "404: Not Found", "code": 0})
                )
            self._requests.append(
                RecordedRequest(
                    method=method,
                    route=route,
                    path=path or split.path,
                    query=query,
                    json=document,
                    headers=headers,
                    auth_scheme=scheme,
                    status=answer.status,
                    params=params,
                )
            )
        return answer

    @staticmethod
    def _match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
        for route_method, template, regex in _MATCHERS:
            found = regex.match(path)
            if found and route_method == method:
                return template, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def _dispatch(self, req: _Incoming, path: str) -> _Answer:
        fault = self.faults.take(FaultRequest(req.method, path, req.document))
        if fault is not None and fault.phase is Phase.INSTEAD:
            status, body, headers = fault.answer((500, None, {}))
            return _Answer(status, body, headers, fault)
        try:
            answer = self._serve(req)
        except _DiscordError as error:
            answer = error.answer
        answer.headers.update(_bucket_headers(req.route, None))
        if fault is not None:
            status, body, headers = fault.answer((answer.status, answer.body, answer.headers))
            answer = _Answer(status, body, _resolve_reset(headers), fault)
        return answer

    def _serve(self, req: _Incoming) -> _Answer:
        if req.route.startswith("/webhooks/"):
            if req.params["application_id"] != self.application_id:
                raise _DiscordError(404, "Unknown Webhook", 10015)
            if req.params["token"] in self._expired:
                raise _DiscordError(401, "Invalid Webhook Token", 50027)
            return self._serve_webhook(req)
        if req.authorization != f"Bot {self.bot_token}":
            raise _DiscordError(401, "401: Unauthorized", 0)
        if req.route.startswith("/channels/"):
            return self._serve_channel(req)
        if req.route == "/applications/@me":
            return _Answer(200, self._application_json())
        if req.params["application_id"] != self.application_id:
            raise _DiscordError(403, "Missing Access", 50001)
        guild_id = req.params.get("guild_id")
        if req.method == "PUT":
            self._commands[guild_id] = self._overwrite_commands(req.document, guild_id)
        return _Answer(200, copy.deepcopy(self._commands.get(guild_id, [])))

    def _application_json(self) -> dict[str, Any]:
        """The application object Discord answers its bot with (the fields it requires)."""
        user = {
            "avatar": None,
            "discriminator": "0",
            "public_flags": 0,
            "flags": 0,
            "global_name": None,
            "primary_guild": None,
        }
        return {
            "id": self.application_id,
            "name": "Valine (stand-in)",
            "icon": None,
            "description": "",
            "type": None,
            "flags": 0,
            "flags_new": "0",
            "bot": {**user, "id": self.bot_user_id, "username": "valine", "bot": True},
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "redirect_uris": [],
            "interactions_endpoint_url": self.interactions_endpoint_url,
            "role_connections_verification_url": None,
            "owner": {**user, "id": "1", "username": "owner"},
            "approximate_guild_count": 1,
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "eligible_oauth2_scopes": [],
            "explicit_content_filter": 0,
            "team": None,
        }

    def _serve_webhook(self, req: _Incoming) -> _Answer:
        method, params, document = req.method, req.params, req.document
        token = params["token"]
        if method == "POST":
            body = _message_body(document, creating=True)
            message = self._new_message(self._channel_of(token), body, webhook=True)
            self._message_source[message["id"]] = ("followup", token)
            self._followups.setdefault(token, []).append(message["id"])
            wait = req.query.get("wait", "").lower() in {"true", "1"}
            return _Answer(200, copy.deepcopy(message)) if wait else _Answer(204)
        if req.route.endswith("@original"):
            message_id = self._originals.get(token)
            if message_id is None:
                if method != "PATCH" or self.strict_originals:
                    raise _unknown_message()
                message_id = self._create_original(token, 0)["id"]
        else:
            message_id = params["message_id"]
            if self._message_source.get(message_id) not in {
                ("followup", token),
                ("original", token),
            }:
                raise _unknown_message()
        return self._serve_message(method, message_id, document)

    def _channel_of(self, token: str) -> str:
        return self._interaction_channels.get(token, self.interaction_channel_id)

    def _serve_channel(self, req: _Incoming) -> _Answer:
        method, params, document = req.method, req.params, req.document
        channel_id = params["channel_id"]
        if not channel_id.isdigit() or channel_id in self._deleted:
            raise _DiscordError(404, "Unknown Channel", 10003)
        self._require(channel_id, "view_channel")
        if req.route == "/channels/{channel_id}":
            return self._serve_thread(method, channel_id, document)
        if req.route.endswith("/threads"):
            return self._start_thread(channel_id, params["message_id"], document)
        if method == "POST":
            return self._post_message(channel_id, document)
        message_id = params["message_id"]
        source = self._message_source.get(message_id)
        if source is None or self._messages[message_id]["channel_id"] != channel_id:
            raise _unknown_message()
        if source[0] != "channel" and method == "PATCH":
            raise _DiscordError(403, "Cannot edit a message authored by another user", 50005)
        return self._serve_message(method, message_id, document)

    def _post_message(self, channel_id: str, document: Any) -> _Answer:
        body = _message_body(document, creating=True)
        thread = self._threads.get(channel_id)
        if thread is not None:
            self._require(channel_id, "send_messages_in_threads")
            if thread["thread_metadata"]["locked"]:
                raise _DiscordError(400, "Thread is locked", 160005)
        nonce = _nonce(body)
        earlier = self._enforced_nonce_message(nonce) if body.get("enforce_nonce") else None
        if earlier is not None:
            return _Answer(200, copy.deepcopy(earlier))
        message = self._new_message(channel_id, body)
        self._message_source[message["id"]] = ("channel", channel_id)
        if nonce is not None:
            message["nonce"] = body["nonce"]
            self._nonces[(self.bot_user_id, nonce)] = (message["id"], time.monotonic())
        if thread is not None:
            self._thread_posted(thread, message["id"])
        return _Answer(200, copy.deepcopy(message))

    def _start_thread(self, channel_id: str, message_id: str, document: Any) -> _Answer:
        """``POST /channels/{channel_id}/messages/{message_id}/threads``: 201 and the thread."""
        self._require(channel_id, "create_public_threads")
        message = self._messages.get(message_id)
        if message is None or message["channel_id"] != channel_id:
            raise _unknown_message()
        if channel_id in self._threads:
            raise _DiscordError(400, "Cannot execute action on this channel type", 50024)
        body = document if isinstance(document, dict) else None
        name = body.get("name") if body else None
        duration = body.get("auto_archive_duration", 1440) if body else None
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise _form_error("name", "Must be between 1 and 100 in length.")
        if duration is not None and duration not in AUTO_ARCHIVE_DURATIONS:
            raise _form_error(
                "auto_archive_duration", "Value must be one of (60, 1440, 4320, 10080)."
            )
        if message_id in self._threads:
            raise _DiscordError(400, "A thread has already been created for this message", 160004)
        now = _timestamp()
        self._threads[message_id] = {
            "id": message_id,  # a thread started from a message shares its id
            "type": PUBLIC_THREAD,
            "last_message_id": None,
            "flags": 0,
            "guild_id": self.guild_id,
            "name": name,
            "parent_id": channel_id,
            "rate_limit_per_user": 0,
            "owner_id": self.bot_user_id,
            "thread_metadata": {
                "archived": False,
                "archive_timestamp": now,
                "auto_archive_duration": duration or 1440,
                "locked": False,
                "create_timestamp": now,
            },
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
        }
        self._sync_thread(message_id)
        return _Answer(201, copy.deepcopy(self._threads[message_id]))

    def _serve_thread(self, method: str, thread_id: str, document: Any) -> _Answer:
        """``GET`` or ``PATCH /channels/{thread_id}`` of a thread (other channels: 404)."""
        thread = self._threads.get(thread_id)
        if thread is None:
            raise _DiscordError(404, "Unknown Channel", 10003)
        if method == "PATCH":
            if not isinstance(document, dict):
                raise _DiscordError(400, "Invalid Form Body", 50035)
            if "locked" in document or "rate_limit_per_user" in document:
                raise _DiscordError(403, "Missing Permissions", 50013)  # needs Manage Threads
            archived = document.get("archived")
            if archived is not None and not isinstance(archived, bool):
                raise _form_error("archived", "Must be either true or false.")
            if isinstance(archived, bool):
                self._set_archived(thread, archived)
            if "name" in document:
                name = document["name"]
                if not isinstance(name, str) or not 1 <= len(name) <= 100:
                    raise _form_error("name", "Must be between 1 and 100 in length.")
                thread["name"] = name
            self._sync_thread(thread_id)
        return _Answer(200, copy.deepcopy(thread))

    def _thread_posted(self, thread: dict[str, Any], message_id: str) -> None:
        if thread["thread_metadata"]["archived"]:
            self._set_archived(thread, False)  # a post unarchives an unlocked thread
        thread["last_message_id"] = message_id
        thread["message_count"] += 1
        thread["total_message_sent"] += 1
        self._sync_thread(thread["id"])

    @staticmethod
    def _set_archived(thread: dict[str, Any], archived: bool) -> None:
        metadata = thread["thread_metadata"]
        if metadata["archived"] != archived:
            metadata["archived"] = archived
            metadata["archive_timestamp"] = _timestamp()

    def _sync_thread(self, thread_id: str) -> None:
        """The starter message shows its thread as it is now (``thread`` field)."""
        starter = self._messages.get(thread_id)
        if starter is not None:
            starter["thread"] = copy.deepcopy(self._threads[thread_id])

    def _require(self, channel_id: str, permission: str) -> None:
        thread = self._threads.get(channel_id)
        where = {None, channel_id} | ({thread["parent_id"]} if thread else set())
        if any(permission in self._denied.get(w, ()) for w in where):
            if permission == "view_channel":
                raise _DiscordError(403, "Missing Access", 50001)
            raise _DiscordError(403, "Missing Permissions", 50013)

    def _enforced_nonce_message(self, nonce: str | None) -> dict[str, Any] | None:
        """The bot's message created with ``nonce`` within :attr:`nonce_window`, if any."""
        if nonce is None:
            return None
        found = self._nonces.get((self.bot_user_id, nonce))
        if found is None or time.monotonic() - found[1] > self.nonce_window:
            return None
        return self._messages.get(found[0])

    def _serve_message(self, method: str, message_id: str, document: Any) -> _Answer:
        message = self._messages[message_id]
        if method == "GET":
            return _Answer(200, copy.deepcopy(message))
        if method == "DELETE":
            self._delete(message_id)
            return _Answer(204)
        body = _message_body(document, creating=False)
        for name in _EDITABLE_FIELDS:
            if name in body:
                message[name] = self._shape(name, body[name])
        message["edited_timestamp"] = _timestamp()
        return _Answer(200, copy.deepcopy(message))

    def _delete(self, message_id: str) -> None:
        self._messages.pop(message_id, None)
        kind, where = self._message_source.pop(message_id, ("", ""))
        if kind == "original":
            self._originals.pop(where, None)
        elif kind == "followup" and message_id in self._followups.get(where, []):
            self._followups[where].remove(message_id)

    def _create_original(self, token: str, flags: int) -> dict[str, Any]:
        existing = self._originals.get(token)
        if existing is not None:
            return self._messages[existing]
        message = self._new_message(
            self._channel_of(token), {"flags": flags}, webhook=True, kind=CHAT_INPUT_COMMAND
        )
        self._originals[token] = message["id"]
        self._message_source[message["id"]] = ("original", token)
        return message

    def _new_message(
        self,
        channel_id: str,
        body: dict[str, Any],
        *,
        webhook: bool = False,
        kind: int = DEFAULT_MESSAGE,
    ) -> dict[str, Any]:
        author_id = self.application_id if webhook else self.bot_user_id
        message: dict[str, Any] = {
            "id": self._snowflake(),
            "type": kind,
            "channel_id": channel_id,
            "content": self._shape("content", body.get("content")),
            "embeds": self._shape("embeds", body.get("embeds")),
            "components": self._shape("components", body.get("components")),
            "attachments": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": bool(body.get("tts")),
            "timestamp": _timestamp(),
            "edited_timestamp": None,
            "flags": int(body.get("flags") or 0),
            "author": {
                "id": author_id,
                "username": "Valine",
                "avatar": None,
                "discriminator": "0000" if webhook else "0",
                "public_flags": 0,
                "flags": 0,
                "bot": True,
                "global_name": None,
                "primary_guild": None,
            },
        }
        if webhook:
            message["webhook_id"] = self.application_id
            message["application_id"] = self.application_id
        self._messages[message["id"]] = message
        return message

    def _shape(self, name: str, value: Any) -> Any:
        """A request field as Discord returns it (embeds get a type, components ids)."""
        if name == "content":
            return value or ""
        if name == "embeds":
            return [{"type": "rich", **e} for e in value or [] if isinstance(e, dict)]
        if name == "components":
            ids = itertools.count(1)  # Discord numbers a message's components from 1
            return [_number_components(c, ids) for c in value or [] if isinstance(c, dict)]
        return value if value is not None else []

    def _overwrite_commands(self, document: Any, guild_id: str | None) -> list[dict[str, Any]]:
        if not isinstance(document, list) or not all(isinstance(c, dict) for c in document):
            raise _DiscordError(400, "Invalid Form Body", 50035)
        names = [str(c.get("name", "")) for c in document]
        if len(set(names)) != len(names) or not all(1 <= len(n) <= 32 for n in names):
            raise _DiscordError(
                400,
                "Invalid Form Body",
                50035,
                errors={"_errors": [{"code": "APPLICATION_COMMAND_INVALID", "message": "names"}]},
            )
        previous = {c["name"]: c["id"] for c in self._commands.get(guild_id, [])}
        commands = []
        for spec in document:
            command: dict[str, Any] = {
                "id": previous.get(spec["name"]) or self._snowflake(),
                "application_id": self.application_id,
                "version": self._snowflake(),
                "default_member_permissions": spec.get("default_member_permissions"),
                "type": spec.get("type") or 1,
                "name": spec["name"],
                "description": spec.get("description") or "",
                "dm_permission": 1 in (spec.get("contexts") or [1]),
                "contexts": copy.deepcopy(spec.get("contexts")),
                "integration_types": copy.deepcopy(spec.get("integration_types") or [0]),
                "nsfw": False,
            }
            if spec.get("options"):
                command["options"] = copy.deepcopy(spec["options"])
            if guild_id is not None:
                command["guild_id"] = guild_id
            commands.append(command)
        return commands

    def _snowflake(self) -> str:
        value = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_snowflake = max(value, self._last_snowflake + 1)
        return str(self._last_snowflake)


def _message_body(document: Any, *, creating: bool) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise _DiscordError(400, "Invalid Form Body", 50035)
    if creating and not any(document.get(k) for k in ("content", "embeds", "components")):
        raise _DiscordError(400, "Cannot send an empty message", 50006)
    return document


def _form_error(field_name: str, message: str) -> _DiscordError:
    """Discord's 400 / 50035 *Invalid Form Body* naming the field."""
    errors = {field_name: {"_errors": [{"code": "BASE_TYPE_BAD", "message": message}]}}
    return _DiscordError(400, "Invalid Form Body", 50035, errors=errors)


def _nonce(body: dict[str, Any]) -> str | None:
    """The message's nonce as a key (Discord takes an integer or up to 25 characters)."""
    nonce = body.get("nonce")
    if nonce is None:
        return None
    if isinstance(nonce, bool) or not isinstance(nonce, (int, str)):
        raise _DiscordError(400, "Invalid Form Body", 50035)
    if isinstance(nonce, str) and len(nonce) > 25:
        raise _DiscordError(400, "Invalid Form Body", 50035)
    return str(nonce)


def _number_components(component: dict[str, Any], ids: Iterator[int]) -> dict[str, Any]:
    shaped = {**component, "id": component.get("id") or next(ids)}
    if isinstance(component.get("components"), list):
        shaped["components"] = [_number_components(c, ids) for c in component["components"]]
    return shaped


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _resolve_reset(headers: dict[str, str]) -> dict[str, str]:
    """Turn a fault's relative ``X-RateLimit-Reset: now+S`` into epoch seconds."""
    reset = headers.get("X-RateLimit-Reset", "")
    if reset.startswith("now+"):
        headers = {**headers, "X-RateLimit-Reset": f"{time.time() + float(reset[4:]):.3f}"}
    return headers


def _bucket_headers(route: str, reset_after: float | None) -> dict[str, str]:
    seconds = 1.0 if reset_after is None else reset_after
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "4" if reset_after is None else "0",
        "X-RateLimit-Reset": f"{time.time() + seconds:.3f}",
        "X-RateLimit-Reset-After": f"{seconds:g}",
        "X-RateLimit-Bucket": format(abs(hash(route)), "x"),
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    standin: DiscordStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DiscordStandIn/1"
    #: Idle keep-alive connections give up after this many seconds.
    timeout = 10
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.standin._track(self.connection, alive=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._track(self.connection, alive=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry interaction tokens."""

    def _respond(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.server.standin._handle(self.command, self.path, headers, raw)
        if answer.fault is not None and answer.fault.delay > 0:
            time.sleep(answer.fault.delay)
        if answer.fault is not None and answer.fault.phase is Phase.DROP:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = b"" if answer.body is None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def do_GET(self) -> None:
        """Serve a GET."""
        self._respond()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._respond()

    def do_PATCH(self) -> None:
        """Serve a PATCH."""
        self._respond()

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._respond()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
        self._respond()
