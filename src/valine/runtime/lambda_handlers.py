"""The AWS Lambda entry points: thin adapters around the code every runtime shares.

``discord_handler`` and ``github_handler`` turn an API Gateway REST (v1) proxy event into
a :class:`~valine.http.Request` -- the shape the local server's ASGI adapter builds too --
and call the same :class:`~valine.app.App`, built once per container by
:class:`~valine.runtime.aws.AwsServices`. ``worker_handler`` runs SQS batches through
``Orchestrator.job_handlers()`` and reports partial failures; ``outbox_handler`` sends the
jobs the Discord function wrote to the outbox table (its DynamoDB stream) to SQS;
``reconcile_handler`` is the EventBridge schedule's periodic re-read of the active run's
pull requests.

This module imports only the standard library at import time (the PING's cold start counts
every import). A Discord PING then loads the shared app (settings, verification, routing)
and no AWS or HTTP client library: settings, the app, the store, the queue and every
client are built on first use and kept for the container's life, and boto3 loads only when
a request needs DynamoDB, SQS or the secret. ``bench/run.py`` measures this cold start.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from valine.logs import get_logger

if TYPE_CHECKING:
    from valine.app import App
    from valine.http import Request, Response
    from valine.ports import Job
    from valine.runtime.aws import AwsServices
    from valine.runtime.config import Settings

log = get_logger("valine.lambda")

Event = Mapping[str, Any]


# --------------------------------------------------------------------------- HTTP


def request_from_event(event: Event) -> Request:
    """The :class:`Request` of an API Gateway REST (v1) proxy event.

    Header names are lower-cased; ``multiValueHeaders`` (every value of a repeated
    header) win over ``headers`` (the last value only) and are joined with ``", "``, as
    the ASGI adapter joins repeated headers. A base64 body (``isBase64Encoded``) is
    decoded; a text body is encoded as UTF-8, which gives back the bytes the client sent
    for the JSON bodies of Discord and GitHub. Raises ValueError for a body that is
    marked base64 but is not.
    """
    from valine.http import Request

    resource = str(event.get("resource") or "")
    # ``resource`` is the API's path without stage or custom-domain base path; for a
    # greedy ``{proxy+}`` resource the request's own ``path`` says where it went.
    path = resource if resource and "{" not in resource else str(event.get("path") or "/")
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("body is marked base64 but is not") from exc
    else:
        raw = body.encode("utf-8")
    return Request(str(event.get("httpMethod") or "GET").upper(), path, _event_headers(event), raw)


def _event_headers(event: Event) -> dict[str, str]:
    headers: dict[str, str] = {}
    multi = event.get("multiValueHeaders") or {}
    single = event.get("headers") or {}
    for name, values in multi.items():
        if values is None:
            continue
        value = ", ".join(str(v) for v in values)
        key = str(name).lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    for name, value in single.items():
        key = str(name).lower()
        if key not in headers and value is not None:
            headers[key] = str(value)
    return headers


def proxy_response(response: Response) -> dict[str, Any]:
    """The API Gateway proxy result of ``response``.

    Repeated header names are joined with ``", "``. The app's bodies are JSON, so the
    body is text; anything that is not UTF-8 would be sent base64-encoded.
    """
    headers: dict[str, str] = {}
    for name, value in response.headers:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        return {
            "statusCode": response.status,
            "headers": headers,
            "body": response.body.decode("utf-8"),
            "isBase64Encoded": False,
        }
    except UnicodeDecodeError:
        return {
            "statusCode": response.status,
            "headers": headers,
            "body": base64.b64encode(response.body).decode("ascii"),
            "isBase64Encoded": True,
        }


# --------------------------------------------------------------------------- container


class LambdaRuntime:
    """What one Lambda container keeps between invocations: services, app, settings.

    Built from an environment mapping (``os.environ`` in production). Nothing here runs
    at import time; each member is built on the first invocation that needs it.
    """

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, configure_logs: bool = True
    ) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self._configure_logs = configure_logs
        self._services: AwsServices | None = None
        self._app: App | None = None

    @property
    def services(self) -> AwsServices:
        """The container's services (settings from the environment; secret merged lazily)."""
        if self._services is None:
            from valine.runtime.aws import AwsServices

            hook = self._logging if self._configure_logs else None
            self._services = AwsServices(self._environ, on_settings=hook)
        return self._services

    @staticmethod
    def _logging(settings: Settings) -> None:
        from valine import logs

        logs.configure(settings.log_level, settings.secret_values(), log_format=settings.log_format)

    def app(self, *, with_secret: bool) -> App:
        """The shared app; ``with_secret`` merges the secret first (rebuilding on a change).

        The Discord function passes False: a PING needs only ``DISCORD_PUBLIC_KEY``, and
        commands merge the secret themselves. The GitHub function passes True: its
        endpoint verifies with ``GITHUB_WEBHOOK_SECRET``.
        """
        services = self.services
        changed = services.refresh_secrets() if with_secret else False
        if self._app is None or changed:
            self._app = services.app()
        return self._app

    def http(self, event: Event, context: Any, *, with_secret: bool) -> dict[str, Any]:
        """Answer one API Gateway proxy event through the shared app.

        The process's first request runs with the cyclic collector paused and freezes
        the heap it built (:mod:`valine.infra.heap`): most of a cold start is loading
        what the container keeps.
        """
        from valine.infra import heap

        starting = heap.start_up()
        try:
            return self._http(event, context, with_secret=with_secret)
        finally:
            if starting:
                heap.started()

    def _http(self, event: Event, context: Any, *, with_secret: bool) -> dict[str, Any]:
        from valine.core.errors import ValineError
        from valine.http import error_response
        from valine.logs import log_context

        with log_context(aws_request_id=_request_id(context)):
            try:
                request = request_from_event(event)
            except ValueError as exc:
                return proxy_response(error_response(400, str(exc)))
            try:
                app = self.app(with_secret=with_secret)
            except ValineError:
                # The secret could not be read, or a setting is malformed: say so in the
                # log, and answer 503 (GitHub shows the failed delivery for redelivery).
                log.exception("cannot serve %s", request.path)
                return proxy_response(error_response(503, "service unavailable; see its log"))
            return proxy_response(app.handle(request))

    def work(self, event: Event, context: Any) -> dict[str, Any]:
        """Run an SQS batch; the records that failed go back in ``batchItemFailures``.

        Each record becomes the same :class:`~valine.ports.Job` the queue's ``lease``
        gives, and runs through the same handlers as the local worker pool. A record
        received more than ``max_attempts`` times (its workers died) is dead-lettered
        here, with the dead-letter hook; a record is started only while the longest job
        (``valine.infra.budget``) still fits in the invocation, the others are put back
        without spending an attempt. A handler
        that raises has its job handed to the queue's ``retry``: the message becomes
        visible again after the queue's backoff, or -- once it has been received
        ``max_attempts`` times -- goes to the dead-letter queue with its error, and then
        to ``on_dead_letter`` (the people waiting are told). Either way the record is
        reported as failed, so Lambda does not delete it as done. Records that succeed
        are deleted by Lambda itself.
        """
        from valine.infra.budget import LONGEST_JOB
        from valine.logs import log_context
        from valine.queue.sqs import job_from_sqs_record

        services = self.services
        services.refresh_secrets()
        handlers = services.job_handlers()
        failures: list[dict[str, str]] = []
        with log_context(aws_request_id=_request_id(context)):
            for record in event.get("Records") or ():
                message_id = str(record.get("messageId", ""))
                try:
                    job = job_from_sqs_record(record)
                except Exception:
                    # Not a valine job: SQS redrives it to the dead-letter queue after
                    # maxReceiveCount receives.
                    log.exception("unreadable SQS message %s", message_id)
                    failures.append({"itemIdentifier": message_id})
                    continue
                if job.attempts > getattr(services.queue, "max_attempts", job.attempts):
                    # Its workers kept dying: dead-letter it here, with the hook, before
                    # SQS's redrive would move it silently.
                    self._bury(job)
                    continue
                if _seconds_left(context) < LONGEST_JOB:
                    # Too little time left for the longest job: put it back for another
                    # invocation, without spending an attempt.
                    services.queue.release(job, 0.0)
                    continue
                if not self._run_job(job, handlers.get(job.kind)):
                    failures.append({"itemIdentifier": message_id})
        return {"batchItemFailures": failures}

    def _bury(self, job: Job) -> None:
        """Dead-letter an abandoned job and run the dead-letter hook."""
        from valine.queue.sqs import SqsJobQueue
        from valine.queue.worker import dead_lettered

        services = self.services
        queue = getattr(services.queue, "sqs", services.queue)  # behind an outbox: its SQS
        if isinstance(queue, SqsJobQueue):
            queue.bury_abandoned(job)
        dead_lettered(
            job,
            "its workers stopped before finishing it (timeout or crash)",
            services.on_dead_letter,
        )

    def _run_job(self, job: Job, handler: Any) -> bool:
        """Run one job through the local pool's :func:`~valine.queue.worker.run_job`.

        If even the retry cannot be recorded, the message stays in flight: SQS delivers
        it again after the visibility timeout, and its redrive policy dead-letters it.
        """
        from valine.queue.worker import Outcome, run_job

        services = self.services
        try:
            outcome = run_job(services.queue, job, handler, services.on_dead_letter)
        except Exception:
            log.exception("could not reschedule job %s", job.job_id)
            return False
        return outcome is not Outcome.FAILED  # a released job was sent again already

    def forward(self, event: Event, context: Any) -> dict[str, Any]:
        """Send a DynamoDB stream batch of the job outbox to the SQS job queue.

        Needs only the SQS client and ``VALINE_QUEUE_URL``: no secret, no store. The
        records not sent are named in ``batchItemFailures`` (the stream is retried from
        the first one; :func:`valine.queue.outbox.forward`).
        """
        from valine.core.errors import ConfigurationError
        from valine.logs import log_context
        from valine.queue.outbox import forward

        services = self.services
        queue_url = services.settings.queue_url
        if not queue_url:
            raise ConfigurationError("VALINE_QUEUE_URL is not set: the outbox has nowhere to go")
        with log_context(aws_request_id=_request_id(context)):
            failures = forward(services.aws_client("sqs"), queue_url, event.get("Records") or ())
        return {"batchItemFailures": failures}

    def reconcile(self, event: Event, context: Any) -> dict[str, Any]:
        """Re-read the active run's open pull requests and track what changed."""
        from valine.logs import log_context

        services = self.services
        services.refresh_secrets()
        with log_context(aws_request_id=_request_id(context)):
            if not len(services.repositories):
                log.warning("reconcile skipped: no repository (GITHUB_REPOSITORY) is set")
                return {"pulls_read": 0}
            try:
                return {"pulls_read": services.reconcile()}
            finally:
                services.measure_active_run()

    def schedule(self, event: Event, context: Any) -> dict[str, Any]:
        """Enqueue the ``[schedule]`` slots that are due (EventBridge runs it every minute)."""
        from valine.logs import log_context

        services = self.services
        with log_context(aws_request_id=_request_id(context)):
            if not services.scheduled:
                return {"enqueued": []}
            return {"enqueued": services.scheduler().tick()}


