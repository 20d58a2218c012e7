"""GitHub's news as domain events: what happened to a pull request, an issue, a commit.

One kind of event whoever told us: ``github/`` turns a webhook delivery into one of
these, and the reconcile turns what it reads back from GitHub (a
:class:`~valine.core.models.PullRequest`) into the same ones (:func:`from_pull_read`),
so :mod:`valine.core.tracking` applies a lost webhook's news exactly as the webhook's.

An event says what happened on GitHub, not what it means for a run: whether a pull
request claims a task, whether its author is trusted, whether a check event concerns
a task, is decided by tracking against the run as it is when the event is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from valine.core.models import PullRequest, WorkflowRun

# -- pull requests -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullRequestOpened:
    """A pull request that may claim a task: opened, reopened, ready for review or edited.

    ``head_repo`` is None when its head repository is gone (a deleted fork);
    ``association`` is GitHub's ``author_association`` (``OWNER``, ``MEMBER`` ...).
    """

    number: int
    body: str
    head_ref: str
    head_sha: str
    head_repo: str | None
    author: str | None = None
    author_type: str | None = None
    association: str | None = None


@dataclass(frozen=True, slots=True)
class PullRequestPushed:
    """A pull request's head moved to ``head_sha`` (a push: ``synchronize``)."""

    number: int
    head_sha: str


@dataclass(frozen=True, slots=True)
class PullRequestMerged:
    """A pull request was closed by merging it."""

    number: int


@dataclass(frozen=True, slots=True)
class PullRequestClosed:
    """A pull request was closed without merging."""

    number: int


@dataclass(frozen=True, slots=True)
class PullRequestDequeued:
    """A pull request left its merge queue unmerged, for ``reason``."""

    number: int
    reason: str


# -- checks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckSuiteCompleted:
    """A check suite of commit ``sha`` completed; ``pull_numbers`` are the suite's PRs.

    Its conclusion is not news on its own: the whole picture of the pull requests it
    concerns is read again and judged by :func:`valine.core.checks.verdict`.
    """

    sha: str
    pull_numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CommitStatusChanged:
    """A commit status of ``sha`` was set (it names no pull request: its head does)."""

    sha: str


@dataclass(frozen=True, slots=True)
class MergeGroupChecked:
    """A check suite of the merge group testing pull request ``pr_number`` completed.

    Judged from the event itself: the merge group's commit is no pull request's head.
    """

    pr_number: int
    conclusion: str | None


# -- issues ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssueChanged:
    """Something happened to an issue; ``labels`` are its labels now."""

    number: int
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IssueClosed:
    """An issue was closed by ``by`` (a login, None when GitHub did not say)."""

    number: int
    labels: tuple[str, ...]
    by: str | None


@dataclass(frozen=True, slots=True)
class IssueUnlabelled:
    """``label`` was taken off an issue by ``by``; ``labels`` are the ones left."""

    number: int
    labels: tuple[str, ...]
    label: str
    by: str | None


# -- workflow runs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowRunChanged:
    """A GitHub Actions workflow run was requested, started or completed."""

    run: WorkflowRun


PullRequestEvent = (
    PullRequestOpened
    | PullRequestPushed
    | PullRequestMerged
    | PullRequestClosed
    | PullRequestDequeued
)
CheckEvent = CheckSuiteCompleted | CommitStatusChanged
IssueEvent = IssueChanged | IssueClosed | IssueUnlabelled
#: Every domain event GitHub's news becomes.
GitHubEvent = PullRequestEvent | CheckEvent | MergeGroupChecked | IssueEvent | WorkflowRunChanged


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery as the domain sees it.

    ``event`` is None for a delivery that is no news for tracking (a comment, a label
    added to a pull request, a suite just requested). ``problem`` names the first field
    of the wrong type of a malformed delivery (which then has no event). ``label`` says
    what it was in GitHub's words (``pull_request.opened``), for the log.
    """

    delivery_id: str
    repo: str | None
    event: GitHubEvent | None
    label: str = ""
    problem: str | None = None


def from_pull_read(pull: PullRequest, known_head: str | None) -> PullRequestEvent | None:
    """What a read of ``pull`` says happened since its head was ``known_head``, or None.

    Merged or closed gives that; an open pull request whose head is no longer
    ``known_head`` was pushed to; anything else is no news. It is the event whose
    webhook would have reported the change (the reconcile's way to recover a lost one).
    """
    if pull.state == "closed":
        return PullRequestMerged(pull.number) if pull.merged else PullRequestClosed(pull.number)
    if known_head is not None and pull.head_sha != known_head:
        return PullRequestPushed(pull.number, pull.head_sha)
    return None
