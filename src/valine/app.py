"""The HTTP application shared by every runtime: routes, methods and body limits.

Like bedevere's ``__main__``, this module only combines: each endpoint lives with its
concern (``valine.discord``, ``valine.github``) and is handed in by the runtime that
builds the app. The app never raises: every request gets a JSON answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from valine.core.records import Record
from valine.http import Deferred, Request, Response, error_response
from valine.logs import get_logger

log = get_logger("valine.app")

Handler = Callable[[Request], Response]
#: A handler in two steps: the answer now, or the job to commit before answering.
Preparer = Callable[[Request], "Response | Deferred"]
#: What a request that failed unexpectedly is answered.
INTERNAL_ERROR = "internal error; the event was not processed"


class Route(Record):
    """One path: the method it takes, its handler and the largest body it accepts."""

    method: str
    handler: Handler
    max_body: int = 0
    #: The handler's two steps, for a server that commits several requests' jobs at once.
    prepare: Preparer | None = None


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
        route = self._route(request)
        if isinstance(route, Response):
            return route
        try:
            return route.handler(request)
        except Exception:
            return internal_error(request)

    def begin(self, request: Request) -> Response | Deferred:
        """Like :meth:`handle`, but a route with a ``prepare`` step may answer with the
        :class:`~valine.http.Deferred` job to commit first (the caller then calls its
        ``finish``, or answers :func:`internal_error` if the commit failed)."""
        route = self._route(request)
        if isinstance(route, Response):
            return route
        try:
            return (route.prepare or route.handler)(request)
        except Exception:
            return internal_error(request)

    def _route(self, request: Request) -> Route | Response:
        """The request's route, or the refusal (404, 405, 413) to answer instead."""
        refusal = self.refusal(request.method, request.path)
        if refusal is not None:
            return refusal
        route = self.routes[request.path]
        if len(request.body) > route.max_body:
            return error_response(413, f"body larger than {route.max_body} bytes")
        return route


def internal_error(request: Request) -> Response:
    """Log the exception being handled and answer 500 (never its text)."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, INTERNAL_ERROR)
