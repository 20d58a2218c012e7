"""The RSGI adapter's view of "busy", which the worker threads read to let requests go first.

Under load the requests in flight all finish together at times (a group commit answers
a whole batch at once); such an instant must not count as a pause in the load, or the
workers take the interpreter from the next requests. The clock is the test's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from valine.app import App, Route
from valine.http import Request, Response
from valine.runtime import server
from valine.runtime.server import QUIET, RsgiAdapter


class Headers:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)


class Scope:
    proto = "http"

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]]) -> None:
        self.method, self.path, self.headers = method, path, Headers(headers)


class Protocol:
    """One request's body and the response sent, as Granian's RSGI protocol object."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent: list[tuple[int, bytes]] = []

    async def __call__(self) -> bytes:
        return self.body

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield self.body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.sent.append((status, body))


def test_busy_while_answering_and_for_a_quiet_moment_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(server.time, "monotonic", lambda: now[0])
    seen: list[bool] = []
    adapter: RsgiAdapter

    def echo(request: Request) -> Response:
        seen.append(adapter.busy())
        return Response(200, request.body)

    adapter = RsgiAdapter(App({"/echo": Route("POST", echo, 100)}))
    assert not adapter.busy()  # never answered anything
    protocol = Protocol(b"hello")
    scope = Scope("POST", "/echo", [("content-length", "5")])
    asyncio.run(adapter.__rsgi__(scope, protocol))
    assert protocol.sent == [(200, b"hello")] and seen == [True]
    assert adapter.busy()  # just answered: the load may go on
    now[0] += QUIET / 2
    assert adapter.busy()
    now[0] += QUIET
    assert not adapter.busy()  # a real pause: the workers may run


def test_a_chunked_body_is_read_as_it_arrives_and_its_limit_kept() -> None:
    adapter = RsgiAdapter(App({"/echo": Route("POST", lambda r: Response(200, r.body), 4)}))
    chunked = [("transfer-encoding", "chunked")]
    small, large = Protocol(b"abcd"), Protocol(b"abcde")
    asyncio.run(adapter.__rsgi__(Scope("POST", "/echo", chunked), small))
    asyncio.run(adapter.__rsgi__(Scope("POST", "/echo", chunked), large))
    assert small.sent == [(200, b"abcd")]
    assert large.sent[0][0] == 413
    assert adapter.bytes_in_flight == 0 and adapter.in_flight == 0
