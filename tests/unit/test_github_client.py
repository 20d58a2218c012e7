"""GitHubClient against the GitHub stand-in, over real loopback HTTP.

Covers the port's behaviour (mapping, errors), the request budget (README "How it is
built"), retries and rate limits (with an injected ``sleep``: no test waits), and GitHub
App authentication.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from helpers import free_port, rsa_key_pair
from valine.core.checks import Outcome, Verdict, verdict
from valine.core.errors import ConfigurationError, GitHubUnavailable, NotFound, RateLimited
from valine.github.client import (
    PULLS_PER_QUERY,
    AppAuth,
    GitHubClient,
    TokenAuth,
)
from valine.ports import GitHubError, HeadMoved, IssueUpdate, MergeQueueRequired, NotMergeable
from valine.runtime.clients import github_client
from valine.runtime.config import Settings
from valine.testing.clock import ManualClock
from valine.testing.github import GitHubStandIn

REPO = "octo/widgets"
ClientFactory = Callable[..., GitHubClient]


@pytest.fixture
def standin() -> Iterator[GitHubStandIn]:
    """A running stand-in with one empty repository."""
    with GitHubStandIn() as running:
        running.add_repo(REPO)
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    """What the client asked to sleep, in order (it never really sleeps in tests)."""
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[ClientFactory]:
    """Build clients with an injected sleep and fixed jitter; all closed afterwards."""
    clients: list[GitHubClient] = []

    def make(auth: TokenAuth | AppAuth, api_url: str, **options: object) -> GitHubClient:
        options.setdefault("sleep", sleeps.append)
        options.setdefault("jitter", lambda: 0.5)
        client = GitHubClient(auth, api_url=api_url, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(standin: GitHubStandIn, make_client: ClientFactory) -> GitHubClient:
    """A client with the stand-in's personal access token."""
    return make_client(TokenAuth(standin.token), standin.url)


@pytest.fixture(scope="module")
def app_keys() -> tuple[str, str]:
    """One RSA key pair for the module's App tests (generation takes ~50 ms)."""
    return rsa_key_pair()


# -- list_ready_issues ----------------------------------------------------------------------


