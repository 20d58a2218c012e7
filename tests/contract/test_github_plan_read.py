"""The reads ``/plan`` and the reconcile make over GraphQL, client against the stand-in.

``read_ready_issues``: the ready issues and the run's node ids in one query (pages of
100 beyond), the same issues the REST list gives. ``pull_checks(merge_queue=True)``:
whether each pull request is still in its merge queue, in the same query as its checks.
The documents themselves are validated against GitHub's schema in
``test_github_graphql.py`` (its scenario makes both calls).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from valine.core.errors import NotFound
from valine.github.client import GitHubClient, TokenAuth
from valine.testing.faults import Match
from valine.testing.github import GitHubStandIn

REPO = "octo/widgets"


@pytest.fixture
def standin() -> Iterator[GitHubStandIn]:
    """A running stand-in with one empty repository."""
    with GitHubStandIn() as running:
        running.add_repo(REPO)
        yield running


@pytest.fixture
def client(standin: GitHubStandIn) -> Iterator[GitHubClient]:
    """A client with the stand-in's token whose waits take no time."""
    with GitHubClient(
        TokenAuth(standin.token), api_url=standin.url, sleep=lambda _s: None
    ) as running:
        yield running


def _graphql_requests(standin: GitHubStandIn) -> int:
    return sum(1 for r in standin.requests if r.path == "/graphql")


def test_one_query_reads_the_ready_issues_and_the_ids(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    ready = standin.add_issue(
        REPO, "ship it", ["ready", "P1"], milestone_due_on="2026-12-31T08:00:00Z"
    )
    also = standin.add_issue(REPO, "and this", ["Ready"])  # label names are case-blind
    standin.add_issue(REPO, "not yet", ["backlog"])
    closed = standin.add_issue(REPO, "done", ["ready"])
    standin.close_issue(REPO, closed)
    standin.open_pull(REPO, "fix", "a pull request", labels=["ready"])  # never an issue
    progress = standin.add_label(REPO, "in-progress")
    grace = standin.add_user("grace")

    found = client.read_ready_issues(
        REPO, "ready", ["ready", "in-progress", "shipped"], ["grace", "nobody"]
    )

    assert _graphql_requests(standin) == 1
    assert [i.number for i in found.issues] == [ready, also]
    assert found.ids.labels == {
        "ready": standin.labels(REPO)["ready"],
        "in-progress": progress,
    }  # "shipped" does not exist yet: left out, the start job creates it
    assert found.ids.users == {"grace": grace}
    assert found.ids.repository == client.repository_ids(REPO, []).repository


def test_the_graphql_issues_are_the_rest_issues(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    for i in range(3):
        standin.add_issue(
            REPO,
            f"task {i}",
            ["ready", f"P{i}"],
            milestone_due_on=None if i else "2026-01-02T00:00:00Z",
            created_at=f"2026-01-0{i + 1}T10:00:00Z",
        )
    graphql = {i.number: i for i in client.read_ready_issues(REPO, "ready", []).issues}
    rest = {i.number: i for i in client.list_ready_issues(REPO, "ready")}

    assert graphql.keys() == rest.keys()
    for number, issue in graphql.items():
        other = rest[number]
        assert (issue.title, issue.labels, issue.created_at, issue.milestone_due_on) == (
            other.title,
            other.labels,
            other.created_at,
            other.milestone_due_on,
        )
        assert issue.node_id == other.node_id and issue.url == other.url


def test_beyond_100_issues_each_page_is_one_more_query(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    numbers = [standin.add_issue(REPO, f"task {i}", ["ready"]) for i in range(230)]

    found = client.read_ready_issues(REPO, "ready", ["ready"])

    assert [i.number for i in found.issues] == numbers  # each once, oldest first
    assert _graphql_requests(standin) == 3
    later = [r.body for r in standin.requests if r.path == "/graphql"][1:]
    assert all("label(name:" not in body["query"] for body in later)  # ids read once
    assert all(body["variables"]["after"] for body in later)


def test_an_issue_with_more_labels_than_one_read_is_left_out(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    crowded = standin.add_issue(REPO, "crowded", ["ready", *(f"l{i}" for i in range(100))])
    plain = standin.add_issue(REPO, "plain", ["ready"])

    found = client.read_ready_issues(REPO, "ready", [])

    assert [i.number for i in found.issues] == [plain]
    assert crowded not in [i.number for i in found.issues]


def test_a_missing_repository_is_not_found(client: GitHubClient) -> None:
    with pytest.raises(NotFound):
        client.read_ready_issues("octo/nothing", "ready", ["ready"])


def test_a_graphql_rate_limit_is_waited_out(standin: GitHubStandIn) -> None:
    number = standin.add_issue(REPO, "task", ["ready"])
    standin.graphql_rate_limit_next(reset_in=1.0, match=Match(graphql="issues("))

    with GitHubClient(TokenAuth(standin.token), api_url=standin.url) as client:
        found = client.read_ready_issues(REPO, "ready", [])  # HTTP 200, RATE_LIMITED

    assert [i.number for i in found.issues] == [number]
    assert _graphql_requests(standin) == 2  # the limited one, then one after the reset


def test_a_cursor_the_stand_in_never_served_is_refused(standin: GitHubStandIn) -> None:
    answer = httpx.post(
        f"{standin.url}/graphql",
        json={
            "query": 'query($a: String) { repository(owner: "octo", name: "widgets") '
            "{ issues(first: 1, after: $a) { nodes { number } } } }",
            "variables": {"a": "bm9wZQ=="},
        },
        headers={"authorization": f"token {standin.token}"},
    ).json()
    # ``issues`` is non-null (``IssueConnection!``): as the GraphQL spec says, its failure
    # nulls the nearest nullable parent, the repository
    assert answer["data"] == {"repository": None}
    [error] = answer["errors"]
    assert (error["type"], error["path"]) == ("INVALID_CURSOR_ARGUMENTS", ["repository", "issues"])


def test_the_checks_read_says_whether_a_pull_request_is_still_queued(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    standin.add_issue(REPO, "bug")
    standin.require_merge_queue(REPO)
    queued, sha = standin.open_pull(REPO, "a", "Fixes #1")
    ejected, sha2 = standin.open_pull(REPO, "b", "Fixes #1")
    merged, sha3 = standin.open_pull(REPO, "c", "Fixes #1")
    for number, head in ((queued, sha), (ejected, sha2), (merged, sha3)):
        client.enqueue_pull(REPO, number, head)
    assert standin.eject_from_merge_queue(REPO, ejected)
    standin.land_merge_queue(REPO)  # merges queued and merged...
    again, sha4 = standin.open_pull(REPO, "d", "Fixes #1")
    client.enqueue_pull(REPO, again, sha4)  # ...and this one waits
    before = _graphql_requests(standin)

    pictures = {
        p.pr_number: p for p in client.pull_checks(REPO, [ejected, merged, again], merge_queue=True)
    }

    assert _graphql_requests(standin) == before + 1
    assert (pictures[ejected].in_merge_queue, pictures[ejected].merged) == (False, False)
    assert (pictures[merged].in_merge_queue, pictures[merged].merged) == (False, True)
    assert (pictures[again].in_merge_queue, pictures[again].merged) == (True, False)
    [plain] = client.pull_checks(REPO, [again])
    assert plain.in_merge_queue is None  # not asked: the field is not in the query
    body = standin.requests[-1].body
    assert "mergeQueueEntry" not in body["query"]
