"""Framework-free HTTP request and response values (NamedTuples: light to import).

The local server (ASGI) and the Lambda handlers (API Gateway events) both turn their
input into a :class:`Request` and call the same :class:`valine.app.App`, as Chalice's
local mode does, so no behaviour lives in only one runtime.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from valine.core.records import Record

JSON_HEADERS: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


class Request(Record):
    """An HTTP request; header names are lower-case (HTTP names are case-insensitive)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header's value by case-insensitive name, or None."""
        return self.headers.get(name.lower())


class Response(Record):
    """An HTTP response."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS


class Deferred(Record):
    """A request whose answer waits for one job's commit (the webhook endpoint's).

    The synchronous path enqueues the job and calls ``finish`` at once; the local server
    instead commits the jobs of concurrent requests in one transaction, then answers
    each with ``finish(added)`` (``added``: False for a job whose dedupe key was seen).
    """

    kind: str
    payload: dict[str, Any]
    dedupe_key: str
    finish: Callable[[bool], Response]


def json_response(
    status: int, document: Any, extra_headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """A JSON response of ``document``."""
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(status, body, JSON_HEADERS + extra_headers)


def error_response(
    status: int, message: str, extra_headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """A JSON error response: ``{"error": message}``."""
    return json_response(status, {"error": message}, extra_headers)


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The JSON object in ``body``, or None if it is not valid JSON or not an object."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None
