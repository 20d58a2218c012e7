"""Builds the adapters and the app from settings, once, on first use.

Everything here is lazy so a runtime pays only for what a request needs: the Lambda
cold start of a PING must not open a database or build an AWS client.
"""

from __future__ import annotations

import time
from _thread import allocate_lock  # threading.Lock itself; threading costs a PING ~1 ms
from functools import cached_property
from typing import TYPE_CHECKING, Any

from valine.app import App, Route
from valine.core.errors import ConfigurationError
from valine.discord.interactions import DiscordEndpoint
from valine.http import Deferred, Request, Response, json_response
from valine.logs import get_logger
from valine.runtime.config import Settings

if TYPE_CHECKING:
    from collections.abc import Collection

    from valine.core.commands import Command, Need
    from valine.core.policy import Policy, Rules
    from valine.core.replies import Answer
    from valine.discord.interactions import Interaction
    from valine.github.webhooks import GitHubWebhookEndpoint
    from valine.infra.aws import TableNames
    from valine.infra.sqlite import Database
    from valine.ports import Clock, Discord, GitHub, JobQueue, RunStore
    from valine.runtime.repositories import Repositories, Repository
    from valine.runtime.scheduler import Scheduler
    from valine.usecases import Orchestrator

log = get_logger("valine.runtime")
#: Guards the building of AWS clients (one session and one client per service).
_AWS_LOCK = allocate_lock()
#: How long an interaction id is remembered: past it, its timestamp is out of the
#: 5-minute replay window anyway.
SEEN_TTL = 900.0


