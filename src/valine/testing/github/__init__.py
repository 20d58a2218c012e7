"""A stateful stand-in of GitHub's REST and GraphQL APIs, for tests, ``valine demo`` and local runs.

It serves the few endpoints the orchestrator uses, for any number of repositories, over
real HTTP on 127.0.0.1 (a free port), with answers shaped like GitHub's. One package, one
job a module:

* :mod:`.state` — the world (repositories, issues, pull requests, labels, merge queues,
  check suites, commit statuses) and the changes a person or CI makes to it;
* :mod:`.rest` — the REST endpoints and GitHub-shaped documents over that state;
* :mod:`.graphql` — ``POST /graphql`` over the same state;
* :mod:`.actions` — GitHub Actions workflow runs, as a dispatch makes them;
* :mod:`.server` — HTTP, authentication (personal, installation and App JWT tokens),
  rate limits and injected faults (:mod:`valine.testing.faults`);
  :class:`GitHubStandIn` combines them.

Tests change the world as a person or CI would (:meth:`~GitHubStandIn.add_issue`,
:meth:`~GitHubStandIn.open_pull`, :meth:`~GitHubStandIn.push`,
:meth:`~GitHubStandIn.report_checks` ...), inject faults through
:attr:`GitHubStandIn.faults` or its short-hands (:meth:`~GitHubStandIn.fail_next`,
:meth:`~GitHubStandIn.rate_limit_next`, :meth:`~GitHubStandIn.graphql_rate_limit_next` ...)
and read the state and the :attr:`~GitHubStandIn.requests` log.
"""

from __future__ import annotations

from valine.testing.github.actions import StandInWorkflowRun
from valine.testing.github.server import GitHubStandIn, RecordedRequest
from valine.testing.github.state import (
    CHECK_SUITE_CONCLUSIONS,
    CHECK_SUITE_STATUSES,
    COMMIT_STATUS_STATES,
    Dispatch,
    StandInCheckRun,
    StandInCheckSuite,
    StandInComment,
    StandInIssue,
    StandInLabel,
    StandInPull,
    StandInQueueEntry,
    StandInStatus,
)

__all__ = [
    "CHECK_SUITE_CONCLUSIONS",
    "CHECK_SUITE_STATUSES",
    "COMMIT_STATUS_STATES",
    "Dispatch",
    "GitHubStandIn",
    "RecordedRequest",
    "StandInCheckRun",
    "StandInCheckSuite",
    "StandInComment",
    "StandInIssue",
    "StandInLabel",
    "StandInPull",
    "StandInQueueEntry",
    "StandInStatus",
    "StandInWorkflowRun",
]
