"""The GitHub stand-in's HTTP server: routing, authentication, rate limits, faults.

Real HTTP on 127.0.0.1 (a free port); every answer carries the ``x-ratelimit-*`` and
``x-github-request-id`` headers, every ``GET`` answer an ``ETag`` (a matching
``If-None-Match`` gets ``304`` and does not count against the rate limit). Requests need
``Authorization``: the stand-in's personal token (:attr:`GitHubStandIn.token`) or an
installation token; ``/app/...`` and ``/repos/{o}/{r}/installation`` need an RS256 App
JWT (signature checked when ``app_public_key_pem`` is given; that check uses PyJWT,
imported only then). As on GitHub each credential has its own budgets: an App
installation's tokens share their installation's, the App's JWT has its own, the personal
token its user's; and in each, GraphQL (resource ``graphql``) is apart from REST
(``core``). A budget is spent when its requests reach ``rate_limit`` in the hour, or when
an injected answer says so (REST 403 or GraphQL ``RATE_LIMITED`` with
``x-ratelimit-remaining: 0``); it stays spent until its reset, as on GitHub: every
request of that budget before then gets the same answer, and the other budgets' requests
are served. Faults are injected
through :attr:`GitHubStandIn.faults` (a :class:`valine.testing.faults.FaultPlan`) or its
short-hands; the :attr:`GitHubStandIn.requests` log records each request with its arrival
time by the stand-in's clock and the fault that answered it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from valine.testing import faults as fault_kit
from valine.testing.faults import FaultPlan, FaultRequest, Match, Phase
from valine.testing.github import schema
from valine.testing.github.actions import ActionsAPI
from valine.testing.github.graphql import (
    GRAPHQL_DOCS_URL,
    GraphQLAPI,
)
from valine.testing.github.rest import (
    _REPO_PREFIX,
)
from valine.testing.github.state import (
    Answer,
    Json,
    _error,
    _Repo,
)

SECONDARY_LIMIT_MESSAGE = fault_kit.SECONDARY_LIMIT_MESSAGE


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it, and what it answered.

    ``headers`` are lower-cased and never include ``Authorization``; ``auth_scheme`` is
    that header's scheme only (``token``, ``bearer`` or empty).
    """

    method: str
    path: str
    query: dict[str, str]
    body: Json
    headers: dict[str, str]
    auth_scheme: str
    status: int
    response: Json
    #: When it arrived, by the stand-in's clock (epoch seconds).
    at: float = 0.0
    #: The name of the injected fault that answered it, if any.
    fault: str | None = None
    #: For an answer of a limit spent earlier: when the answer that spent it was sent.
    spent_since: float | None = None
    #: The client's port: requests on one keep-alive connection come one after another.
    peer: int = 0
    #: For an answer of a limit spent earlier: the port the spending answer went to.
    spent_peer: int | None = None
    #: Whose budget it spent: ``installation:<id>``, ``app`` (the JWT), ``user`` (the
    #: personal token) or ``anonymous``.
    budget: str = ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes live keep-alive connections itself

    def __init__(self, standin: GitHubStandIn) -> None:
        self.standin = standin
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            live = list(self.connections)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-request (a service SIGKILLed by the proving ground)
        is not the stand-in's error: no traceback; anything else gets the default one."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)
    server_version = "GitHub.com"
    sys_version = ""
    server: _Server

    def _serve(self) -> None:
        self.server.standin._serve(self)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in's log is :attr:`GitHubStandIn.requests`."""


