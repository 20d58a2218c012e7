"""Domain errors: what adapters raise past their boundary instead of library exceptions."""

from __future__ import annotations


class ValineError(Exception):
    """Base of every error the product raises on purpose."""


class IllegalTransition(ValineError):
    """An event arrived that the state table does not allow in the current state."""

    def __init__(self, kind: str, state: str, event: str) -> None:
        super().__init__(f"{kind} in state {state!r} cannot take event {event!r}")
        self.kind = kind
        self.state = state
        self.event = event


class RunConflict(ValineError):
    """A conditional write lost: the stored run changed since it was read."""


class ActiveRunExists(RunConflict):
    """The repository already has a non-terminal run (one active run per repository)."""

    def __init__(self, repo: str, run_id: str) -> None:
        super().__init__(f"repository {repo} already has an active run {run_id}")
        self.repo = repo
        self.run_id = run_id


class NotFound(ValineError):
    """The thing asked for does not exist in the store."""


class StoreUnavailable(ValineError):
    """The state store could not be read or written (locked too long, disk full...)."""


class QueueUnavailable(ValineError):
    """The job queue could not be read or written."""


class GitHubUnavailable(ValineError):
    """GitHub could not be reached or kept failing after retries.

    ``request_sent`` is False only when no attempt can have reached GitHub (the
    connection was never made), so repeating a non-idempotent request is safe.
    """

    def __init__(self, message: str, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class RateLimited(GitHubUnavailable):
    """GitHub's rate limit is spent until ``reset_at`` (epoch seconds), longer than a job
    may wait. Nothing was sent: the job is put back until then, without spending an
    attempt (a wait, not a failure)."""

    def __init__(self, message: str, reset_at: float) -> None:
        super().__init__(message, request_sent=False)
        self.reset_at = reset_at


class ClaimHeld(ValineError):
    """Another attempt holds a fresh claim on a step until ``until`` (epoch seconds).

    Not a failure: the job is put back until the claim expires, without spending an
    attempt. An attempt killed mid-step leaves its claim behind, so the job's retries
    must outlast the claim, whatever the queue's backoff and attempt budget.
    """

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message)
        self.until = until


class DiscordUnavailable(ValineError):
    """Discord could not be reached or kept failing after retries.

    ``request_sent`` is False only when Discord cannot have acted on the request (no
    connection was made, or it answered 429), so sending it again cannot duplicate it.
    """

    def __init__(self, message: str, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class ConfigurationError(ValineError):
    """A setting is malformed, or a needed one is missing."""
