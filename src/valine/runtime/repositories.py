"""The repositories a deployment serves, and the routing of work to each one's use cases.

``GITHUB_REPOSITORY`` alone is a registry of one (the top-level rules). With
``[[repositories]]`` in ``valine.toml`` each entry is served with its merged rules;
``GITHUB_REPOSITORY``, when set, comes first (an entry of the same name gives it its
channel and overrides, else it has the top-level rules), so a deployment that adds
repositories keeps its first one -- the one an older job without a repository goes to.

Every job a repository's use cases enqueue carries ``"repo"`` (:class:`RepositoryQueue`),
so :func:`route_jobs` hands it to that repository's use cases; a webhook delivery's job
goes by the payload's ``repository.full_name``; the periodic reconcile and the schedule's
slots, which name no repository, run for every one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from valine.core.records import Record
from valine.logs import get_logger
from valine.queue.delegate import LeaseDelegate

if TYPE_CHECKING:
    from valine.core.policy import Policy, Rules
    from valine.ports import JobQueue
    from valine.runtime.config import Settings

log = get_logger("valine.runtime")

#: The payload key naming the repository a job belongs to.
REPO_KEY = "repo"


class Repository(Record):
    """One served repository: ``owner/name``, its channel, installation and rules."""

    name: str
    channel_id: str | None
    installation_id: str | None
    policy: Policy


class Repositories:
    """The served repositories in order (the first is the default), found by name or channel."""

    def __init__(self, entries: Sequence[Repository]) -> None:
        self._entries = tuple(entries)
        self._by_name = {r.name.lower(): r for r in self._entries}
        self._by_channel = {r.channel_id: r for r in self._entries if r.channel_id}

    @classmethod
    def of(cls, settings: Settings, rules: Rules) -> Repositories:
        """The registry of ``GITHUB_REPOSITORY`` (first, if set) and ``[[repositories]]``."""
        listed = [
            Repository(r.name, r.channel_id, r.installation_id, r.policy)
            for r in rules.repositories
        ]
        legacy = settings.github_repository
        if not legacy:
            return cls(listed)
        same = [r for r in listed if r.name.lower() == legacy.lower()]
        first = (
            same[0]
            if same
            else Repository(legacy, None, settings.github_app_installation_id, rules.policy)
        )
        if first.installation_id is None and settings.github_app_installation_id:
            first = first._replace(installation_id=settings.github_app_installation_id)
        return cls([first, *(r for r in listed if r.name.lower() != legacy.lower())])

    def __iter__(self) -> Iterator[Repository]:
        """The repositories, the default first."""
        return iter(self._entries)

    def __len__(self) -> int:
        """How many repositories are served."""
        return len(self._entries)

    @property
    def default(self) -> Repository | None:
        """The first repository (``GITHUB_REPOSITORY`` if set), None if none is served."""
        return self._entries[0] if self._entries else None

    @property
    def names(self) -> list[str]:
        """``owner/name`` of every repository, the default first."""
        return [r.name for r in self._entries]

    def find(self, name: str | None) -> Repository | None:
        """The served repository named ``name`` (GitHub's names ignore case), or None."""
        return self._by_name.get(name.lower()) if name else None

    def serves(self, name: str | None) -> bool:
        """True if ``name`` is a served repository (the webhook's predicate)."""
        return self.find(name) is not None

    def for_channel(self, channel_id: str | None) -> Repository | None:
        """The repository whose ``channel_id`` is ``channel_id``, or None."""
        return self._by_channel.get(channel_id) if channel_id else None

    def installations(self) -> dict[str, str]:
        """The App installation of each repository that names one, by lower-case name."""
        return {r.name.lower(): r.installation_id for r in self._entries if r.installation_id}


class RepositoryQueue(LeaseDelegate):
    """A :class:`~valine.ports.JobQueue` that adds its repository to every job it enqueues."""

    def __init__(self, queue: JobQueue, repo: str) -> None:
        self._queue = queue
        self.repo = repo

    @property
    def inner(self) -> JobQueue:
        """The shared queue every job goes to."""
        return self._queue

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
    ) -> bool:
        """Enqueue ``payload`` with ``"repo"`` added (see :meth:`JobQueue.enqueue`)."""
        tagged = {**payload, REPO_KEY: self.repo}
        return self._queue.enqueue(kind, tagged, dedupe_key=dedupe_key, delay=delay)

    def claim(self, key: str, ttl: float, limit: int = 1) -> bool:
        """See :meth:`JobQueue.claim`."""
        return self._queue.claim(key, ttl, limit)


Handler = Callable[[dict[str, Any]], None]


def job_repository(kind: str, payload: Mapping[str, Any], github_event_kind: str) -> str | None:
    """The repository a job names: its ``"repo"``, or a delivery's ``repository.full_name``."""
    repo = payload.get(REPO_KEY)
    if isinstance(repo, str) and repo:
        return repo
    if kind == github_event_kind:
        inner = payload.get("payload")
        repository = inner.get("repository") if isinstance(inner, Mapping) else None
        name = repository.get("full_name") if isinstance(repository, Mapping) else None
        return name if isinstance(name, str) else None
    return None


def route_jobs(
    tables: Mapping[str, Mapping[str, Handler]],
    default: str | None,
    *,
    every_repository: frozenset[str],
    github_event_kind: str,
) -> dict[str, Handler]:
    """One handler per job kind that runs the job with its repository's handler.

    ``tables`` holds each repository's handlers by lower-case name. A job naming no
    repository goes to ``default`` (an older job: an upgrade loses nothing), except the
    kinds in ``every_repository`` (the reconcile, the schedule's slots), which run for
    every repository -- each one even if another fails; the first failure is raised
    after. A job of a repository no longer served is dropped with a warning; while no
    repository is configured at all (``tables`` has only the blank ``""`` entry: a
    deployment being tried out) it is dropped at INFO. Such a deployment's webhook no
    longer queues deliveries (it answers them without a write); what reaches here was
    queued before that, and a backlog of it does not flood the log.
    """
    kinds = {kind for table in tables.values() for kind in table}
    drop_level = logging.INFO if set(tables) == {""} else logging.WARNING

    def handler(kind: str) -> Handler:
        def handle(payload: dict[str, Any]) -> None:
            repo = job_repository(kind, payload, github_event_kind)
            if repo is None and kind in every_repository:
                _run_everywhere(kind, payload, tables)
                return
            name = (repo or default or "").lower()
            table = tables.get(name)
            if table is None:
                log.log(
                    drop_level, "%s job of %s dropped: the repository is not served", kind, repo
                )
                return
            table[kind](payload)

        return handle

    return {kind: handler(kind) for kind in kinds}


def _run_everywhere(
    kind: str, payload: dict[str, Any], tables: Mapping[str, Mapping[str, Handler]]
) -> None:
    failed: Exception | None = None
    for name, table in tables.items():
        try:
            table[kind](payload)
        except Exception as exc:
            log.warning("%s of %s failed: %s", kind, name, exc)
            failed = failed or exc
    if failed is not None:
        raise failed


def route_dead_letter(
    hooks: Mapping[str, Callable[[str, dict[str, Any], str], None]],
    default: str | None,
    github_event_kind: str,
) -> Callable[[str, dict[str, Any], str], None]:
    """The dead-letter hook that runs the job's repository's hook (as :func:`route_jobs`)."""

    def on_dead_letter(kind: str, job: dict[str, Any], error: str) -> None:
        repo = job_repository(kind, job, github_event_kind)
        hook = hooks.get((repo or default or "").lower())
        if hook is not None:
            hook(kind, job, error)

    return on_dead_letter
