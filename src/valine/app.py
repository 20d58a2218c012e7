"""The HTTP application shared by every runtime: routes, methods and body limits.

Like bedevere's ``__main__``, this module only combines: each endpoint lives with its
concern (``valine.discord``, ``valine.github``) and is handed in by the runtime that
builds the app. The app never raises: every request gets a JSON answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import NamedTuple

from valine.http import Request, Response, error_response

log = logging.getLogger("valine.app")

Handler = Callable[[Request], Response]


class Route(NamedTuple):
    """One path: the method it takes, its handler and the largest body it accepts."""

    method: str
    handler: Handler
    max_body: int = 0


class App:
    """Dispatches a :class:`Request` to its route; answers 404, 405 and 413 itself."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)

    def max_body(self, path: str) -> int:
        """The body limit of ``path`` (0 for unknown paths and bodiless routes)."""
        route = self.routes.get(path)
        return route.max_body if route else 0

    def refusal(self, method: str, path: str) -> Response | None:
        """404 for an unknown path, 405 for a wrong method -- decided before any body."""
        route = self.routes.get(path)
        if route is None:
            return error_response(404, "no such path")
        if method != route.method:
            allow = (("allow", route.method),)
            return error_response(405, f"this path takes {route.method}", allow)
        return None

    def handle(self, request: Request) -> Response:
        """The response to ``request``; unexpected errors become a logged 500."""
        refusal = self.refusal(request.method, request.path)
        if refusal is not None:
            return refusal
        route = self.routes[request.path]
        if len(request.body) > route.max_body:
            return error_response(413, f"body larger than {route.max_body} bytes")
        try:
            return route.handler(request)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal error; the event was not processed")