class Services:
    """The store, queue, endpoints and app of one process, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def database(self) -> Database:
        """The one SQLite file of the embedded store and queue (one writer lock, one WAL)."""
        from valine.infra.sqlite import Database, path_from_url

        url = self.settings.store_url
        if not url.startswith("sqlite:///"):
            raise ConfigurationError(f"VALINE_STORE={url}: only a sqlite:/// store has a file")
        return Database(path_from_url(url))

    @cached_property
    def store(self) -> RunStore:
        """The run store named by ``VALINE_STORE``: SQLite, or DynamoDB (``dynamodb://``)."""
        if self.uses_dynamodb:
            from valine.store.dynamodb import DynamoRunStore

            names = self.aws_table_names
            return DynamoRunStore(
                self.aws_client("dynamodb"),
                runs_table=names.runs,
                audit_table=names.audit,
            )
        from valine.store.sqlite import SqliteRunStore

        return SqliteRunStore(self.database)

    @cached_property
    def queue(self) -> JobQueue:
        """The job queue: the durable SQLite queue beside a SQLite store, SQS beside DynamoDB.

        On AWS the queue is ``VALINE_QUEUE_URL`` (dead letters: ``VALINE_DEAD_LETTER_URL``)
        and its dedupe keys live in the DynamoDB table ``VALINE_DEDUPE_TABLE``. With
        ``VALINE_OUTBOX_TABLE`` (the Discord function) jobs are enqueued as items of that
        table, forwarded to SQS by its stream (:mod:`valine.queue.outbox`).
        """
        if self.uses_dynamodb:
            from valine.queue.sqs import DynamoDedupe, SqsJobQueue

            s = self.settings
            for name, value in (
                ("VALINE_QUEUE_URL", s.queue_url),
                ("VALINE_DEAD_LETTER_URL", s.dead_letter_url),
            ):
                if not value:
                    raise ConfigurationError(
                        f"{name} is not set: a dynamodb:// store works with SQS queues"
                    )
            assert s.queue_url and s.dead_letter_url  # for the type checker
            queue_url, dead_letter_url = s.queue_url, s.dead_letter_url
            dedupe = DynamoDedupe(self.aws_client("dynamodb"), self.aws_table_names.dedupe)

            def sqs_queue() -> SqsJobQueue:
                return SqsJobQueue(
                    self.aws_client("sqs"),
                    queue_url,
                    dead_letter_url=dead_letter_url,
                    dedupe=dedupe,
                )

            if s.outbox_table:
                # Jobs go to the outbox table (its stream feeds SQS): no SQS client here
                # unless a job is leased, acked or retried.
                from valine.queue.outbox import OutboxJobQueue

                return OutboxJobQueue(
                    self.aws_client("dynamodb"), s.outbox_table, dedupe=dedupe, sqs_queue=sqs_queue
                )
            return sqs_queue()
        from valine.queue.sqlite import SqliteJobQueue

        return SqliteJobQueue(self.database)

    def queue_description(self) -> str:
        """Which queue is in use, for /healthz."""
        if self.uses_dynamodb:
            return f"sqs {self.settings.queue_url} (dedupe: {self.aws_table_names.dedupe})"
        return f"sqlite-queue {self.settings.store_url}"

    @property
    def uses_dynamodb(self) -> bool:
        """True when ``VALINE_STORE`` is ``dynamodb://<table-prefix>`` (the AWS runtime)."""
        return self.settings.store_url.startswith("dynamodb://")

    @cached_property
    def aws_table_names(self) -> TableNames:
        """The DynamoDB tables: ``<prefix>-runs`` ..., each overridable by its variable."""
        from valine.infra.aws import TableNames

        prefix = self.settings.store_url.removeprefix("dynamodb://").strip("/")
        if not prefix:
            raise ConfigurationError("VALINE_STORE=dynamodb://<table-prefix> needs a prefix")
        default = TableNames.from_prefix(prefix)
        s = self.settings
        return TableNames(
            runs=s.runs_table or default.runs,
            audit=s.audit_table or default.audit,
            dedupe=s.dedupe_table or default.dedupe,
        )

    def aws_client(self, service: str) -> Any:
        """A low-level AWS client of ``service`` (what ``boto3.client`` returns), one per
        process, built on first use.

        Every client comes from one botocore session, so the second and later clients
        reuse the loaded endpoint and model data. Credentials, region and endpoints follow
        the usual resolution (``AWS_ENDPOINT_URL_<SERVICE>``: the tests point them at
        loopback).

        Once the process's first client is built, the heap is frozen (``gc.freeze``):
        botocore's modules and the service model it just loaded live as long as the
        process, and every full collection would walk them again -- on a cold start that
        was one collection of ~100 M instructions, 8 % of a deferred command
        (docs/benchmarks.md). Objects are still freed by reference counting; only cycles
        among what existed then are never collected, once per process
        (:func:`valine.infra.heap.freeze_once`).
        """
        with _AWS_LOCK:
            client = self._aws_clients.get(service)
            if client is None:
                from valine.infra import heap
                from valine.infra.aws import client_config

                client = self._aws_session.create_client(service, config=client_config())
                self._aws_clients[service] = client
                heap.freeze_once()
            return client

    @cached_property
    def _aws_session(self) -> Any:
        # botocore's session, not boto3's: the clients are botocore's either way, and
        # importing boto3 also imports s3transfer and its resource layer, which a cold
        # start pays for (docs/benchmarks.md, "Cold start of the Discord Lambda").
        import botocore.session

        return botocore.session.get_session()

    @cached_property
    def _aws_clients(self) -> dict[str, Any]:
        return {}

    def app(self) -> App:
        """The HTTP app with every endpoint: /discord, /github/webhook, /healthz."""
        s = self.settings
        return App(
            {
                "/discord": Route("POST", self.discord_endpoint(), int(s.discord_max_body)),
                "/github/webhook": Route(
                    "POST", self._github_webhook, int(s.github_max_body), self._github_prepare
                ),
                "/healthz": Route("GET", self.healthz),
                "/metrics": Route("GET", self.metrics_endpoint),
            }
        )

    def _github_webhook(self, request: Request) -> Response:
        return self.github_endpoint(request)

    def _github_prepare(self, request: Request) -> Response | Deferred:
        return self.github_endpoint.prepare(request)

    @cached_property
    def github_endpoint(self) -> GitHubWebhookEndpoint:
        """``POST /github/webhook``, built on its first request (a PING never needs it)."""
        from valine.github.webhooks import GitHubWebhookEndpoint

        return GitHubWebhookEndpoint(
            self.settings.github_webhook_secret,
            lambda: self.queue,
            unserved=self.unserved,
        )

    def serves(self, repository: str | None) -> bool:
        """True if ``repository`` (``owner/name``) is one this deployment serves."""
        return self.repositories.serves(repository)

    def unserved(self, repository: str | None) -> str | None:
        """Why a delivery of ``repository`` is not served (None: it is).

        Until a repository is configured at all none is: a delivery is verified, then
        answered 202 "no repository is served" and counted ``unserved``, with nothing
        written (``/healthz`` names the missing ``GITHUB_REPOSITORY``).
        """
        if self.serves(repository):
            return None
        return "repository not served" if len(self.repositories) else "no repository is served"

    def discord_endpoint(self) -> DiscordEndpoint:
        """``POST /discord``, verifying with ``DISCORD_PUBLIC_KEY`` when it is set."""
        verifier = None
        if self.settings.discord_public_key:
            from valine.discord.verify import InteractionVerifier

            verifier = InteractionVerifier(self.settings.discord_public_key)
        return DiscordEndpoint(verifier, self)

    @cached_property
    def rules(self) -> Rules:
        """The rules file ``VALINE_CONFIG`` or ``./valine.toml`` (defaults if absent)."""
        from valine.runtime.config import read_rules

        return read_rules(self.settings.config_path)

    @property
    def policy(self) -> Policy:
        """The top-level workflow rules (the Discord scope, the schedule, the defaults)."""
        return self.rules.policy

    @cached_property
    def repositories(self) -> Repositories:
        """The served repositories: ``GITHUB_REPOSITORY`` first, then ``[[repositories]]``."""
        from valine.runtime.repositories import Repositories

        return Repositories.of(self.settings, self.rules)

    def missing(self) -> list[str]:
        """The settings the workflow needs that are not set (a ``[[repositories]]``
        entry stands for ``GITHUB_REPOSITORY``)."""
        missing = self.settings.missing()
        if len(self.repositories):
            missing = [m for m in missing if m != "GITHUB_REPOSITORY"]
        return missing

    def unmet(self, needs: Collection[Need]) -> list[str]:
        """The settings missing for a command's ``needs`` (see :meth:`missing`)."""
        lacking = self.settings.unmet(needs)
        if len(self.repositories):
            lacking = [m for m in lacking if m != "GITHUB_REPOSITORY"]
        return lacking

    @cached_property
    def clock(self) -> Clock:
        """The use cases' clock: the wall clock."""
        return SystemClock()

    @property
    def use_case_queue(self) -> JobQueue:
        """The queue the use cases enqueue on: this process's queue."""
        return self.queue

    @cached_property
    def orchestrators(self) -> dict[str, Orchestrator]:
        """Each served repository's use cases, by lower-case ``owner/name``, the default first.

        They share the store, the queue (each tags its jobs with its repository) and the
        clients; each has its repository's merged rules.
        """
        return {r.name.lower(): self._orchestrator(r) for r in self.repositories}

    @cached_property
    def orchestrator(self) -> Orchestrator:
        """The default repository's use cases (one over no repository if none is served)."""
        default = self.repositories.default
        if default is None:
            return self._blank_orchestrator
        return self.orchestrators[default.name.lower()]

    def orchestrator_for(self, repo: str | None) -> Orchestrator | None:
        """The use cases of the served repository ``repo``, or None."""
        found = self.repositories.find(repo)
        return self.orchestrators[found.name.lower()] if found else None

    @cached_property
    def _blank_orchestrator(self) -> Orchestrator:
        """The use cases of no repository: with none served, the ones that name what is
        missing; with several, those of an interaction that names none of them."""
        return self._build_orchestrator("", self.policy, None)

    def _orchestrator(self, repository: Repository) -> Orchestrator:
        from valine.runtime.repositories import RepositoryQueue

        queue = RepositoryQueue(self.use_case_queue, repository.name)
        return self._build_orchestrator(repository.name, repository.policy, queue)

    @cached_property
    def _metered_store(self) -> RunStore:
        from valine.store.metered import MeteredRunStore

        return MeteredRunStore(self.store)

    def _build_orchestrator(
        self, repo: str, policy: Policy, queue: JobQueue | None
    ) -> Orchestrator:
        from valine.usecases import Orchestrator

        return Orchestrator(
            repo=repo,
            policy=policy,
            store=self._metered_store,
            queue=queue if queue is not None else self.use_case_queue,
            github=lambda: self.github,
            discord=lambda: self.discord,
            clock=self.clock,
            entropy=_entropy,
            web_url=web_url(self.settings.github_api_url),
            notify_window=float(self.settings.notify_window),
            served=tuple(self.repositories.names),
            channels={r.name.lower(): r.channel_id for r in self.repositories if r.channel_id},
        )

    @cached_property
    def github(self) -> GitHub:
        """The GitHub client (token or App auth), built on first use."""
        from valine.runtime.clients import github_client

        return github_client(self.settings, repositories=self.repositories)

    @cached_property
    def discord(self) -> Discord:
        """The Discord client, built on first use."""
        from valine.runtime.clients import discord_client

        return discord_client(self.settings)

    def answer_command(self, interaction: Interaction, command: Command) -> Answer:
        """Hand a verified slash command to its repository's use cases' router."""
        options = command.options
        use_cases = self.orchestrator_of(
            interaction,
            run_id=str(options.get("run_id") or ""),
            repository=str(options.get("repository") or ""),
        )
        return use_cases.answer_command(interaction.fields(), command, self.unmet)

    def press_button(self, interaction: Interaction, custom_id: str) -> Answer:
        """Hand a verified button press to its run's repository's router."""
        run_id = custom_id.split(":")[1] if custom_id.count(":") else ""
        use_cases = self.orchestrator_of(interaction, run_id=run_id)
        return use_cases.press_button(interaction.fields(), custom_id, self.unmet)

    def autocomplete(self, interaction: Interaction, focused: str, value: str) -> list[str]:
        """Suggestions for a ``run_id``, ``issue`` or ``repository`` option, from the use
        cases of the channel's repository (its runs first)."""
        options = interaction.data.get("options") or []
        use_cases = self.orchestrator_of(interaction)
        return use_cases.autocomplete(interaction.fields(), focused, value, options)

    def orchestrator_of(
        self, interaction: Interaction, *, run_id: str = "", repository: str = ""
    ) -> Orchestrator:
        """The use cases an interaction goes to: the repository it names (``/plan``'s
        ``repository`` option), else its run's (a well-formed ``run_id`` that is stored),
        else its channel's (``channel_id`` of ``[[repositories]]``; a thread counts as its
        channel). With one repository (or none) that one's, wherever the interaction is.

        With several, an interaction that none of these names goes to use cases of no
        repository, which answer ``/status`` and ``/help`` for every one and refuse the
        rest, naming the served repositories and where each is planned (after the server
        and rate checks, as every command) -- never the first repository by default. A
        named repository that is not served is refused by the channel's use cases.
        """
        if len(self.repositories) < 2:
            return self.orchestrator
        named = self.orchestrator_for(repository) if repository else None
        if named is not None:
            return named
        if run_id and not repository:
            stored, owner = self._run_repository(run_id)
            if stored:  # a run of a repository no longer served: refused, left alone
                return owner or self._blank_orchestrator
        for channel_id in (interaction.channel_id, interaction.parent_channel_id):
            channel = self.repositories.for_channel(channel_id)
            if channel is not None:
                return self.orchestrators[channel.name.lower()]
        return self._blank_orchestrator

    def _run_repository(self, run_id: str) -> tuple[bool, Orchestrator | None]:
        """Whether the run ``run_id`` is stored (one read), and its repository's use cases
        (None when that repository is not served)."""
        from valine.core.errors import NotFound
        from valine.usecases.commanding import bad_run_id

        if bad_run_id(run_id) is not None:
            return False, None
        try:
            return True, self.orchestrator_for(self.store.get_run(run_id).repo)
        except NotFound:
            return False, None

    def first_time(self, interaction: Interaction) -> bool:
        """True the first time this interaction id is seen (remembered SEEN_TTL seconds)."""
        return self.queue.claim(f"seen-interaction:{interaction.id}", SEEN_TTL)

    def healthz(self, request: Request) -> Response:
        """``GET /healthz``: which store and queue are in use, which settings are missing."""
        return json_response(
            200,
            {
                "status": "ok",
                "store": self.settings.store_url,
                "queue": self.queue_description(),
                "queue_depth": self.queue.depth(),
                "missing_settings": self.missing(),
            },
        )

    def metrics_endpoint(self, request: Request) -> Response:
        """``GET /metrics``: this process's metrics in the Prometheus text format."""
        from valine import metrics

        self.measure_active_run()
        sink = metrics.current()
        text = sink.render() if isinstance(sink, metrics.Registry) else ""
        return Response(200, text.encode(), (("content-type", PROMETHEUS_TEXT),))

    def measure_active_run(self) -> None:
        """Set the active-run-age gauge (the stranded-run alarm watches it) to the oldest
        active run's age across the repositories; never raises."""
        from valine import metrics
        from valine.core.measures import active_run_age

        if not len(self.repositories):
            return
        now = self.orchestrator.clock.now()
        try:
            ages = [active_run_age(self.store.active_run(r), now) for r in self.repositories.names]
        except Exception:
            log.warning("could not read the active runs for the metrics", exc_info=True)
            return
        metrics.gauge("active_run_age", max(ages))

    def scheduler(self) -> Scheduler:
        """The ``[schedule]`` scheduler over this process's queue and the use cases' clock:
        with several repositories each one's own slots (its merged ``[schedule]``), each
        job naming it; with one, its schedule's slots as ever (the top level's while none
        is served)."""
        from valine.runtime.scheduler import Scheduler

        clock = self.orchestrator.clock.now
        if len(self.repositories) < 2:
            only = self.repositories.default
            schedule = only.policy.schedule if only else self.policy.schedule
            return Scheduler(schedule, self.queue, clock)
        own = {r.name: r.policy.schedule for r in self.repositories}
        return Scheduler(self.policy.schedule, self.queue, clock, repositories=own)

    @property
    def scheduled(self) -> bool:
        """True if a ``[schedule]`` posts something (a repository's, or the top level's
        while none is served)."""
        if not len(self.repositories):
            return bool(self.policy.schedule.entries)
        return any(r.policy.schedule.entries for r in self.repositories)

    def job_handlers(self) -> dict[str, Any]:
        """The background job handlers by job kind, each running a job with its
        repository's use cases (:func:`jobs_of` each one's; the reconcile, for every
        repository, also measures)."""
        from valine.runtime.repositories import route_jobs
        from valine.usecases import GITHUB_EVENT, RECONCILE, SCHEDULE

        tables = {name: jobs_of(o) for name, o in self.orchestrators.items()}
        if not tables:
            tables = {"": jobs_of(self.orchestrator)}
        default = self.repositories.default
        handlers = route_jobs(
            tables,
            default.name if default else "",
            every_repository=frozenset({RECONCILE, SCHEDULE}),
            github_event_kind=GITHUB_EVENT,
        )
        reconcile = handlers[RECONCILE]

        def reconcile_and_measure(payload: dict[str, Any]) -> None:
            try:
                reconcile(payload)
            finally:
                self.measure_active_run()

        handlers[RECONCILE] = reconcile_and_measure
        return handlers

    def on_dead_letter(self, kind: str, job: dict[str, Any], error: str) -> None:
        """Tell the people waiting on a job that failed for good (its repository's hook)."""
        from valine.runtime.repositories import route_dead_letter
        from valine.usecases import GITHUB_EVENT

        hooks = {name: o.on_dead_letter for name, o in self.orchestrators.items()}
        default = self.repositories.default
        if not hooks:
            hooks, default = {"": self.orchestrator.on_dead_letter}, None
        route_dead_letter(hooks, default.name if default else "", GITHUB_EVENT)(kind, job, error)

    def reconcile(self) -> int:
        """Reconcile every repository (each even if another fails); pull requests read."""
        read, failed = 0, None
        for name, orchestrator in self.orchestrators.items():
            try:
                read += orchestrator.reconcile()
            except Exception as exc:
                log.warning("the reconcile of %s failed: %s", name, exc)
                failed = failed or exc
        if failed is not None:
            raise failed
        return read


def jobs_of(orchestrator: Orchestrator) -> dict[str, Any]:
    """Every job handler of one repository's use cases: the job kinds they registered,
    and the queued webhook delivery, which ``github/`` reads into a domain event for
    ``Orchestrator.on_delivery`` (use cases never read a webhook payload)."""
    from valine.github import events
    from valine.usecases import GITHUB_EVENT

    return {
        **orchestrator.job_handlers(),
        GITHUB_EVENT: events.job_handler(orchestrator.on_delivery),
    }


#: The Prometheus text exposition format's content type.
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


def _entropy() -> str:
    import secrets

    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"  # no look-alikes (l/1, o/0)
    return "".join(secrets.choice(alphabet) for _ in range(6))


def web_url(api_url: str) -> str:
    """The web address matching an API address (github.com, or an Enterprise host)."""
    api_url = api_url.rstrip("/")
    if api_url == "https://api.github.com":
        return "https://github.com"
    return api_url.removesuffix("/api/v3")
