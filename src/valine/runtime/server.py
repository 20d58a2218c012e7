"""The local server: an RSGI adapter around the shared :class:`~valine.app.App`.

Granian (a Rust HTTP server) serves it through RSGI, its own interface, embedded in this
process's event loop: the HTTP parsing, keep-alive and socket I/O run in Granian's Rust
threads, outside the interpreter lock, and only the app runs in Python. The adapter turns
an RSGI request into a :class:`~valine.http.Request` -- the same shape the Lambda
handlers build from API Gateway events -- and calls the app. The route and method are
decided before any body is read (404, 405); while reading, the adapter enforces the
route's body limit (413), a cap on the bytes of all bodies being read at once (503 with
``Retry-After`` when it is reached) and a time limit per body (408 for a body that
arrives too slowly). There is no web framework in between, because the app has four
routes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from valine.ports import JobQueue

from valine.app import App, internal_error
from valine.http import Deferred, Request, Response, error_response
from valine.logs import get_logger

log = get_logger("valine.server")


class Headers(Protocol):
    """What the adapter reads of an RSGI request's headers (``granian.rsgi.Headers``)."""

    def items(self) -> list[tuple[str, str]]:
        """Every header as ``(lower-case name, value)``, repeated names included."""
        ...


class Scope(Protocol):
    """What the adapter reads of an RSGI scope (``granian.rsgi.Scope``)."""

    proto: str
    method: str
    path: str

    @property
    def headers(self) -> Headers:
        """The request's headers."""
        ...


class HTTPProtocol(Protocol):
    """The RSGI HTTP protocol object: the body (whole, or as chunks), and the response."""

    def __call__(self) -> Awaitable[bytes]:
        """The whole body, once it has arrived."""
        ...

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive."""
        ...

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Send the whole response."""
        ...


#: Default cap on the bytes of the request bodies being read at the same time.
MAX_IN_FLIGHT = 64 << 20
#: Default seconds a request body may take to arrive.
BODY_TIMEOUT = 10.0
#: Seconds after the last answer during which the server still counts as busy.
QUIET = 0.05
#: At most this many bytes of a body refused as too large are read (and dropped) before
#: the 413 is sent; past it the connection closes after the answer.
DISCARD_LIMIT = 8 << 20


class BodyTooLarge(Exception):
    """The request body is over the route's limit."""


class TooManyBytes(Exception):
    """Reading this body would pass the cap on bytes in flight."""


class GroupCommit:
    """Commits the jobs of concurrent webhook requests together, off the event loop's thread.

    A webhook's answer waits for its job's commit. Each request's coroutine, once its
    delivery is verified and parsed, adds its job here and awaits it. One commit runs at a
    time, in a writer thread of its own (SQLite releases the interpreter lock while it
    writes, so the event loop verifies and parses the next requests meanwhile): the jobs
    added while a commit runs, or in the same event-loop turn when none runs, form the
    next batch, written in one transaction
    (:meth:`~valine.queue.sqlite.SqliteJobQueue.enqueue_many`). Each request's future is
    resolved only when its batch is committed: each answer still follows its own commit.
    Alone, a request is its own batch.
    """

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._pending: list[tuple[Deferred, asyncio.Future[bool]]] = []
        #: True from the moment a flush is scheduled until its commit has answered.
        self._flushing = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="valine-commit")
        #: Batches flushed and jobs written (the benchmark reports the mean batch).
        self.batches = 0
        self.jobs = 0

    async def add(self, step: Deferred) -> bool:
        """Commit ``step``'s job with the others of its batch; False for a seen dedupe key."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((step, future))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush, loop)
        return await future

    def close(self) -> None:
        """Wait for the commit in progress, then stop the writer thread."""
        self._writer.shutdown(wait=True)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the pending jobs to the writer thread as one batch."""
        batch, self._pending = self._pending, []
        self.batches += 1
        self.jobs += len(batch)
        jobs = [(s.kind, s.payload, s.dedupe_key) for s, _ in batch]
        written = loop.run_in_executor(self._writer, enqueue_all, self._queue, jobs)
        written.add_done_callback(lambda done: self._answer(loop, batch, done))

    def _answer(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Deferred, asyncio.Future[bool]]],
        done: asyncio.Future[list[bool]],
    ) -> None:
        """Resolve a committed batch's requests; start the next batch if jobs are waiting."""
        exc = done.exception()
        if exc is not None:  # every request of the batch answers 500; nothing committed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), added in zip(batch, done.result(), strict=True):
                if not future.done():  # a request cancelled meanwhile: its job stays committed
                    future.set_result(added)
        if self._pending:
            self._flush(loop)
        else:
            self._flushing = False


def enqueue_all(queue: JobQueue, jobs: Sequence[tuple[str, dict[str, Any], str]]) -> list[bool]:
    """``(kind, payload, dedupe_key)`` jobs in one transaction where the queue can (SQLite),
    else one after another; per job, whether it was added."""
    many = getattr(queue, "enqueue_many", None)
    if many is not None:
        return list(many(jobs))
    return [queue.enqueue(kind, payload, dedupe_key=key) for kind, payload, key in jobs]


