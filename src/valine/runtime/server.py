"""The local server: an ASGI adapter around the shared :class:`~valine.app.App`.

The adapter turns an ASGI request into a :class:`~valine.http.Request` -- the same shape
the Lambda handlers build from API Gateway events -- and calls the app. The route and
method are decided before any body is read (404, 405); while reading, the adapter
enforces the route's body limit (413), a cap on the bytes of all bodies being read at
once (503 with ``Retry-After`` when it is reached) and a time limit per body (408 for a
body that arrives too slowly). uvicorn (with httptools and uvloop) serves it; there is
no web framework in between, because the app has three routes.
"""

from __future__ import annotations

import asyncio
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


#: Default cap on the bytes of the request bodies being read at the same time.
MAX_IN_FLIGHT = 64 << 20
#: Default seconds a request body may take to arrive.
BODY_TIMEOUT = 10.0


class BodyTooLarge(Exception):
    """The request body is over the route's limit."""


class TooManyBytes(Exception):
    """Reading this body would pass the cap on bytes in flight."""


class AsgiAdapter:
    """An ASGI 3 application serving ``app``."""

    def __init__(
        self, app: App, max_in_flight: int = MAX_IN_FLIGHT, body_timeout: float = BODY_TIMEOUT
    ) -> None:
        self.app = app
        #: Requests being answered now. The worker pool reads it to let ingest go first.
        self.in_flight = 0
        #: Bytes of request bodies reserved by the requests being read now.
        self.bytes_in_flight = 0
        self.max_in_flight = max_in_flight
        self.body_timeout = body_timeout

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
        refusal = self.app.refusal(scope["method"], scope["path"])
        if refusal is not None:
            await _send(send, refusal)
            return
        headers = _headers(scope)
        limit = self.app.max_body(scope["path"])
        held = [0]  # bytes this request has reserved; released once, below
        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge
            held[0] = self._reserve(int(declared) if declared.isdigit() else 0)
            body = await asyncio.wait_for(self._read_body(receive, limit, held), self.body_timeout)
        except BodyTooLarge:
            await _send(send, error_response(413, f"body larger than {limit} bytes"))
            return
        except TooManyBytes:
            retry = (("retry-after", "1"),)
            await _send(send, error_response(503, "too many bodies being read; retry", retry))
            return
        except TimeoutError:
            log.warning("request body took longer than %s s", self.body_timeout)
            await _send(send, error_response(408, "the request body arrived too slowly"))
            return
        finally:
            self.bytes_in_flight -= held[0]
        request = Request(scope["method"], scope["path"], headers, body)
        await _send(send, self.app.handle(request))

    def _reserve(self, size: int) -> int:
        """Count ``size`` more bytes in flight; TooManyBytes past the cap."""
        if self.bytes_in_flight + size > self.max_in_flight:
            raise TooManyBytes
        self.bytes_in_flight += size
        return size

    async def _read_body(self, receive: Receive, limit: int, held: list[int]) -> bytes:
        """The body; ``held[0]`` grows as chunks pass the reservation. Raises BodyTooLarge
        or TooManyBytes."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            if size > held[0]:
                held[0] += self._reserve(size - held[0])
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


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
