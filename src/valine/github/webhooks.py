"""The GitHub webhook endpoint: verify, dedupe, persist, answer.

GitHub waits 10 seconds for an answer and never redelivers on its own, so a delivery is
made durable before we answer: one queue write records the delivery (dedupe) and the
job that will process it, atomically. The dedupe key is the delivery's
``X-GitHub-Delivery`` id, which GitHub's manual *Redeliver* keeps: a delivery already
accepted is answered ``200 duplicate`` without being processed again. Each delivery id
is one event; two deliveries of the same content (two events that happen to look
alike) are two deliveries, and tracking applies each idempotently. A delivery whose job
was dead-lettered has its key released by the queue, so *Redeliver* processes it again.

The body is checked against the shape its event's reader declares
(:data:`valine.github.events.EVENT_SHAPES`: the fields tracking reads) before any field
is used; a body that does not fit is answered 400 naming the field. Only the fields the
reader reads are parsed into values (:data:`valine.github.events.PROJECTIONS`); the rest
of the body is checked to be JSON and skipped. The events handled
are the ones :mod:`valine.github.events` has a reader for; others are acknowledged and
ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from valine.core.shape import ShapeError, check
from valine.github.events import EVENT_SHAPES, HANDLED_EVENTS, essentials, projection
from valine.github.verify import verify_signature
from valine.http import Deferred, Request, Response, error_response, json_response
from valine.logs import get_logger, log_context
from valine.ports import GITHUB_EVENT_JOB

if TYPE_CHECKING:
    from valine.ports import JobQueue

log = get_logger("valine.github")

#: ``X-GitHub-Event`` (``pull_request``) and ``X-GitHub-Delivery`` (a GUID).
_EVENT_NAME = re.compile(r"[a-z_]{1,64}")
_DELIVERY_ID = re.compile(r"[A-Za-z0-9-]{1,100}")


class GitHubWebhookEndpoint:
    """``POST /github/webhook``."""

    def __init__(
        self,
        secret: str | None,
        queue: Callable[[], JobQueue],
        unserved: Callable[[str | None], str | None] | None = None,
    ) -> None:
        """``unserved``: why a repository (``repository.full_name``) is not served, None
        when it is; a delivery of an unserved one is answered 202 with that reason and
        queues nothing (``unserved`` None: every repository is served)."""
        self._secret = secret.encode() if secret else None
        self._queue = queue
        self._unserved = unserved

    def __call__(self, request: Request) -> Response:
        """Answer one webhook delivery: its job enqueued (committed) before the answer."""
        step = self.prepare(request)
        if isinstance(step, Response):
            return step
        added = self._queue().enqueue(step.kind, step.payload, dedupe_key=step.dedupe_key)
        return step.finish(added)

    def prepare(self, request: Request) -> Response | Deferred:
        """Verify and check one delivery: its answer, or the job to commit before answering.

        Every outcome is counted by event (the deferred ones when they finish).
        """
        answer = self._answer(request)
        if isinstance(answer, Deferred):
            return answer
        event, outcome, response = answer
        _count(event, outcome)
        return response

    def _answer(self, request: Request) -> tuple[str, str, Response] | Deferred:
        """``(event, outcome, response)``, or the deferred job of a handled event; the
        event is "other" unless verified and known."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        event = request.header("x-github-event") or ""
        delivery_id = request.header("x-github-delivery") or ""
        with log_context(delivery_id=delivery_id):
            return _accept(event, delivery_id, request.body, self._unserved)

    def _refusal(self, request: Request) -> tuple[str, str, Response] | None:
        """The answer to a delivery that is not configured, not signed or malformed."""
        if self._secret is None:
            response = error_response(503, "GITHUB_WEBHOOK_SECRET is not set: cannot verify")
            return "other", "not_configured", response
        if not verify_signature(self._secret, request.body, request.header("x-hub-signature-256")):
            log.warning("rejected delivery: bad signature")
            return "other", "bad_signature", error_response(401, "invalid X-Hub-Signature-256")
        event = request.header("x-github-event") or ""
        if not _EVENT_NAME.fullmatch(event):
            response = error_response(400, "X-GitHub-Event: missing, or not an event name")
            return "other", "bad_request", response
        if not _DELIVERY_ID.fullmatch(request.header("x-github-delivery") or ""):
            response = error_response(400, "X-GitHub-Delivery: missing, or not a delivery id")
            return _known(event), "bad_request", response
        return None


def _known(event: str) -> str:
    """The event's name as counted: "other" for an event the workflow does not use."""
    return event if event in HANDLED_EVENTS or event == "ping" else "other"


def _accept(
    event: str,
    delivery_id: str,
    body: bytes,
    unserved: Callable[[str | None], str | None] | None,
) -> tuple[str, str, Response] | Deferred:
    """A verified delivery: 400 for a body that does not fit, the ping's pong, an ignored
    event's (or an unserved repository's) 202, or the job of a handled event to commit
    before answering."""
    try:
        payload = projection(event).parse(body)  # only the fields read, the rest skipped
        if event in EVENT_SHAPES:
            check(EVENT_SHAPES[event], payload)
    except ShapeError as exc:
        log.info("refused %s delivery: %s", event, exc)
        return _known(event), "bad_request", error_response(400, str(exc))
    if event == "ping":
        return event, "pong", json_response(200, {"status": "pong"})
    if event not in HANDLED_EVENTS:
        return "other", "ignored", json_response(202, {"status": "ignored", "event": event})
    reason = unserved(repository_name(payload)) if unserved is not None else None
    if reason is not None:
        answer = {"status": "ignored", "event": event, "reason": reason}
        return event, "unserved", json_response(202, answer)
    # Only what tracking reads: a few hundred bytes instead of the whole body.
    job = {"event": event, "delivery_id": delivery_id, "payload": essentials(event, payload)}
    action = payload.get("action") or ""
    return Deferred(
        GITHUB_EVENT_JOB,
        job,
        dedupe_key(delivery_id),
        lambda added: _finish(event, action, delivery_id, added),
    )


def _finish(event: str, action: object, delivery_id: str, added: bool) -> Response:
    """The answer to a handled delivery once its job is committed (or found a duplicate)."""
    with log_context(delivery_id=delivery_id):
        if not added:
            log.info("duplicate delivery of %s", event)
            _count(event, "duplicate")
            return json_response(200, {"status": "duplicate", "delivery": delivery_id})
        log.info("accepted %s.%s", event, action)
        _count(event, "accepted")
        return _accepted(delivery_id)


def _accepted(delivery_id: str) -> Response:
    """The 202 of an accepted delivery, from prebuilt bytes: ``json_response``'s body.

    ``delivery_id`` matched :data:`_DELIVERY_ID` (letters, digits, ``-``), so it needs
    no JSON escaping.
    """
    return Response(202, _ACCEPTED_HEAD + delivery_id.encode() + b'"}')


_ACCEPTED_HEAD = b'{"status":"accepted","delivery":"'


def _count(event: str, outcome: str) -> None:
    from valine import metrics

    metrics.count("deliveries", event=event, outcome=outcome)


def repository_name(payload: dict[str, Any]) -> str | None:
    """``repository.full_name`` of a checked payload, if it has one (whom it is served for)."""
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    return name if isinstance(name, str) else None


def dedupe_key(delivery_id: str) -> str:
    """The queue's dedupe key of a delivery: its ``X-GitHub-Delivery`` id."""
    return "github:delivery:" + delivery_id