class GitHubStandIn(ActionsAPI, GraphQLAPI):
    """A stateful GitHub REST and GraphQL stand-in on 127.0.0.1 (see the package docstring).

    ``clock`` drives timestamps, installation-token expiry and the rate-limit window;
    App JWTs are checked against the real time, as gidgethub signs them with it.
    ``graphql_schema`` is GitHub's published schema (``schema.json`` of
    ``@octokit/graphql-schema``) to validate GraphQL documents on; when it is None or
    not there, the served part of it is used (:mod:`valine.testing.github.schema`).
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        app_id: str = "1",
        app_public_key_pem: str | bytes | None = None,
        installation_id: int = 1,
        token_ttl: float = 3600.0,
        rate_limit: int = 5000,
        clock: Callable[[], float] = time.time,
        graphql_schema: Path | None = schema.PUBLISHED_SCHEMA,
    ) -> None:
        super().__init__(clock=clock)
        self.graphql_schema = schema.load(graphql_schema)
        self.token = token or "ghp_standin_" + secrets.token_hex(16)
        self.app_id = str(app_id)
        self.installation_id = int(installation_id)
        self._app_public_key = app_public_key_pem
        self._token_ttl = token_ttl
        self._limit = rate_limit
        self._installation_tokens: dict[str, float] = {}
        #: The installation each installation token was bought for.
        self._token_installations: dict[str, int] = {}
        self._requests: list[RecordedRequest] = []
        #: Injected faults (see :mod:`valine.testing.faults`); the short-hands below add to it.
        self.faults = FaultPlan()
        #: Per budget (whose, resource): the reset of a spent primary limit.
        self._limited_until: dict[tuple[str, str], float] = {}
        #: Per budget: when, and to which client port, the answer that spent it was sent.
        self._limited_since: dict[tuple[str, str], tuple[float, int]] = {}
        #: Per budget: the requests counted in this hour's window.
        self._used: dict[tuple[str, str], int] = {}
        self._window_reset = clock() + 3600
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> GitHubStandIn:
        """Listen on a free port of 127.0.0.1 and serve in a background thread."""
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="github-standin",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> GitHubStandIn:
        """Start; stopped when the ``with`` block ends."""
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        """Stop serving."""
        self.stop()

    def _base_url(self) -> str:
        """Where the server listens (it must be started)."""
        if self._server is None:
            raise RuntimeError("the GitHub stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        """Answer the next ``n`` requests (any endpoint) with ``status``, changing nothing."""
        self.faults.add(fault_kit.server_error(status), n)

    def rate_limit_next(self, retry_after: int = 1, count: int = 1) -> None:
        """Answer the next ``count`` requests 403 "secondary rate limit" + ``Retry-After``."""
        self.faults.add(fault_kit.github_secondary_limit(retry_after), count)

    def primary_rate_limit_next(
        self, reset_in: float = 30.0, *, installation: int | None = None
    ) -> None:
        """Spend the REST (``core``) budget: 403 with ``x-ratelimit-remaining: 0``.

        ``x-ratelimit-reset`` says the limit lifts ``reset_in`` seconds from now (by the
        stand-in's clock); as on GitHub, every ``core`` request of the same budget before
        then gets the same 403 (recorded, so a test can count requests sent too early).
        The next request's budget is the one spent; with ``installation``, that
        installation's is spent at once (its next request gets the 403, others go on).
        """
        if installation is not None:
            self._spend(f"installation:{installation}", "core", self._clock() + reset_in)
            return
        self.faults.add(fault_kit.github_primary_limit(self._clock() + reset_in))

    def graphql_rate_limit_next(
        self,
        reset_in: float = 30.0,
        *,
        match: Match | None = None,
        installation: int | None = None,
    ) -> None:
        """Spend the GraphQL budget: the next ``POST /graphql`` (matching ``match``) gets
        **HTTP 200** with ``errors[].type == "RATE_LIMITED"``, and so does every GraphQL
        request of the same budget until the reset ``reset_in`` seconds from now. With
        ``installation``, that installation's budget is spent at once instead."""
        if installation is not None:
            self._spend(f"installation:{installation}", "graphql", self._clock() + reset_in)
            return
        self.faults.add(fault_kit.graphql_rate_limited(self._clock() + reset_in, match=match))

    def _spend(self, budget: str, resource: str, until: float) -> None:
        """Mark ``budget``'s ``resource`` spent until ``until`` (its requests get GitHub's
        spent-limit answer until then)."""
        with self._lock:
            self._limited_until[budget, resource] = until
            self._limited_since.pop((budget, resource), None)

    def _budget_of(self, authorization: str) -> str:
        """Whose budget a request spends, by its credential (see the module docstring)."""
        credential = authorization.strip().partition(" ")[2].strip()
        installation = self._token_installations.get(credential)
        if installation is not None:
            return f"installation:{installation}"
        if credential and credential == self.token:
            return "user"
        return "app" if credential.count(".") == 2 else "anonymous"

    def apply_then_fail_next(
        self, status: int = 502, *, match: Match | None = None, count: int = 1
    ) -> None:
        """Serve (and apply) the next matching request, then answer ``status`` instead."""
        fault = fault_kit.server_error(status, phase=Phase.AFTER, match=match or fault_kit.ANY)
        self.faults.add(fault, count)

    def apply_then_drop_next(self, *, match: Match | None = None, delay: float = 0.0) -> None:
        """Serve (and apply) the next matching request, then close the connection unanswered."""
        self.faults.add(fault_kit.dropped(delay=delay, match=match or fault_kit.ANY))

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    def _serve(self, handler: _Handler) -> None:
        """Answer one request (called on the server's handler thread)."""
        split = urlsplit(handler.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        authorization = headers.pop("authorization", "")
        body: Json = None
        parse_error: Answer | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                parse_error = _error(400, "Problems parsing JSON")
        # GraphQL has its own budget on GitHub (counted here as one point a request).
        resource = "graphql" if split.path == "/graphql" else "core"
        with self._lock:
            if self._clock() >= self._window_reset:
                self._used, self._window_reset = {}, self._clock() + 3600
            budget = (self._budget_of(authorization), resource)
            fault = self.faults.take(FaultRequest(handler.command, split.path, body))
            if fault is not None and fault.phase is Phase.INSTEAD:
                answer = fault.answer(_error(500, "unused"))
            else:
                answer = (
                    parse_error
                    or self._spent_limit_answer(budget)
                    or self._answer(handler.command, split.path, query, body, authorization)
                )
                if fault is not None and fault.phase is Phase.AFTER:
                    answer = fault.answer(answer)
            status, payload, extra = answer
            extra = {**extra}
            peer = int(handler.client_address[1])
            since = self._limited_since.get(budget) if "x-standin-fault" in extra else None
            if handler.command == "GET" and status == 200:
                etag = 'W/"' + hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:40] + '"'
                extra["etag"] = etag
                if etag in {t.strip() for t in headers.get("if-none-match", "").split(",")}:
                    status, payload = 304, None
            extra = {**self._count_against(budget, status), **extra}
            self._note_spent_limit(budget, extra, peer)
            self._requests.append(
                RecordedRequest(
                    method=handler.command,
                    path=split.path,
                    query=query,
                    body=body,
                    headers=headers,
                    auth_scheme=authorization.strip().partition(" ")[0].lower(),
                    status=status,
                    response=copy.deepcopy(payload),
                    at=self._clock(),
                    fault=fault.name if fault is not None else extra.pop("x-standin-fault", None),
                    spent_since=since[0] if since else None,
                    peer=peer,
                    spent_peer=since[1] if since else None,
                    budget=budget[0],
                )
            )
            extra.pop("x-standin-fault", None)
        if fault is not None and fault.delay > 0:
            time.sleep(fault.delay)
        if fault is not None and fault.phase is Phase.DROP:
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(handler, status, payload, extra)

    def _count_against(self, budget: tuple[str, str], status: int) -> dict[str, str]:
        """Count an answer against ``budget`` (a 304 is free, as on GitHub); its
        ``x-ratelimit-*`` headers. The hour's last request spends the budget."""
        if status != 304:
            self._used[budget] = self._used.get(budget, 0) + 1
        used = self._used.get(budget, 0)
        if used >= self._limit and budget not in self._limited_until:
            self._limited_until[budget] = self._window_reset
        return {
            "x-ratelimit-limit": str(self._limit),
            "x-ratelimit-remaining": str(max(0, self._limit - used)),
            "x-ratelimit-reset": str(int(self._window_reset)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": budget[1],
        }

    def _spent_limit_answer(self, budget: tuple[str, str]) -> Answer | None:
        """GitHub's answer while ``budget``'s primary limit is spent, else None."""
        until = self._limited_until.get(budget)
        if until is None or self._clock() >= until:
            self._limited_until.pop(budget, None)
            return None
        spent = (
            fault_kit.graphql_rate_limited(until)
            if budget[1] == "graphql"
            else fault_kit.github_primary_limit(until)
        )
        status, body, headers = spent.answer(_error(500, "unused"))
        return status, body, {**headers, "x-standin-fault": spent.name}

    def _note_spent_limit(
        self, budget: tuple[str, str], headers: Mapping[str, str], peer: int
    ) -> None:
        """Remember an injected ``remaining: 0`` so later requests of the same budget
        before the reset get it too."""
        if headers.get("x-ratelimit-remaining") != "0":
            return
        with contextlib.suppress(KeyError, ValueError):
            until = float(headers["x-ratelimit-reset"])
            if until > self._clock() and until < self._window_reset:
                if self._limited_until.get(budget) != until:
                    self._limited_since[budget] = (self._clock(), peer)
                self._limited_until[budget] = until

    @staticmethod
    def _write(handler: _Handler, status: int, payload: Json, headers: Mapping[str, str]) -> None:
        handler.send_response(status)
        handler.send_header("x-github-request-id", secrets.token_hex(8).upper())
        handler.send_header("x-github-media-type", "github.v3; format=json")
        for name, value in headers.items():
            handler.send_header(name, value)
        data = b""
        if status not in (204, 304):
            if payload is not None:
                data = json.dumps(payload).encode()
                handler.send_header("content-type", "application/json; charset=utf-8")
            handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        if data:
            handler.wfile.write(data)
        handler.wfile.flush()

    def _answer(
        self, method: str, path: str, query: Mapping[str, str], body: Json, authorization: str
    ) -> Answer:
        scheme, _, credential = authorization.strip().partition(" ")
        route = _route(method, path)
        needs_jwt = route is not None and route[0]
        denied = self._authenticate(scheme, credential.strip(), jwt=needs_jwt)
        if denied is not None:
            if path == "/graphql":
                body = denied[1]
                if body["message"] == "Requires authentication":
                    body["message"] = "This endpoint requires you to be authenticated."
                body["documentation_url"] = GRAPHQL_DOCS_URL
            return denied
        if route is None:
            return _error(404, "Not Found")
        _, action, params = route
        self._caller_installation = (
            None if needs_jwt else self._token_installations.get(credential.strip())
        )
        try:
            repo: _Repo | None = None
            if "owner" in params:
                repo = self._repos.get(f"{params.pop('owner')}/{params.pop('name')}")
                if repo is None or not self._visible(repo):
                    return _error(404, "Not Found")
            return action(self, repo, params, query, body)
        finally:
            self._caller_installation = None

    def _authenticate(self, scheme: str, credential: str, *, jwt: bool) -> Answer | None:
        """None if the credential may call the endpoint, else the 401 answer."""
        scheme = scheme.lower()
        if not credential or scheme not in ("token", "bearer"):
            return _error(401, "Requires authentication")
        if jwt:
            if scheme != "bearer" or not self._valid_jwt(credential):
                return _error(401, "A JSON web token could not be decoded")
            return None
        if credential == self.token:
            return None
        expiry = self._installation_tokens.get(credential)
        if expiry is not None and expiry > self._clock():
            return None
        return _error(401, "Bad credentials")

    def _jwt_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of an RS256 JWT (signature checked if a key is configured)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return None
        if self._app_public_key is not None:
            import jwt as pyjwt

            try:
                claims = pyjwt.decode(
                    token,
                    self._app_public_key,
                    algorithms=["RS256"],
                    options={"require": ["exp", "iat", "iss"]},
                    leeway=60,
                )
            except pyjwt.PyJWTError:
                return None
        return claims if isinstance(claims, dict) else None

    def _valid_jwt(self, token: str) -> bool:
        """An RS256 App JWT for :attr:`app_id`, unexpired, at most 10 minutes long."""
        claims = self._jwt_claims(token)
        if claims is None:
            return False
        now = time.time()
        try:
            exp, iat = float(claims["exp"]), float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            return False
        return (
            str(claims.get("iss")) == self.app_id
            and exp > now
            and iat <= now + 60
            and exp - iat <= 600 + 60
        )


def _route(method: str, path: str) -> tuple[bool, _Action, dict[str, str]] | None:
    """``(needs_jwt, action, path parameters)`` of the endpoint, or None."""
    for route_method, pattern, needs_jwt, action in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and route_method == method:
            return needs_jwt, action, match.groupdict()
    return None


_Action = Callable[[GitHubStandIn, Any, dict[str, str], Mapping[str, str], Json], Answer]


_ROUTES: Sequence[tuple[str, re.Pattern[str], bool, _Action]] = [
    ("GET", re.compile(_REPO_PREFIX), False, GitHubStandIn._get_repo),
    ("GET", re.compile(_REPO_PREFIX + r"/labels"), False, GitHubStandIn._list_labels),
    ("GET", re.compile(_REPO_PREFIX + r"/hooks"), False, GitHubStandIn._list_hooks),
    (
        "GET",
        re.compile(r"/orgs/(?P<org>[A-Za-z0-9-]+)/hooks"),
        False,
        GitHubStandIn._list_org_hooks,
    ),
    ("GET", re.compile(_REPO_PREFIX + r"/issues"), False, GitHubStandIn._list_issues),
    ("GET", re.compile(_REPO_PREFIX + r"/issues/(?P<number>\d+)"), False, GitHubStandIn._get_issue),
    (
        "PATCH",
        re.compile(_REPO_PREFIX + r"/issues/(?P<number>\d+)"),
        False,
        GitHubStandIn._patch_issue,
    ),
    (
        "POST",
        re.compile(_REPO_PREFIX + r"/issues/(?P<number>\d+)/comments"),
        False,
        GitHubStandIn._post_comment,
    ),
    (
        "GET",
        re.compile(_REPO_PREFIX + r"/issues/(?P<number>\d+)/comments"),
        False,
        GitHubStandIn._list_comments,
    ),
    (
        "POST",
        re.compile(_REPO_PREFIX + r"/actions/workflows/(?P<workflow>[^/]+)/dispatches"),
        False,
        GitHubStandIn._dispatch,
    ),
    ("GET", re.compile(_REPO_PREFIX + r"/pulls/(?P<number>\d+)"), False, GitHubStandIn._get_pull),
    (
        "GET",
        re.compile(_REPO_PREFIX + r"/actions/runs/(?P<run_id>\d+)"),
        False,
        GitHubStandIn._get_workflow_run,
    ),
    (
        "GET",
        re.compile(_REPO_PREFIX + r"/actions/workflows/(?P<workflow>[^/]+)/runs"),
        False,
        GitHubStandIn._list_workflow_runs,
    ),
    (
        "GET",
        re.compile(_REPO_PREFIX + r"/commits/(?P<ref>.+)/check-suites"),
        False,
        GitHubStandIn._list_check_suites,
    ),
    (
        "PUT",
        re.compile(_REPO_PREFIX + r"/pulls/(?P<number>\d+)/merge"),
        False,
        GitHubStandIn._merge,
    ),
    ("GET", re.compile(_REPO_PREFIX + r"/installation"), True, GitHubStandIn._installation),
    ("POST", re.compile(r"/graphql"), False, GitHubStandIn._graphql),
    (
        "POST",
        re.compile(r"/app/installations/(?P<installation_id>\d+)/access_tokens"),
        True,
        GitHubStandIn._access_token,
    ),
]