def test_list_excludes_pull_requests_and_filters_by_label(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    ready = standin.add_issue(REPO, "ready one", ["ready", "backend"])
    standin.add_issue(REPO, "not ready", ["bug"])
    closed = standin.add_issue(REPO, "closed ready", ["ready"])
    standin.close_issue(REPO, closed)
    standin.open_pull(REPO, "feature", "Fixes #1", labels=["ready"])
    other = standin.add_issue(REPO, "also ready", ["Ready"])  # labels match case-insensitively

    issues = client.list_ready_issues(REPO, "ready")

    assert sorted(i.number for i in issues) == [ready, other]
    [log] = standin.requests
    assert (log.method, log.path) == ("GET", f"/repos/{REPO}/issues")
    assert log.query == {"state": "open", "labels": "ready", "per_page": "100"}
    assert log.auth_scheme == "token"
    assert log.headers["user-agent"] == "valine-orchestrator"


def test_issue_fields_are_mapped(standin: GitHubStandIn, client: GitHubClient) -> None:
    number = standin.add_issue(
        REPO,
        "Ship it",
        ["ready", "p1"],
        assignees=["ada", "grace"],
        milestone="v1",
        milestone_due_on="2030-01-31T08:00:00Z",
        created_at="2029-12-01T10:00:00Z",
    )

    [issue] = client.list_ready_issues(REPO, "ready")

    assert issue.number == number
    assert issue.title == "Ship it"
    assert issue.labels == ("ready", "p1")
    assert issue.assignees == ("ada", "grace")
    assert issue.milestone_due_on == "2030-01-31T08:00:00Z"
    assert issue.created_at == "2029-12-01T10:00:00Z"
    assert issue.url.endswith(f"/{REPO}/issues/{number}")


def test_hundred_ready_issues_cost_one_request(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    for i in range(100):
        standin.add_issue(REPO, f"task {i}", ["ready"])
    for i in range(30):
        standin.add_issue(REPO, f"other {i}", ["later"])

    issues = client.list_ready_issues(REPO, "ready")

    assert len(issues) == 100
    assert client.request_count == 1
    assert len(standin.requests) == 1


def test_hundred_and_fifty_issues_take_two_requests(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    numbers = {standin.add_issue(REPO, f"task {i}", ["ready"]) for i in range(150)}

    issues = client.list_ready_issues(REPO, "ready")

    assert {i.number for i in issues} == numbers
    assert len(issues) == 150
    assert client.request_count == 2
    assert [r.query.get("page") for r in standin.requests] == [None, "2"]


def test_unchanged_list_is_revalidated_with_etag_and_304(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    for i in range(3):
        standin.add_issue(REPO, f"task {i}", ["ready"])
    first = client.list_ready_issues(REPO, "ready")

    second = client.list_ready_issues(REPO, "ready")

    assert second == first
    assert client.request_count == 2
    initial, revalidation = standin.requests
    assert "if-none-match" not in initial.headers
    assert revalidation.headers["if-none-match"]
    assert revalidation.status == 304


def test_changed_list_is_fetched_again(standin: GitHubStandIn, client: GitHubClient) -> None:
    first = standin.add_issue(REPO, "one", ["ready"])
    assert [i.number for i in client.list_ready_issues(REPO, "ready")] == [first]
    second = standin.add_issue(REPO, "two", ["ready"])

    issues = client.list_ready_issues(REPO, "ready")

    assert sorted(i.number for i in issues) == [first, second]
    assert [r.status for r in standin.requests] == [200, 200]


def test_paginated_list_revalidates_every_page(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    for i in range(150):
        standin.add_issue(REPO, f"task {i}", ["ready"])
    first = client.list_ready_issues(REPO, "ready")

    assert client.list_ready_issues(REPO, "ready") == first
    assert [r.status for r in standin.requests] == [200, 200, 304, 304]


def test_unknown_repository_is_not_found(client: GitHubClient) -> None:
    with pytest.raises(NotFound):
        client.list_ready_issues("octo/nothing-here", "ready")


# -- writes -----------------------------------------------------------------------------


def test_dispatch_workflow(standin: GitHubStandIn, client: GitHubClient) -> None:
    client.dispatch_workflow(REPO, "agent.yml", "main", {"issue_number": "7", "run_id": "r-1"})

    [dispatch] = standin.dispatches(REPO)
    assert dispatch.workflow == "agent.yml"
    assert dispatch.ref == "main"
    assert dispatch.inputs == {"issue_number": "7", "run_id": "r-1"}
    assert standin.requests[-1].status == 204


def test_a_deployment_dispatch_returns_the_workflow_run(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    started = client.dispatch_deployment(REPO, "deploy.yml", "prod", {"run_id": "r-1"})

    [run] = standin.workflow_runs(REPO)
    assert started is not None and started.id == run.id
    assert started.url.endswith(f"/{REPO}/actions/runs/{run.id}")
    assert standin.requests[-1].status == 200
    assert standin.requests[-1].body["return_run_details"] is True
    seen = client.workflow_run(REPO, run.id)
    assert (seen.status, seen.head_branch, seen.event) == ("queued", "prod", "workflow_dispatch")
    assert seen.workflow == ".github/workflows/deploy.yml"


def test_a_server_without_run_details_gets_the_dispatch_once_without_them(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    standin.supports_run_details = False

    assert client.dispatch_deployment(REPO, "deploy.yml", "prod", {"run_id": "r-1"}) is None

    assert [r.status for r in standin.requests] == [422, 204]
    assert len(standin.workflow_runs(REPO)) == 1  # the refused one started nothing
    since = time.time() - 60
    [found] = client.dispatched_runs(REPO, "deploy.yml", "prod", since)
    assert found.id == standin.workflow_runs(REPO)[0].id
    assert client.dispatched_runs(REPO, "deploy.yml", "main", since) == []
    assert client.dispatched_runs(REPO, "deploy.yml", "prod", time.time() + 120) == []


def test_an_unconfirmed_deployment_dispatch_is_not_sent_again(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    standin.fail_next(1, status=502)

    with pytest.raises(GitHubUnavailable) as caught:
        client.dispatch_deployment(REPO, "deploy.yml", "prod", {})

    assert caught.value.request_sent
    assert len(standin.requests) == 1


def test_invalid_request_is_a_github_error(standin: GitHubStandIn, client: GitHubClient) -> None:
    too_many = {f"input_{i}": "x" for i in range(26)}  # GitHub takes at most 25 inputs

    with pytest.raises(GitHubError) as caught:
        client.dispatch_workflow(REPO, "agent.yml", "main", too_many)

    assert caught.value.status == 422
    assert len(standin.requests) == 1  # a 4xx is not retried
    assert standin.dispatches(REPO) == []


# -- pull requests ----------------------------------------------------------------------


def test_get_pull(standin: GitHubStandIn, client: GitHubClient) -> None:
    number, sha = standin.open_pull(REPO, "valine/r-1/3", "Fixes #3")

    pull = client.get_pull(REPO, number)

    assert (pull.number, pull.head_sha, pull.head_ref) == (number, sha, "valine/r-1/3")
    assert (pull.state, pull.merged, pull.body) == ("open", False, "Fixes #3")
    assert pull.url.endswith(f"/pull/{number}")


def test_get_missing_pull_is_not_found(standin: GitHubStandIn, client: GitHubClient) -> None:
    issue = standin.add_issue(REPO, "an issue, not a pull request")

    with pytest.raises(NotFound):
        client.get_pull(REPO, issue)


def test_merge_closes_the_linked_issue(standin: GitHubStandIn, client: GitHubClient) -> None:
    issue = standin.add_issue(REPO, "task", ["in-progress"])
    number, sha = standin.open_pull(REPO, "fix", f"This fixes #{issue}.")

    result = client.merge_pull(REPO, number, sha, "squash")

    pull = standin.pull(REPO, number)
    assert pull.merged and result.sha == pull.merge_commit_sha
    assert standin.issue(REPO, issue).state == "closed"
    assert standin.requests[-1].body == {"sha": sha, "merge_method": "squash"}
    assert client.get_pull(REPO, number).merged


def test_merge_after_a_push_is_head_moved(standin: GitHubStandIn, client: GitHubClient) -> None:
    number, tested = standin.open_pull(REPO, "fix")
    standin.push(REPO, number)

    with pytest.raises(HeadMoved) as caught:
        client.merge_pull(REPO, number, tested, "merge")

    assert caught.value.status == 409
    assert not standin.pull(REPO, number).merged


def test_merge_queue_is_required(standin: GitHubStandIn, client: GitHubClient) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    standin.require_merge_queue(REPO)

    with pytest.raises(MergeQueueRequired) as caught:
        client.merge_pull(REPO, number, sha, "merge")

    assert caught.value.status == 405


def test_closed_pull_is_not_mergeable(standin: GitHubStandIn, client: GitHubClient) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    standin.close_pull(REPO, number)

    with pytest.raises(NotMergeable) as caught:
        client.merge_pull(REPO, number, sha, "merge")

    assert caught.value.status == 405
    assert not isinstance(caught.value, MergeQueueRequired)


def test_invalid_merge_method_is_not_mergeable(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, sha = standin.open_pull(REPO, "fix")

    with pytest.raises(NotMergeable) as caught:
        client.merge_pull(REPO, number, sha, "octopus")

    assert caught.value.status == 422
    assert len(standin.requests) == 1


def test_merging_again_at_the_same_sha_returns_the_merge(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    first = client.merge_pull(REPO, number, sha, "merge")

    again = client.merge_pull(REPO, number, sha, "merge")

    assert again == first
    assert [r.status for r in standin.requests[-2:]] == [405, 200]  # refused, then read


def test_merge_of_missing_pull_is_not_found(client: GitHubClient) -> None:
    with pytest.raises(NotFound):
        client.merge_pull(REPO, 404, "0" * 40, "merge")


# -- check suites -----------------------------------------------------------------------


def _verdict(client: GitHubClient, number: int, required: list[str] | None = None) -> Verdict:
    (picture,) = client.pull_checks(REPO, [number])
    return verdict(picture, required)


def test_checks_pass_when_every_run_of_every_suite_passed(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    standin.report_checks(REPO, sha, "success", app="github-actions", names=["test", "lint"])
    standin.report_checks(REPO, sha, "neutral", app="codecov")
    standin.report_checks(REPO, sha, "skipped", app="deploy")
    standin.set_status(REPO, sha, "jenkins", "success")

    assert _verdict(client, number) == Verdict(Outcome.PASSED)
    assert len(standin.requests) == 1  # one GraphQL query


def test_one_suite_still_running_keeps_the_checks_pending(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    standin.report_checks(REPO, sha, "success", app="ci")
    suite = standin.report_checks(REPO, sha, None, status="in_progress", app="e2e", names=["e2e"])

    assert _verdict(client, number) == Verdict(
        Outcome.PENDING, "waiting for check run `e2e` (in_progress)"
    )
    standin.complete_checks(REPO, suite, "success")
    assert _verdict(client, number) == Verdict(Outcome.PASSED)


def test_a_failing_check_run_is_named_with_its_link_even_while_others_run(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    suite = standin.report_checks(REPO, sha, None, status="in_progress", names=["test", "lint"])
    standin.report_checks(REPO, sha, None, status="queued", app="slow")
    standin.complete_checks(REPO, suite, "success", runs={"lint": "timed_out"})
    (picture,) = client.pull_checks(REPO, [number])
    lint = next(c for c in picture.checks if c.name == "lint")

    assert verdict(picture) == Verdict(Outcome.FAILED, f"check run `lint` timed_out: {lint.url}")
    assert lint.url.startswith(standin.url)


@pytest.mark.parametrize("state", ["failure", "error"])
def test_a_failing_commit_status_fails_green_suites(
    standin: GitHubStandIn, client: GitHubClient, state: str
) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    standin.report_checks(REPO, sha, "success")
    standin.set_status(REPO, sha, "ci/jenkins", "pending")
    standin.set_status(REPO, sha, "ci/jenkins", state, "https://jenkins.example/job/7")

    assert _verdict(client, number) == Verdict(
        Outcome.FAILED, f"status `ci/jenkins` {state}: https://jenkins.example/job/7"
    )


def test_a_pending_commit_status_keeps_the_checks_pending(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    standin.report_checks(REPO, sha, "success")
    standin.set_status(REPO, sha, "ci/jenkins", "pending")

    assert _verdict(client, number).outcome is Outcome.PENDING


def test_required_checks_ignore_the_others_and_wait_for_missing_ones(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    standin.report_checks(REPO, sha, "success", names=["test"])
    standin.report_checks(REPO, sha, "failure", app="flaky", names=["benchmarks"])

    assert _verdict(client, number, ["test"]) == Verdict(Outcome.PASSED)
    assert _verdict(client, number, ["test", "lint"]) == Verdict(
        Outcome.PENDING, "required check `lint` has not reported"
    )
    standin.set_status(REPO, sha, "lint", "success")  # a status context counts by name too
    assert _verdict(client, number, ["test", "lint"]) == Verdict(Outcome.PASSED)
    assert _verdict(client, number).outcome is Outcome.FAILED  # unset: every check counts


def test_suites_without_check_runs_count_only_when_they_fail_to_start(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, sha = standin.open_pull(REPO, "fix")
    standin.report_checks(REPO, sha, None, status="queued", check_runs=0, app="idle-app")
    standin.report_checks(REPO, sha, "stale", check_runs=0, app="stale-app")
    assert _verdict(client, number) == Verdict(Outcome.PENDING, "no check has reported yet")
    standin.report_checks(REPO, sha, "success", app="ci")
    assert _verdict(client, number) == Verdict(Outcome.PASSED)
    standin.report_checks(REPO, sha, "startup_failure", check_runs=0, app="github-actions")
    assert _verdict(client, number) == Verdict(
        Outcome.FAILED, "check suite `GitHub Actions` startup_failure"
    )


def test_checks_are_read_on_the_current_head_only(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, tested = standin.open_pull(REPO, "fix")
    standin.report_checks(REPO, tested, "success")
    head = standin.push(REPO, number)

    (picture,) = client.pull_checks(REPO, [number])
    assert (picture.head_sha, picture.checks) == (head, ())


def test_several_pull_requests_in_one_query_and_a_missing_one_left_out(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    pulls = [standin.open_pull(REPO, f"fix-{i}") for i in range(3)]
    for number, sha in pulls:
        standin.report_checks(REPO, sha, "success" if number % 2 else "failure")

    pictures = client.pull_checks(REPO, [n for n, _ in pulls] + [9999])

    assert [p.pr_number for p in pictures] == [n for n, _ in pulls]
    assert [p.head_sha for p in pictures] == [sha for _, sha in pulls]
    assert len(standin.requests) == 1


def test_more_pull_requests_than_one_query_holds_take_more_queries(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    numbers = [standin.open_pull(REPO, f"fix-{i}")[0] for i in range(PULLS_PER_QUERY + 1)]

    assert len(client.pull_checks(REPO, numbers)) == PULLS_PER_QUERY + 1
    assert len(standin.requests) == 2


def test_checks_of_an_unknown_repository_are_not_found(client: GitHubClient) -> None:
    with pytest.raises(NotFound):
        client.pull_checks("octo/nothing-here", [1])


def test_a_list_cut_short_is_never_green(make_client: ClientFactory) -> None:
    runs = {"pageInfo": {"hasNextPage": True}, "nodes": [_run("test", "SUCCESS")]}
    suite = {
        "status": "COMPLETED",
        "conclusion": "SUCCESS",
        "app": {"name": "ci"},
        "checkRuns": runs,
    }
    client = _answering(make_client, _pull_node([suite]))

    (picture,) = client.pull_checks(REPO, [1])

    assert not picture.complete
    assert verdict(picture).outcome is Outcome.PENDING


def test_an_unexpected_checks_answer_is_a_github_error(make_client: ClientFactory) -> None:
    client = _answering(make_client, {"number": 1, "commits": {"nodes": []}})

    with pytest.raises(GitHubError, match="unexpected response shape"):
        client.pull_checks(REPO, [1])


def _run(name: str, conclusion: str | None) -> dict[str, Any]:
    status = "COMPLETED" if conclusion else "IN_PROGRESS"
    return {"name": name, "status": status, "conclusion": conclusion, "detailsUrl": None}


def _pull_node(suites: list[dict[str, Any]]) -> dict[str, Any]:
    commit = {
        "oid": "a" * 40,
        "checkSuites": {"pageInfo": {"hasNextPage": False}, "nodes": suites},
        "status": None,
    }
    return {"number": 1, "commits": {"nodes": [{"commit": commit}]}}


def _answering(make_client: ClientFactory, node: dict[str, Any]) -> GitHubClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"data": {"repository": {"p0": node}}}, headers=_json_type()
        )

    return make_client(
        TokenAuth("t"), "https://api.example", transport=httpx.MockTransport(handler)
    )


# -- retries and rate limits -------------------------------------------------------------


def test_retries_server_errors_with_backoff(
    standin: GitHubStandIn, client: GitHubClient, sleeps: list[float]
) -> None:
    number = standin.add_issue(REPO, "task", ["ready"])
    standin.fail_next(2, 502)

    [issue] = client.list_ready_issues(REPO, "ready")

    assert issue.number == number
    assert [r.status for r in standin.requests] == [502, 502, 200]
    assert client.request_count == 3
    assert sleeps == [0.375, 0.75]  # 0.5 s then 1 s, halved-plus-jitter (jitter fixed 0.5)


def test_gives_up_after_persistent_server_errors(
    standin: GitHubStandIn, client: GitHubClient, sleeps: list[float]
) -> None:
    standin.fail_next(10, 503)

    with pytest.raises(GitHubUnavailable, match="503"):
        client.get_pull(REPO, 1)

    assert client.request_count == 4
    assert len(sleeps) == 3


def test_total_backoff_is_bounded(
    standin: GitHubStandIn, make_client: ClientFactory, sleeps: list[float]
) -> None:
    client = make_client(TokenAuth(standin.token), standin.url, max_retry_wait=1.0)
    standin.fail_next(10, 500)

    with pytest.raises(GitHubUnavailable):
        client.get_pull(REPO, 1)

    assert sum(sleeps) <= 1.0
    assert client.request_count == 2


def test_server_down_is_unavailable(make_client: ClientFactory, sleeps: list[float]) -> None:
    client = make_client(TokenAuth("t"), f"http://127.0.0.1:{free_port()}")

    with pytest.raises(GitHubUnavailable, match="ConnectError"):
        client.list_ready_issues(REPO, "ready")

    assert client.request_count == 4
    assert len(sleeps) == 3


def test_secondary_rate_limit_waits_retry_after(
    standin: GitHubStandIn, client: GitHubClient, sleeps: list[float]
) -> None:
    number = standin.add_issue(REPO, "task", ["ready"])
    [issue] = client.list_ready_issues(REPO, "ready")
    standin.rate_limit_next(retry_after=7)

    client.update_issues(REPO, [IssueUpdate(issue.node_id, comment="hello")])

    assert sleeps == [pytest.approx(7.0, abs=0.5)]
    assert [(r.path, r.status) for r in standin.requests[1:]] == [
        ("/graphql", 403),
        ("/graphql", 200),
    ]
    assert standin.comments(REPO, number) == ["hello"]  # applied once


def test_primary_rate_limit_waits_until_reset(make_client: ClientFactory) -> None:
    now = [1_900_000_000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with GitHubStandIn(clock=lambda: now[0]) as standin:
        standin.add_repo(REPO)
        client = make_client(
            TokenAuth(standin.token), standin.url, clock=lambda: now[0], sleep=sleep
        )
        standin.primary_rate_limit_next(reset_in=5)

        assert client.list_ready_issues(REPO, "ready") == ()

    assert waits == [6.0]  # until x-ratelimit-reset, plus a second of margin


def test_a_wait_rereads_the_hold_another_worker_extended_meanwhile(
    make_client: ClientFactory,
) -> None:
    """Waiting out a Retry-After while another worker learns of a later primary reset:
    the first worker sends nothing before that reset either."""
    now = [1_900_000_000.0]
    waits: list[float] = []
    later_reset = now[0] + 5

    with GitHubStandIn(clock=lambda: now[0]) as standin:
        standin.add_repo(REPO)

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 1:  # meanwhile another worker meets the primary limit
                client._limits.block_until("core", later_reset)
            now[0] += seconds

        client = make_client(
            TokenAuth(standin.token), standin.url, clock=lambda: now[0], sleep=sleep
        )
        standin.rate_limit_next(retry_after=1)

        assert client.list_ready_issues(REPO, "ready") == ()

    sent = [r.at for r in standin.requests]
    assert len(sent) == 2 and sent[1] >= later_reset
    assert waits[0] == pytest.approx(1.0) and sum(waits) >= 5


def test_rate_limit_beyond_the_cap_fails_at_once(
    standin: GitHubStandIn, client: GitHubClient, sleeps: list[float]
) -> None:
    standin.primary_rate_limit_next(reset_in=3600)

    with pytest.raises(GitHubUnavailable, match="resets at"):
        client.list_ready_issues(REPO, "ready")

    assert sleeps == []
    assert client.request_count == 1


def test_bad_token_is_a_github_error(standin: GitHubStandIn, make_client: ClientFactory) -> None:
    client = make_client(TokenAuth("not-the-token"), standin.url)

    with pytest.raises(GitHubError) as caught:
        client.list_ready_issues(REPO, "ready")

    assert caught.value.status == 401
    assert client.request_count == 1


def test_no_http_library_exception_escapes(make_client: ClientFactory) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/pulls/1"):
            raise httpx.ReadTimeout("slow", request=request)
        if request.url.path.endswith("/pulls/2"):
            return httpx.Response(200, content=b"{not json", headers=_json_type())
        return httpx.Response(418, json={"message": "I'm a teapot"})

    client = make_client(
        TokenAuth("t"), "https://api.example", transport=httpx.MockTransport(handler)
    )

    with pytest.raises(GitHubUnavailable, match="ReadTimeout"):
        client.get_pull(REPO, 1)
    with pytest.raises(GitHubError):
        client.get_pull(REPO, 2)
    with pytest.raises(GitHubError) as caught:
        client.get_pull(REPO, 3)
    assert caught.value.status == 418


def test_pagination_never_leaves_the_api_host(make_client: ClientFactory) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        link = '<https://elsewhere.example/steal?page=2>; rel="next"'
        return httpx.Response(200, json=[], headers={"link": link, **_json_type()})

    client = make_client(
        TokenAuth("t"), "https://api.example", transport=httpx.MockTransport(handler)
    )

    with pytest.raises(GitHubError, match="elsewhere"):
        client.list_ready_issues(REPO, "ready")
    assert all(url.startswith("https://api.example/") for url in seen)


def _json_type() -> dict[str, str]:
    return {"content-type": "application/json; charset=utf-8"}


# -- concurrency ------------------------------------------------------------------------


def test_request_count_is_exact_across_threads(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number, _ = standin.open_pull(REPO, "fix")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                client.get_pull(REPO, number)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert client.request_count == 40 == len(standin.requests)


# -- GitHub App authentication -----------------------------------------------------------


def test_app_token_is_bought_once_and_cached(
    app_keys: tuple[str, str], make_client: ClientFactory
) -> None:
    private, public = app_keys
    with GitHubStandIn(app_id="4242", app_public_key_pem=public, installation_id=77) as standin:
        standin.add_issue(REPO, "task", ["ready"])
        number, _ = standin.open_pull(REPO, "fix")
        client = make_client(AppAuth("4242", private), standin.url)

        client.list_ready_issues(REPO, "ready")
        client.get_pull(REPO, number)
        client.repository_ids(REPO, ["ready"])  # GraphQL: the same installation token

        paths = [(r.method, r.path, r.auth_scheme) for r in standin.requests]

    assert paths[:2] == [
        ("GET", f"/repos/{REPO}/installation", "bearer"),
        ("POST", "/app/installations/77/access_tokens", "bearer"),
    ]
    assert paths[2:] == [
        ("GET", f"/repos/{REPO}/issues", "token"),
        ("GET", f"/repos/{REPO}/pulls/{number}", "token"),
        ("POST", "/graphql", "token"),
    ]
    assert client.request_count == 5


def test_an_app_without_installation_id_can_change_issues_first(
    app_keys: tuple[str, str], make_client: ClientFactory
) -> None:
    """A fresh App client's first call may be a GraphQL write: it finds the installation."""
    private, public = app_keys
    with GitHubStandIn(app_id="4242", app_public_key_pem=public, installation_id=77) as standin:
        number = standin.add_issue(REPO, "task", ["ready"])
        reader = make_client(TokenAuth(standin.token), standin.url)
        node_id = reader.list_ready_issues(REPO, "ready")[0].node_id
        standin.clear_requests()
        client = make_client(AppAuth("4242", private), standin.url)

        client.update_issues(REPO, [IssueUpdate(node_id, comment="picked up")])

        paths = [(r.method, r.path) for r in standin.requests]
        comments = standin.comments(REPO, number)

    assert paths == [
        ("GET", f"/repos/{REPO}/installation"),
        ("POST", "/app/installations/77/access_tokens"),
        ("POST", "/graphql"),
    ]
    assert comments == ["picked up"]


def test_app_token_is_shared_by_concurrent_threads(
    app_keys: tuple[str, str], make_client: ClientFactory
) -> None:
    private, public = app_keys
    with GitHubStandIn(app_public_key_pem=public) as standin:
        number, _ = standin.open_pull(REPO, "fix")
        client = make_client(AppAuth("1", private, installation_id="1"), standin.url)
        threads = [threading.Thread(target=client.get_pull, args=(REPO, number)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        token_requests = [r for r in standin.requests if r.path.endswith("/access_tokens")]

    assert len(token_requests) == 1
    assert client.request_count == 7


def test_app_token_is_refreshed_near_expiry(
    app_keys: tuple[str, str], make_client: ClientFactory
) -> None:
    private, public = app_keys
    now = [time.time()]
    with GitHubStandIn(app_public_key_pem=public, token_ttl=3600) as standin:
        number, _ = standin.open_pull(REPO, "fix")
        client = make_client(AppAuth("1", private, "1"), standin.url, clock=lambda: now[0])
        client.get_pull(REPO, number)
        now[0] += 3600 - 6 * 60  # six minutes before expiry: still good
        client.get_pull(REPO, number)
        now[0] += 2 * 60  # four minutes before expiry: buy a new one
        client.get_pull(REPO, number)
        token_requests = [r for r in standin.requests if r.path.endswith("/access_tokens")]
        tokens = [r.response["token"] for r in token_requests]

    assert len(tokens) == 2
    assert tokens[0] != tokens[1]
    assert client.request_count == 5


def test_revoked_app_token_is_replaced_once(
    app_keys: tuple[str, str], make_client: ClientFactory
) -> None:
    private, public = app_keys
    standin_now = [time.time()]
    with GitHubStandIn(app_public_key_pem=public, clock=lambda: standin_now[0]) as standin:
        number, _ = standin.open_pull(REPO, "fix")
        client = make_client(AppAuth("1", private, "1"), standin.url)
        client.get_pull(REPO, number)
        standin_now[0] += 7200  # GitHub now considers the cached token expired

        assert client.get_pull(REPO, number).number == number
        statuses = [(r.path.rsplit("/", 1)[-1], r.status) for r in standin.requests]

    assert statuses[2:] == [(str(number), 401), ("access_tokens", 201), (str(number), 200)]


def test_app_jwt_signed_with_another_key_is_refused(
    app_keys: tuple[str, str], make_client: ClientFactory
) -> None:
    _, public = app_keys
    other_private, _ = rsa_key_pair()
    with GitHubStandIn(app_public_key_pem=public) as standin:
        standin.add_repo(REPO)
        client = make_client(AppAuth("1", other_private, "1"), standin.url)

        with pytest.raises(GitHubError) as caught:
            client.list_ready_issues(REPO, "ready")

    assert caught.value.status == 401


def test_malformed_app_key_is_a_configuration_error(
    standin: GitHubStandIn, make_client: ClientFactory
) -> None:
    client = make_client(AppAuth("1", "not a pem", "1"), standin.url)

    with pytest.raises(ConfigurationError, match="GITHUB_APP_PRIVATE_KEY"):
        client.list_ready_issues(REPO, "ready")


def test_tokens_never_reach_the_logs(
    app_keys: tuple[str, str],
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    private, public = app_keys
    caplog.set_level(logging.DEBUG)
    with GitHubStandIn(app_public_key_pem=public) as standin:
        number = standin.add_issue(REPO, "task", ["ready"])
        pat_client = make_client(TokenAuth(standin.token), standin.url)
        app_client = make_client(AppAuth("1", private), standin.url)
        for client in (pat_client, app_client):
            standin.fail_next(1, 502)
            client.list_ready_issues(REPO, "ready")
            client.dispatch_workflow(REPO, "agent.yml", "main", {"issue_number": str(number)})
            client.repository_ids(REPO, ["ready"])
            with pytest.raises(NotFound):
                client.get_pull(REPO, 999)
        secrets = [standin.token] + [
            r.response["token"] for r in standin.requests if r.path.endswith("/access_tokens")
        ]

    assert len(secrets) == 2
    assert "github GET /repos/octo/widgets/issues -> 200" in caplog.text
    assert "github POST /graphql -> 200" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
    assert "bearer" not in caplog.text.lower()
    assert private not in caplog.text


# -- configuration ------------------------------------------------------------------------


def test_client_from_settings_uses_the_token_and_api_url(standin: GitHubStandIn) -> None:
    standin.add_issue(REPO, "task", ["ready"])
    settings = Settings(github_token=standin.token, github_api_url=standin.url)

    with github_client(settings) as client:
        assert len(client.list_ready_issues(REPO, "ready")) == 1


def test_client_from_settings_prefers_a_complete_app(app_keys: tuple[str, str]) -> None:
    private, public = app_keys
    with GitHubStandIn(app_public_key_pem=public) as standin:
        standin.add_repo(REPO)
        settings = Settings(
            github_token="ignored",
            github_app_id="1",
            github_app_private_key=private.replace("\n", "\\n"),  # as a one-line .env value
            github_app_installation_id="1",
            github_api_url=standin.url,
        )
        with github_client(settings) as client:
            client.list_ready_issues(REPO, "ready")
        schemes = [r.auth_scheme for r in standin.requests]

    assert schemes == ["bearer", "token"]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (Settings(), "GITHUB_TOKEN"),
        (Settings(github_app_id="1"), "GITHUB_APP_PRIVATE_KEY"),
        (Settings(github_app_private_key="pem"), "GITHUB_APP_ID"),
    ],
)
def test_client_from_settings_names_the_missing_setting(settings: Settings, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        github_client(settings)


# -- the stand-in itself -------------------------------------------------------------------


def test_standin_requires_authentication(standin: GitHubStandIn) -> None:
    response = httpx.get(f"{standin.url}/repos/{REPO}/issues")

    assert response.status_code == 401
    assert response.json()["message"] == "Requires authentication"
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert response.headers[header].isdigit()
    assert response.headers["x-ratelimit-resource"] == "core"
    assert response.headers["x-github-request-id"]


def test_standin_label_filter_means_every_label(standin: GitHubStandIn) -> None:
    both = standin.add_issue(REPO, "both", ["ready", "p1"])
    standin.add_issue(REPO, "one", ["ready"])
    headers = {"authorization": f"token {standin.token}"}

    response = httpx.get(
        f"{standin.url}/repos/{REPO}/issues", params={"labels": "ready,p1"}, headers=headers
    )

    assert [item["number"] for item in response.json()] == [both]


def test_standin_dispatch_needs_ref_and_inputs(standin: GitHubStandIn) -> None:
    url = f"{standin.url}/repos/{REPO}/actions/workflows/agent.yml/dispatches"
    headers = {"authorization": f"token {standin.token}"}

    assert httpx.post(url, json={"inputs": {}}, headers=headers).status_code == 422
    assert httpx.post(url, json={"ref": "main"}, headers=headers).status_code == 422
    assert standin.dispatches(REPO) == []


def test_standin_merge_closes_issues_named_by_closing_keywords(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    one, two, three, four = (standin.add_issue(REPO, f"issue {i}") for i in range(4))
    body = f"Closes: #{one}, fixes #{two} and Resolved #{three}; refs #{four}"
    number, sha = standin.open_pull(REPO, "fix", body)

    client.merge_pull(REPO, number, sha, "rebase")

    states = [standin.issue(REPO, n).state for n in (one, two, three, four)]
    assert states == ["closed", "closed", "closed", "open"]


def test_standin_check_suites_are_shaped_like_githubs(standin: GitHubStandIn) -> None:
    number, sha = standin.open_pull(REPO, "valine/r-1/3")
    standin.report_checks(REPO, sha, "success", app="github-actions", check_runs=3)
    standin.report_checks(REPO, sha, None, status="queued", check_runs=0, app="idle-app")
    headers = {"authorization": f"token {standin.token}"}
    url = f"{standin.url}/repos/{REPO}/commits/{sha}/check-suites"

    body = httpx.get(url, headers=headers).json()
    by_branch = httpx.get(
        f"{standin.url}/repos/{REPO}/commits/heads/valine/r-1/3/check-suites", headers=headers
    ).json()
    actions_id = body["check_suites"][0]["app"]["id"]
    filtered = httpx.get(url, params={"app_id": actions_id}, headers=headers).json()

    assert body["total_count"] == 2
    first, second = body["check_suites"]
    assert (first["status"], first["conclusion"], first["latest_check_runs_count"]) == (
        "completed",
        "success",
        3,
    )
    assert (second["status"], second["conclusion"]) == ("queued", None)
    assert first["app"]["name"] == "GitHub Actions"
    assert first["head_branch"] == "valine/r-1/3"
    assert [pr["number"] for pr in first["pull_requests"]] == [number]
    assert by_branch == body
    assert [s["app"]["slug"] for s in filtered["check_suites"]] == ["github-actions"]
    assert [s.app for s in standin.check_suites(REPO, sha)] == ["github-actions", "idle-app"]


def test_standin_check_suites_of_an_unknown_commit_are_422(standin: GitHubStandIn) -> None:
    headers = {"authorization": f"token {standin.token}"}

    response = httpx.get(
        f"{standin.url}/repos/{REPO}/commits/{'f' * 40}/check-suites", headers=headers
    )

    assert response.status_code == 422
    assert response.json()["message"] == f"No commit found for SHA: {'f' * 40}"


@pytest.mark.parametrize(
    ("conclusion", "options"),
    [
        (None, {}),  # completed needs a conclusion
        ("success", {"status": "queued"}),  # an unfinished suite has none
        ("passed", {}),  # not one of GitHub's conclusions
        (None, {"status": "running"}),  # not one of GitHub's statuses
        ("success", {"check_runs": -1}),
    ],
)
def test_standin_refuses_impossible_check_suites(
    standin: GitHubStandIn, conclusion: str | None, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        standin.report_checks(REPO, "a" * 40, conclusion, **options)

    assert standin.check_suites(REPO, "a" * 40) == []


def test_standin_stop_ends_pooled_connections(standin: GitHubStandIn, client: GitHubClient) -> None:
    number, _ = standin.open_pull(REPO, "fix")
    client.get_pull(REPO, number)  # leaves a keep-alive connection in the pool

    standin.stop()

    with pytest.raises(GitHubUnavailable):
        client.get_pull(REPO, number)


def test_a_workflow_dispatch_is_never_repeated_after_an_ambiguous_failure(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    standin.fail_next(1, 502)  # GitHub may have started the workflow before failing

    with pytest.raises(GitHubUnavailable) as raised:
        client.dispatch_workflow(REPO, "agent.yml", "main", {"issue_number": "1"})

    assert raised.value.request_sent
    assert [r.status for r in standin.requests] == [502]  # sent once, not retried
    assert standin.dispatches(REPO) == []


def test_a_dispatch_that_could_not_connect_says_nothing_was_sent(
    make_client: ClientFactory,
) -> None:
    client = make_client(TokenAuth("t"), f"http://127.0.0.1:{free_port()}")  # nobody there

    with pytest.raises(GitHubUnavailable) as raised:
        client.dispatch_workflow(REPO, "agent.yml", "main", {"issue_number": "1"})

    assert not raised.value.request_sent


# -- rate limits are waits: GraphQL RATE_LIMITED, shared state, RateLimited -----------------


@pytest.fixture
def moving() -> ManualClock:
    """A clock the client's sleeps move."""
    return ManualClock(1_900_000_000.0)


@pytest.fixture
def timed(moving: ManualClock) -> Iterator[tuple[GitHubStandIn, GitHubClient]]:
    """A stand-in and a client on the same moving clock."""
    with GitHubStandIn(clock=moving) as standin:
        standin.add_repo(REPO)
        with GitHubClient(
            TokenAuth(standin.token),
            api_url=standin.url,
            sleep=moving.sleep,
            clock=moving,
            jitter=lambda: 0.5,
        ) as client:
            yield standin, client


def test_graphql_rate_limited_is_a_short_wait_then_the_mutation_runs_once(
    timed: tuple[GitHubStandIn, GitHubClient], moving: ManualClock
) -> None:
    standin, client = timed
    number = standin.add_issue(REPO, "task", ["ready"])
    [issue] = client.list_ready_issues(REPO, "ready")
    standin.graphql_rate_limit_next(reset_in=5)
    limited_at = moving.t

    client.update_issues(REPO, [IssueUpdate(issue.node_id, comment="once")])

    assert standin.comments(REPO, number) == ["once"]
    graphql = [r for r in standin.requests if r.path == "/graphql"]
    assert [r.fault for r in graphql] == ["graphql-rate-limited", None]
    assert graphql[1].at >= limited_at + 5, "a request went out before the reset"
    assert moving.sleeps == [6.0]


def test_a_long_limit_raises_rate_limited_and_later_calls_send_nothing_before_the_reset(
    timed: tuple[GitHubStandIn, GitHubClient], moving: ManualClock
) -> None:
    standin, client = timed
    standin.add_issue(REPO, "task", ["ready"])
    [issue] = client.list_ready_issues(REPO, "ready")
    standin.graphql_rate_limit_next(reset_in=600)
    reset = moving.t + 600

    for _ in range(3):  # the first call meets the limit; the others know it already
        with pytest.raises(RateLimited) as caught:
            client.update_issues(REPO, [IssueUpdate(issue.node_id, comment="later")])
        assert caught.value.request_sent is False
        assert caught.value.reset_at == pytest.approx(reset + 1)

    assert len([r for r in standin.requests if r.path == "/graphql"]) == 1
    assert moving.sleeps == []
    # REST has its own budget: it is not held back by the GraphQL limit.
    assert client.list_ready_issues(REPO, "ready")


def test_a_primary_limit_blocks_every_worker_of_the_process(
    timed: tuple[GitHubStandIn, GitHubClient], moving: ManualClock
) -> None:
    standin, client = timed
    standin.primary_rate_limit_next(reset_in=300)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client.list_ready_issues(REPO, "ready")
        except RateLimited as exc:
            errors.append(exc)

    with pytest.raises(RateLimited):
        client.list_ready_issues(REPO, "ready")
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(errors) == 4
    assert len(standin.requests) == 1, "a worker sent a request before the known reset"


def test_rate_limit_spelled_rate_limit_is_recognised_too() -> None:
    from valine.github.transport import _graphql_rate_limited

    assert _graphql_rate_limited({"errors": [{"type": "RATE_LIMIT", "message": "x"}]})
    assert _graphql_rate_limited({"errors": [{"type": "RATE_LIMITED", "message": "x"}]})
    assert not _graphql_rate_limited({"errors": [{"type": "NOT_FOUND", "message": "x"}]})
    assert not _graphql_rate_limited({"data": {}})
