"""The small interfaces between the use cases and the outside world.

Each port has one adapter per runtime (SQLite or DynamoDB for ``RunStore``; the SQLite
queue or SQS for ``JobQueue``; real HTTP clients or the tests' stand-ins for ``GitHub``
and ``Discord``). Adapters raise the domain errors of :mod:`valine.core.errors`, never
their library's exceptions. Contract test suites in ``tests/contract`` run unchanged
against every adapter of a port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from valine.core.errors import ValineError

if TYPE_CHECKING:
    # Named in signatures only: importing the ports loads none of the domain's
    # dataclass modules (a Discord PING or a deferred command imports this module).
    from valine.core.checks import CheckPicture
    from valine.core.models import Issue, PullRequest, Run, WorkflowRun
    from valine.core.replies import Message


class Clock(Protocol):
    """Wall-clock time, passed in so the core and the tests control it."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One attempted action: who, what, on which run, the outcome, and when."""

    at: float
    actor: str
    action: str
    outcome: str
    run_id: str | None = None
    detail: str | None = None


class RunStore(Protocol):
    """Durable state: runs (with their tasks) and the audit trail.

    Writes are optimistic: :meth:`save_run` succeeds only if the stored version still is
    the one the caller read, and raises :class:`~valine.core.errors.RunConflict` if not.
    """

    def create_run(self, run: Run) -> Run:
        """Store a new run; returns it with ``version`` 1.

        Raises ``ActiveRunExists`` if ``run`` is active and its repository already has an
        active run, and ``RunConflict`` if ``run.run_id`` is taken.
        """
        ...

    def get_run(self, run_id: str) -> Run:
        """The stored run; raises ``NotFound``."""
        ...

    def save_run(self, run: Run) -> Run:
        """Replace the stored run if its version is still ``run.version``.

        Returns the run with ``version + 1``. Raises ``RunConflict`` when the stored
        version differs, and ``NotFound`` when there is no such run. A run that leaves
        the active states releases its repository's lock in the same write.
        """
        ...

    def active_run(self, repo: str, *, likely_none: bool = False) -> Run | None:
        """The repository's one active (non-terminal) run, if any. Uses an index.

        ``likely_none``: the caller expects none (``/plan``). A store that commits an
        interaction's writes in one transaction may then answer None without reading,
        and make that transaction conditional on it: if a run is active after all, the
        transaction is cancelled and the interaction answered again, reading it.
        """
        ...

    def recent_runs(self, repo: str | None = None, limit: int = 10) -> Sequence[Run]:
        """Runs by most recent creation first, optionally of one repository. Uses an index."""
        ...

    def recent_run_ids(self, repo: str | None = None, limit: int = 10) -> Sequence[str]:
        """The ids of :meth:`recent_runs`, in its order, read from the index alone."""
        ...

    def append_audit(self, entry: AuditEntry) -> None:
        """Add one entry to the audit trail."""
        ...

    def audit_trail(self, run_id: str | None = None, limit: int = 50) -> Sequence[AuditEntry]:
        """Audit entries, newest first, optionally of one run."""
        ...


#: Job kind of a verified, deduplicated GitHub delivery waiting to be processed: the
#: webhook endpoint enqueues it, the tracking use case handles it.
GITHUB_EVENT_JOB = "github_event"


@dataclass(frozen=True, slots=True)
class Job:
    """A unit of background work taken from a :class:`JobQueue`."""

    job_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_token: str = field(repr=False)
    last_error: str | None = None
    #: The key the job was enqueued with (released if the job is dead-lettered).
    dedupe_key: str | None = field(default=None, repr=False)
    #: Epoch seconds before which the job must not run (a released job that SQS, whose
    #: delays stop at 15 minutes, handed out early); 0 when it may run at once.
    not_before: float = 0.0
    #: Epoch seconds of the first enqueue (kept across retries and releases); 0: unknown.
    enqueued_at: float = 0.0