class RsgiAdapter:
    """An RSGI application serving ``app``; with ``commits``, webhook jobs are group-committed."""

    def __init__(
        self,
        app: App,
        max_in_flight: int = MAX_IN_FLIGHT,
        body_timeout: float = BODY_TIMEOUT,
        commits: GroupCommit | None = None,
    ) -> None:
        self.app = app
        self.commits = commits
        #: Requests being answered now. The worker pool reads it to let ingest go first.
        self.in_flight = 0
        #: When the last request was answered (``time.monotonic``).
        self.last_answer = float("-inf")
        #: Bytes of request bodies reserved by the requests being read now.
        self.bytes_in_flight = 0
        self.max_in_flight = max_in_flight
        self.body_timeout = body_timeout

    def busy(self) -> bool:
        """True while a request is being answered, or was less than QUIET seconds ago.

        Under load the requests in flight all finish together at times (a group commit
        answers a whole batch): those instants are not a pause in the load.
        """
        return self.in_flight > 0 or time.monotonic() - self.last_answer < QUIET

    async def __rsgi__(self, scope: Scope, protocol: HTTPProtocol) -> None:
        """Serve one RSGI request (HTTP only: this app has no websockets)."""
        if scope.proto != "http":
            return
        self.in_flight += 1
        try:
            _send(protocol, await self._answer(scope, protocol))
        finally:
            self.in_flight -= 1
            self.last_answer = time.monotonic()

    async def _answer(self, scope: Scope, protocol: HTTPProtocol) -> Response:
        refusal = self.app.refusal(scope.method, scope.path)
        headers = _headers(scope.headers)
        if refusal is not None:
            if _has_body(headers):
                # As for a 413: a client still sending would see the connection closed
                # under it (a broken pipe) instead of the 404 or 405.
                await self._discard(protocol)
            return refusal
        limit = self.app.max_body(scope.path)
        held = [0]  # bytes this request has reserved; released once, below
        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge
            held[0] = self._reserve(int(declared) if declared.isdigit() else 0)
            async with asyncio.timeout(self.body_timeout):
                if declared.isdigit():
                    # HTTP/1.1 framing: the body is exactly the declared length (a client
                    # sending more starts its next request), already within the limit and
                    # reserved: read it whole, in one step instead of one per chunk.
                    body = await protocol()
                else:  # chunked: counted as it arrives
                    body = await self._read_body(protocol, limit, held)
        except BodyTooLarge:
            # A client that sends the whole body before reading the answer (most do) would
            # see the connection closed under it instead of the 413: read and drop a
            # bounded amount of the rest first.
            await self._discard(protocol)
            return error_response(413, f"body larger than {limit} bytes")
        except TooManyBytes:
            retry = (("retry-after", "1"),)
            return error_response(503, "too many bodies being read; retry", retry)
        except TimeoutError:
            log.warning("request body took longer than %s s", self.body_timeout)
            return error_response(408, "the request body arrived too slowly")
        finally:
            self.bytes_in_flight -= held[0]
        return await self._respond(Request(scope.method, scope.path, headers, body))

    async def _respond(self, request: Request) -> Response:
        """The app's answer; a deferred job is group-committed before it (with ``commits``)."""
        if self.commits is None:
            return self.app.handle(request)
        step = self.app.begin(request)
        if isinstance(step, Response):
            return step
        try:
            return step.finish(await self.commits.add(step))
        except Exception:
            return internal_error(request)

    async def _discard(self, protocol: HTTPProtocol) -> None:
        """Read and drop the rest of a refused body: at most DISCARD_LIMIT bytes, and for at
        most the body time limit."""
        dropped = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in protocol:
                    dropped += len(chunk)
                    if dropped > DISCARD_LIMIT:
                        return
        except (TimeoutError, RuntimeError):  # too slow, or the client went away
            return

    def _reserve(self, size: int) -> int:
        """Count ``size`` more bytes in flight; TooManyBytes past the cap."""
        if self.bytes_in_flight + size > self.max_in_flight:
            raise TooManyBytes
        self.bytes_in_flight += size
        return size

    async def _read_body(self, protocol: HTTPProtocol, limit: int, held: list[int]) -> bytes:
        """The body; ``held[0]`` grows as chunks pass the reservation. Raises BodyTooLarge
        or TooManyBytes."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in protocol:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            if size > held[0]:
                held[0] += self._reserve(size - held[0])
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _has_body(headers: dict[str, str]) -> bool:
    """True if the request declares a body (a non-zero length, or chunked)."""
    length = headers.get("content-length", "")
    return (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers


def _headers(raw: Headers) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _send(protocol: HTTPProtocol, response: Response) -> None:
    headers = list(response.headers)
    headers.append(("content-length", str(len(response.body))))
    protocol.response_bytes(response.status, headers, response.body)


def serve(adapter: RsgiAdapter, host: str, port: int) -> None:
    """Serve ``adapter`` on ``host:port`` until SIGINT/SIGTERM, then stop gracefully."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for Windows
        asyncio.run(_serve(adapter, host, port))
    else:
        uvloop.run(_serve(adapter, host, port))


async def _serve(adapter: RsgiAdapter, host: str, port: int) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server.embed import Server

    server = Server(
        adapter,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        http=HTTPModes.http1,
        websockets=False,
        log_enabled=False,
        http1_settings=HTTP1Settings(header_read_timeout=int(adapter.body_timeout * 1000)),
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.stop)
    await server.serve()
