"""Builds the adapters and the app from settings, once, on first use.

Everything here is lazy so a runtime pays only for what a request needs: the Lambda
cold start of a PING must not open a database or build an AWS client.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from valine.app import App, Route
from valine.core.commands import Command
from valine.core.errors import ConfigurationError
from valine.discord.interactions import DiscordEndpoint, Interaction, ephemeral
from valine.github.webhooks import JOB_KIND as GITHUB_EVENT_JOB
from valine.github.webhooks import GitHubWebhookEndpoint
from valine.http import Request, Response, json_response
from valine.ports import JobQueue, RunStore
from valine.runtime.config import Settings

log = logging.getLogger("valine.runtime")

#: How long a processed delivery id is remembered (GitHub redeliveries are manual).
DELIVERY_TTL_SECONDS = 7 * 24 * 3600

#: Which settings each command needs before it can do anything.
_COMMAND_NEEDS = {
    "plan": ("GITHUB_REPOSITORY", "GITHUB_TOKEN", "DISCORD_APPLICATION_ID"),
    "approve": ("GITHUB_REPOSITORY", "GITHUB_TOKEN"),
    "ship": ("GITHUB_REPOSITORY", "GITHUB_TOKEN"),
    "cancel": ("GITHUB_REPOSITORY", "GITHUB_TOKEN"),
}


class Services:
    """The store, queue, endpoints and app of one process, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> RunStore:
        """The run store named by ``VALINE_STORE``."""
        url = self.settings.store_url
        if url.startswith("sqlite:///"):
            from valine.store.sqlite import SqliteRunStore

            return SqliteRunStore.from_url(url)
        raise ConfigurationError(f"VALINE_STORE={url}: only sqlite:/// stores exist so far")

    @cached_property
    def queue(self) -> JobQueue:
        """The job queue: the durable SQLite queue beside a SQLite store."""
        url = self.settings.store_url
        if url.startswith("sqlite:///"):
            from valine.queue.sqlite import SqliteJobQueue

            return SqliteJobQueue.from_url(url)
        raise ConfigurationError(f"VALINE_STORE={url}: no job queue for this store yet")

    def queue_description(self) -> str:
        """Which queue is in use, for /healthz."""
        return f"sqlite-queue {self.settings.store_url}"

    def app(self) -> App:
        """The HTTP app with every endpoint of DESIGN §7."""
        s = self.settings
        return App(
            {
                "/discord": Route("POST", self.discord_endpoint(), int(s.discord_max_body)),
                "/github/webhook": Route(
                    "POST",
                    GitHubWebhookEndpoint(s.github_webhook_secret, lambda: self.queue),
                    int(s.github_max_body),
                ),
                "/healthz": Route("GET", self.healthz),
            }
        )

    def discord_endpoint(self) -> DiscordEndpoint:
        """``POST /discord``, verifying with ``DISCORD_PUBLIC_KEY`` when it is set."""
        verifier = None
        if self.settings.discord_public_key:
            from valine.discord.verify import InteractionVerifier

            verifier = InteractionVerifier(self.settings.discord_public_key)
        return DiscordEndpoint(verifier, self.answer_command)

    def answer_command(self, interaction: Interaction, command: Command) -> dict[str, Any]:
        """Answer a verified command (the workflow itself is not built yet)."""
        missing = [
            m
            for m in self.settings.missing()
            for need in _COMMAND_NEEDS.get(command.name, ())
            if m.startswith(need)
        ]
        if missing:
            names = ", ".join(dict.fromkeys(missing))
            return ephemeral(
                f"`/{command.name}` cannot run: the service is missing {names}. "
                "Set it in the environment or .env and restart."
            )
        return ephemeral(
            f"`/{command.name}` is not available yet: the workflow "
            "(plan, approve, ship, status, cancel) is still being built."
        )

    def healthz(self, request: Request) -> Response:
        """``GET /healthz``: which store and queue are in use, which settings are missing."""
        return json_response(
            200,
            {
                "status": "ok",
                "store": self.settings.store_url,
                "queue": self.queue_description(),
                "queue_depth": self.queue.depth(),
                "missing_settings": self.settings.missing(),
            },
        )

    def job_handlers(self) -> dict[str, Any]:
        """The background job handlers by job kind."""
        return {GITHUB_EVENT_JOB: self.process_github_event}

    def process_github_event(self, job: dict[str, Any]) -> None:
        """Process one accepted delivery (for now: record it as processed)."""
        import time

        now = time.time()
        if self.store.record_delivery(job["delivery_id"], now + DELIVERY_TTL_SECONDS, now):
            log.info("processed %s delivery %s", job["event"], job["delivery_id"])