class JobQueue(Protocol):
    """At-least-once background work: enqueue, lease, then ack or retry.

    A leased job is invisible to other workers until its visibility timeout passes; a
    worker that dies without acking lets the job run again after that. Handlers must be
    idempotent. After ``max_attempts`` failed attempts a job is dead-lettered, and its
    dedupe key is released: the work was not done, so enqueueing it again is allowed.
    """

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
    ) -> bool:
        """Add a job; False (and nothing added) if ``dedupe_key`` was already enqueued."""
        ...

    def lease(self, visibility_timeout: float) -> Job | None:
        """Take the next due job for ``visibility_timeout`` seconds, or None if none is due."""
        ...

    def ack(self, job: Job) -> None:
        """The job is done: remove it for good."""
        ...

    def retry(self, job: Job, error: str) -> bool:
        """The attempt failed: run it again after a backoff, or dead-letter it.

        Returns True if it will be retried, False if it was dead-lettered.
        """
        ...

    def extend(self, job: Job, visibility_timeout: float) -> bool:
        """Heartbeat: keep the leased ``job`` invisible for ``visibility_timeout`` more seconds.

        False (nothing changed) if the lease is no longer ``job``'s.
        """
        ...

    def release(self, job: Job, delay: float) -> bool:
        """Put the job back, due after ``delay`` seconds, *without* spending an attempt.

        For a job that must wait (a rate limit until its reset), not one that failed.
        False (nothing changed) if the lease is no longer ``job``'s.
        """
        ...

    def dead_letters(self, limit: int = 50) -> Sequence[Job]:
        """Jobs that failed ``max_attempts`` times, newest first."""
        ...

    def depth(self) -> int:
        """How many jobs are waiting or leased (not done, not dead)."""
        ...

    def claim(self, key: str, ttl: float, limit: int = 1) -> bool:
        """Count one use of ``key``, with no job; False once ``limit`` uses are counted.

        The count starts at the first use and lasts ``ttl`` seconds, then starts again.
        ``limit=1`` remembers a key (a replay is refused); a larger one is a rate limit.
        """
        ...


@dataclass(frozen=True, slots=True)
class IssueUpdate:
    """Changes to one issue, sent with others in one GraphQL mutation (node ids throughout)."""

    node_id: str
    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    comment: str | None = None
    close: bool = False


@dataclass(frozen=True, slots=True)
class IssueSnapshot:
    """An issue as GitHub has it now: label names, assignee logins, comment bodies."""

    labels: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RepositoryIds:
    """GraphQL node ids of a repository and of the labels and users the workflow uses."""

    repository: str
    labels: Mapping[str, str]
    users: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ReadyIssues:
    """What ``/plan`` reads: the ready issues and the node ids a run will need."""

    issues: tuple[Issue, ...]
    ids: RepositoryIds


@dataclass(frozen=True, slots=True)
class MergeResult:
    """A successful merge: the merge commit's SHA."""

    sha: str


