"""The GitHub webhook endpoint: verify, dedupe, persist, answer.

GitHub waits 10 seconds for an answer and never redelivers on its own, so a delivery is
made durable before we answer: one queue write records the delivery id (dedupe) and the
job that will process it, atomically. A manual redelivery keeps its ``X-GitHub-Delivery``
and is answered ``200 duplicate`` without being processed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from valine.core.tracking import essentials
from valine.github.verify import verify_signature
from valine.http import Request, Response, error_response, json_response, parse_json_object
from valine.logs import log_context

if TYPE_CHECKING:
    from valine.ports import JobQueue

log = logging.getLogger("valine.github")

#: The events the workflow uses; others are acknowledged and ignored.
HANDLED_EVENTS = frozenset({"pull_request", "check_suite", "status", "issues", "issue_comment"})
#: Job kind of a verified, deduplicated delivery waiting to be processed.
JOB_KIND = "github_event"


class GitHubWebhookEndpoint:
    """``POST /github/webhook``."""

    def __init__(self, secret: str | None, queue: Callable[[], JobQueue]) -> None:
        self._secret = secret.encode() if secret else None
        self._queue = queue

    def __call__(self, request: Request) -> Response:
        """Answer one webhook delivery."""
        if self._secret is None:
            return error_response(503, "GITHUB_WEBHOOK_SECRET is not set: cannot verify")
        if not verify_signature(self._secret, request.body, request.header("x-hub-signature-256")):
            log.warning("rejected delivery: bad signature")
            return error_response(401, "invalid X-Hub-Signature-256")
        event = request.header("x-github-event")
        delivery_id = request.header("x-github-delivery")
        if not event or not delivery_id:
            return error_response(400, "missing X-GitHub-Event or X-GitHub-Delivery header")
        payload = parse_json_object(request.body)
        if payload is None:
            return error_response(400, "body is not a JSON object")
        with log_context(delivery_id=delivery_id):
            return self._accept(event, delivery_id, payload)

    def _accept(self, event: str, delivery_id: str, payload: dict[str, Any]) -> Response:
        if event == "ping":
            return json_response(200, {"status": "pong"})
        if event not in HANDLED_EVENTS:
            return json_response(202, {"status": "ignored", "event": event})
        # Only what tracking reads: a few hundred bytes instead of the whole body.
        job = {"event": event, "delivery_id": delivery_id, "payload": essentials(event, payload)}
        if not self._queue().enqueue(JOB_KIND, job, dedupe_key=f"github:{delivery_id}"):
            log.info("duplicate delivery of %s", event)
            return json_response(200, {"status": "duplicate", "delivery": delivery_id})
        log.info("accepted %s.%s", event, payload.get("action", ""))
        return json_response(202, {"status": "accepted", "delivery": delivery_id})