def _seconds_left(context: Any) -> float:
    """Seconds before Lambda stops this invocation (infinite without a Lambda context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return float("inf") if remaining is None else remaining() / 1000.0


def _request_id(context: Any) -> str:
    return str(getattr(context, "aws_request_id", "") or "-")


# --------------------------------------------------------------------------- entry points

_runtime: LambdaRuntime | None = None


def runtime() -> LambdaRuntime:
    """This container's :class:`LambdaRuntime`, built from ``os.environ`` on first use."""
    global _runtime  # noqa: PLW0603  (one per container, by design)
    if _runtime is None:
        _runtime = LambdaRuntime()
    return _runtime


def reset_runtime() -> None:
    """Forget this container's runtime (tests start each case from a fresh one)."""
    global _runtime  # noqa: PLW0603
    _runtime = None


def discord_handler(event: MutableMapping[str, Any], context: Any) -> dict[str, Any]:
    """``POST /discord`` behind API Gateway (function ``valine-orchestrator-discord-*``)."""
    return runtime().http(event, context, with_secret=False)


def github_handler(event: MutableMapping[str, Any], context: Any) -> dict[str, Any]:
    """``POST /github/webhook`` behind API Gateway (``valine-orchestrator-github-*``)."""
    return runtime().http(event, context, with_secret=True)


def worker_handler(event: MutableMapping[str, Any], context: Any) -> dict[str, Any]:
    """An SQS batch of jobs; answers ``{"batchItemFailures": [...]}``."""
    return runtime().work(event, context)


def outbox_handler(event: MutableMapping[str, Any], context: Any) -> dict[str, Any]:
    """A DynamoDB stream batch of the job outbox (``valine-orchestrator-outbox-*``):
    each new job is sent to the SQS job queue; answers ``{"batchItemFailures": [...]}``."""
    return runtime().forward(event, context)


def reconcile_handler(event: MutableMapping[str, Any], context: Any) -> dict[str, Any]:
    """The scheduled reconcile of the active run against GitHub (every 5 minutes), or,
    for the event ``{"valine": "schedule"}`` (every minute), the ``[schedule]`` tick."""
    if isinstance(event, Mapping) and event.get("valine") == "schedule":
        return runtime().schedule(event, context)
    return runtime().reconcile(event, context)