class GitHub(Protocol):
    """The GitHub operations the workflow needs, one REST request each unless stated.

    Adapters raise ``GitHubUnavailable`` (network errors, 5xx and rate limits that
    outlast the retries) and :class:`GitHubError` subclasses for answers that retrying
    cannot change; never an HTTP library's exception.
    """

    def dispatch_workflow(
        self, repo: str, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> None:
        """Start a ``workflow_dispatch`` run of ``workflow`` (file name or id) on ``ref``."""
        ...

    def read_ready_issues(
        self, repo: str, label: str, labels: Sequence[str], logins: Sequence[str] = ()
    ) -> ReadyIssues:
        """Open issues carrying ``label`` and the node ids of the repository, of ``labels``
        and of ``logins``: one GraphQL query for up to 100 issues, one more per 100 beyond.

        Issues only (GraphQL's issues are never pull requests). An issue with more labels
        than one read returns is left out (a blocking label may be among the unread).
        A label or user that does not exist is left out of the ids.
        """
        ...

    def dispatch_deployment(
        self, repo: str, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> WorkflowRun | None:
        """Dispatch ``workflow`` asking for the run's details (``return_run_details``).

        The workflow run GitHub started, or None where GitHub does not return it (an
        older GitHub Enterprise Server: the dispatch is sent again without the option
        only when the first was refused as invalid, so nothing starts twice).
        """
        ...

    def workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
        """One GitHub Actions workflow run (``NotFound`` if there is none)."""
        ...

    def dispatched_runs(
        self, repo: str, workflow: str, branch: str, since: float
    ) -> Sequence[WorkflowRun]:
        """The ``workflow_dispatch`` runs of ``workflow`` on ``branch`` created since
        ``since`` (epoch seconds), oldest first; one request (up to 100)."""
        ...

    def repository_ids(
        self, repo: str, labels: Sequence[str], logins: Sequence[str] = ()
    ) -> RepositoryIds:
        """Node ids of the repository, of ``labels`` and of ``logins`` (one GraphQL query).

        A label or user that does not exist is left out of the mapping.
        """
        ...

    def create_labels(
        self, repo: str, repository_id: str, names: Sequence[str]
    ) -> Mapping[str, str]:
        """Create labels (one GraphQL mutation); their node ids by name."""
        ...

    def update_issues(
        self, repo: str, updates: Sequence[IssueUpdate], *, partial: bool = False
    ) -> Mapping[str, str]:
        """Apply every update in one GraphQL mutation, in order.

        A mutation is never re-sent after an ambiguous failure (a timeout or 5xx raises
        ``GitHubUnavailable`` with ``request_sent``): read the issues back and send only
        what is missing. With ``partial``, changes GitHub refused one by one are returned
        (error message by the node id of their issue) instead of raised.
        """
        ...

    def read_issue(self, repo: str, number: int) -> IssueSnapshot:
        """What an issue carries now: its labels, assignees and comments (the read-back)."""
        ...

    def enqueue_pull(self, repo: str, number: int, sha: str) -> None:
        """Add a pull request to its branch's merge queue, expecting head ``sha``."""
        ...

    def get_pull(self, repo: str, number: int) -> PullRequest:
        """One pull request (``NotFound`` if there is none)."""
        ...

    def pull_checks(
        self, repo: str, numbers: Sequence[int], *, merge_queue: bool = False
    ) -> Sequence[CheckPicture]:
        """Every check on the current head of each pull request in ``numbers`` (one request).

        One GraphQL query for all of them (up to 25 a request; more are further
        requests): each pull request's head commit, every check run of every
        check suite (the latest run of each name) and every commit status. A pull
        request that does not exist is left out; ``NotFound`` for an unknown repository.
        Judged by :func:`valine.core.checks.verdict`, the one rule for green. With
        ``merge_queue`` the same query also reads whether each pull request is merged
        and still in its merge queue (``CheckPicture.in_merge_queue``).
        """
        ...

    def merge_pull(self, repo: str, number: int, sha: str, method: str) -> MergeResult:
        """Merge only if the head is still ``sha``.

        Raises :class:`HeadMoved` (409), :class:`MergeQueueRequired` (405 on a branch
        that requires a merge queue) or :class:`NotMergeable` (other 405 / 422).
        """
        ...


class GitHubError(ValineError):
    """GitHub answered with an error that retrying will not change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message}")
        self.status = status
        self.message = message


class HeadMoved(GitHubError):
    """The pull request's head is no longer the SHA the checks passed on (409)."""


class MergeQueueRequired(GitHubError):
    """The base branch only accepts merges through its merge queue (405)."""


class NotMergeable(GitHubError):
    """GitHub refused the merge for another reason (conflicts, protection rules...)."""


#: Discord's JSON error codes the product acts on.
UNKNOWN_CHANNEL = 10003
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
ARCHIVED_THREAD = 50083
THREAD_ALREADY_CREATED = 160004
THREAD_LOCKED = 160005


class DiscordError(ValineError):
    """Discord answered with an error that retrying will not change."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(f"Discord answered {status}: {message}")
        self.status = status
        self.message = message
        self.code = code  # Discord's JSON error code, e.g. 50027 Invalid Webhook Token

    @property
    def refused(self) -> bool:
        """The bot lacks a permission there (403 / 50001 Missing Access or 50013 Missing
        Permissions): asking again will not help until someone grants it."""
        return self.status == 403 and self.code in (MISSING_ACCESS, MISSING_PERMISSIONS)


class Discord(Protocol):
    """The Discord operations the workflow needs.

    A ``message`` is a domain :class:`~valine.core.replies.Message` (text, cards,
    buttons); the adapter renders it. Adapters honour 429 ``retry_after`` and raise
    ``DiscordUnavailable`` after retries, :class:`DiscordError` otherwise.
    """

    def edit_original(self, application_id: str, token: str, message: Message) -> str:
        """Replace the original interaction response (token valid 15 minutes); its id."""
        ...

    def followup(self, application_id: str, token: str, message: Message) -> str:
        """Send a follow-up message to the interaction (token valid 15 minutes); its id."""
        ...

    def create_message(self, channel_id: str, message: Message, nonce: str | None = None) -> str:
        """Post a message to a channel with the bot token; its id.

        With a ``nonce``, a second post of the same nonce returns the first message
        instead of creating another (so the post may be retried safely).
        """
        ...

    def edit_message(self, channel_id: str, message_id: str, message: Message) -> None:
        """Edit a message the bot posted, with the bot token (no 15-minute limit)."""
        ...

    def start_thread(
        self, channel_id: str, message_id: str, name: str, auto_archive_duration: int = ...
    ) -> str:
        """Start a public thread from a message; the thread's id (the message's).

        Idempotent: a message that has its thread already (Discord allows one) answers
        with that thread, so a retry after an ambiguous failure never makes a second.
        Without Create Public Threads it raises a :class:`DiscordError` that is
        ``refused``. Post in the thread with :meth:`create_message` and its id.
        """
        ...

    def archive_thread(self, thread_id: str) -> None:
        """Archive a thread the bot started (idempotent; a post unarchives it)."""
        ...
