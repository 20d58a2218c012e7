"""The local server: an ASGI adapter around the shared :class:`~valine.app.App`.

The adapter turns an ASGI request into a :class:`~valine.http.Request` -- the same shape
the Lambda handlers build from API Gateway events -- enforcing the route's body limit
while reading, and calls the app. uvicorn (with httptools and uvloop) serves it; there is
no web framework in between, because the app has three routes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from valine.app import App
from valine.http import Request, Response, error_response

log = logging.getLogger("valine.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body is over the route's limit."""


class AsgiAdapter:
    """An ASGI 3 application serving ``app``."""

    def __init__(self, app: App) -> None:
        self.app = app
        #: Requests being answered now. The worker pool reads it to let ingest go first.
        self.in_flight = 0

    def busy(self) -> bool:
        """True while a request is being answered."""
        return self.in_flight > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (HTTP; lifespan is acknowledged)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self.in_flight += 1
        try:
            await self._serve_http(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        limit = self.app.max_body(scope["path"])
        try:
            body = await _read_body(receive, headers, limit)
        except BodyTooLarge:
            await _send(send, error_response(413, f"body larger than {limit} bytes"))
            return
        request = Request(scope["method"], scope["path"], headers, body)
        await _send(send, self.app.handle(request))


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, response: Response) -> None:
    headers = [(k.encode(), v.encode()) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def serve(adapter: AsgiAdapter, host: str, port: int) -> None:
    """Serve ``adapter`` on ``host:port`` until SIGINT/SIGTERM (uvicorn handles both)."""
    import uvicorn

    config = uvicorn.Config(
        adapter,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        loop="auto",
        http="auto",
        lifespan="on",
        server_header=False,
    )
    uvicorn.Server(config).run()
