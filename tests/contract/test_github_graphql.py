"""What the GitHub client sends over GraphQL, checked against GitHub's published schema.

The schema is GitHub's own (``@octokit/graphql-schema``, installed by ``make material``):
every document (and its variables) the client generates in a scripted scenario is
validated with the package's ``validate``, deliberately wrong documents must fail it,
and the subset of the schema the stand-in serves is compared with GitHub's, field by
field. Then the behaviour: the real :class:`GitHubClient` against the running stand-in
(node ids from REST answers used in mutations, fields applied in order, one request a
call, GitHub's errors), checked through the stand-in's state and its REST answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType
from hypothesis import given, settings
from hypothesis import strategies as st

from github_graphql import SCHEMA_JSON, github_schema, validate
from helpers import examples
from valine.core.errors import NotFound
from valine.github.client import GitHubClient, TokenAuth
from valine.ports import GitHubError, IssueUpdate
from valine.testing.github import GitHubStandIn
from valine.testing.github import schema as standin_schema

REPO = "octo/widgets"
QUEUED = "octo/queued"

#: Every root field the client's documents must have used for the scenario to be complete.
CLIENT_FIELDS = (
    "repository(",
    "label(name:",
    "user(login:",
    "createLabel(",
    "removeLabelsFromLabelable(",
    "addLabelsToLabelable(",
    "addAssigneesToAssignable(",
    "addComment(",
    "closeIssue(",
    "enqueuePullRequest(",
    "pullRequest(",
    "issues(",
    "mergeQueueEntry",
)


@pytest.fixture
def standin() -> Iterator[GitHubStandIn]:
    """A running stand-in with one empty repository."""
    with GitHubStandIn() as running:
        running.add_repo(REPO)
        yield running


@pytest.fixture
def client(standin: GitHubStandIn) -> Iterator[GitHubClient]:
    """A client with the stand-in's personal access token (never sleeps)."""
    with GitHubClient(
        TokenAuth(standin.token), api_url=standin.url, sleep=lambda _s: None
    ) as running:
        yield running


def _post(standin: GitHubStandIn, query: str, variables: dict[str, Any] | None = None) -> Any:
    """The stand-in's raw GraphQL answer (status 200 asserted)."""
    response = httpx.post(
        f"{standin.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"authorization": f"token {standin.token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


# -- every document the client generates validates against GitHub's schema ------------


@pytest.fixture(scope="module", params=["published", "served"])
def scenario(request: pytest.FixtureRequest) -> Iterator[list[tuple[dict[str, Any], Any]]]:
    """``(request body, answer)`` of every GraphQL request of a scripted scenario.

    Once on GitHub's published schema, once on the served part alone (what a fresh clone
    without ``make material`` runs, e.g. ``make demo``): the client must see no difference.
    """
    published = SCHEMA_JSON if request.param == "published" else None
    with GitHubStandIn(graphql_schema=published) as standin:
        assert standin.graphql_schema.source == request.param
        task = standin.add_issue(REPO, "task", ["ready", "backend"], assignees=["ada"])
        other = standin.add_issue(REPO, "other", ["ready"])
        standin.add_user("grace")
        standin.add_issue(QUEUED, "bug")
        pr, sha = standin.open_pull(QUEUED, "fix", "Fixes #1")
        standin.require_merge_queue(QUEUED)
        with GitHubClient(TokenAuth(standin.token), api_url=standin.url) as client:
            ids = client.repository_ids(REPO, ["ready", "backend", "missing"], ["ada", "grace"])
            created = client.create_labels(REPO, ids.repository, ["in-progress", "blocked"])
            issues = {i.number: i for i in client.list_ready_issues(REPO, "ready")}
            client.update_issues(
                REPO,
                [
                    IssueUpdate(
                        issues[task].node_id,
                        add_labels=(created["in-progress"],),
                        remove_labels=(ids.labels["ready"], ids.labels["backend"]),
                        assignees=(ids.users["grace"],),
                        comment="Run r-1 started",
                        close=True,
                    ),
                    IssueUpdate(issues[other].node_id, add_labels=(created["blocked"],)),
                ],
            )
            client.repository_ids(REPO, [])  # no labels, no users
            client.read_ready_issues(REPO, "ready", ["ready", "missing"], ["grace", "ghost"])
            client.enqueue_pull(QUEUED, pr, sha)
            [queued] = client.pull_checks(QUEUED, [pr], merge_queue=True)
            assert queued.in_merge_queue is True
            checked, head = standin.open_pull(REPO, "checked", "Fixes #1")
            standin.report_checks(REPO, head, "success", app="github-actions", names=["a", "b"])
            standin.report_checks(REPO, head, None, status="queued", check_runs=0, app="idle")
            standin.set_status(REPO, head, "ci/jenkins", "pending")
            pictures = client.pull_checks(REPO, [checked, 9999])
            assert [(p.pr_number, p.head_sha, len(p.checks)) for p in pictures] == [
                (checked, head, 4)
            ]
        yield [(r.body, r.response) for r in standin.requests if r.path == "/graphql"]


def test_scenario_uses_every_kind_of_field(scenario: list[tuple[dict[str, Any], Any]]) -> None:
    documents = " ".join(body["query"] for body, _ in scenario)
    missing = [name for name in CLIENT_FIELDS if name not in documents]
    assert missing == []


def test_the_stand_in_answered_every_scenario_request_without_errors(
    scenario: list[tuple[dict[str, Any], Any]],
) -> None:
    # Except the pull request the checks query asks for on purpose that does not exist.
    errors = [answer.get("errors") for _, answer in scenario]
    missing = [e for e in errors if e and all(x.get("type") == "NOT_FOUND" for x in e)]
    assert len(missing) == 2  # and the login that does not exist
    assert [e for e in errors if e and e not in missing] == []


def test_every_client_document_validates_against_githubs_schema(
    scenario: list[tuple[dict[str, Any], Any]],
) -> None:
    bodies = [body for body, _ in scenario]
    results = validate(bodies)

    problems = {body["query"]: errors for body, errors in zip(bodies, results, strict=True)}
    assert {query: errors for query, errors in problems.items() if errors} == {}


WRONG = {
    "unknown payload field": (
        "mutation($a0: AddLabelsToLabelableInput!) "
        "{ a0: addLabelsToLabelable(input: $a0) { nonsense } }",
        None,
        'Cannot query field "nonsense" on type "AddLabelsToLabelablePayload".',
    ),
    "wrong input type name": (
        "mutation($a0: AddLabelInput!) { a0: addLabelsToLabelable(input: $a0) "
        "{ clientMutationId } }",
        None,
        'Unknown type "AddLabelInput".',
    ),
    "input type of another mutation": (
        "mutation($c0: AddCommentInput!) { c0: closeIssue(input: $c0) { clientMutationId } }",
        None,
        'Variable "$c0" of type "AddCommentInput!" used in position expecting type '
        '"CloseIssueInput!".',
    ),
    "misspelt input field": (
        "mutation($a0: AddLabelsToLabelableInput!) "
        "{ a0: addLabelsToLabelable(input: $a0) { clientMutationId } }",
        {"a0": {"labelableId": "I_1", "labelId": ["LA_1"]}},
        'Field "labelIds" of required type "[ID!]!" was not provided.',
    ),
    "syntax error": ("query { user(login: $u0) { id }", None, "Syntax Error"),
}


@pytest.fixture(scope="module")
def wrong_results() -> dict[str, list[str]]:
    """GitHub's validation errors of every :data:`WRONG` document, in one node run."""
    items: list[Any] = [
        query if variables is None else {"query": query, "variables": variables}
        for query, variables, _ in WRONG.values()
    ]
    return dict(zip(WRONG, validate(items), strict=True))


@pytest.mark.parametrize("case", list(WRONG))
def test_a_wrong_document_fails_validation(wrong_results: dict[str, list[str]], case: str) -> None:
    expected = WRONG[case][2]
    errors = wrong_results[case]

    assert errors, f"{case}: GitHub's schema accepted it"
    assert any(expected in error for error in errors), errors


def test_the_served_schema_is_a_part_of_githubs() -> None:
    """Every type, field, argument, input field and enum value the stand-in serves, as GitHub's."""
    github_schema()  # fails clearly without the material
    theirs = standin_schema.published_schema(SCHEMA_JSON)
    served = standin_schema.served_schema()
    compared, problems = 0, []
    for name, mine in served.type_map.items():
        if name.startswith("__") or name in ("String", "Int", "Float", "Boolean", "ID"):
            continue
        other = theirs.get_type(name)
        compared += 1
        if other is None or type(other) is not type(mine):
            problems.append(f"{name}: GitHub has {other!r}, the stand-in {mine!r}")
        elif isinstance(mine, GraphQLEnumType):
            if sorted(mine.values) != sorted(other.values):  # type: ignore[attr-defined]
                problems.append(f"enum {name}: GitHub {sorted(other.values)}")  # type: ignore[attr-defined]
        elif isinstance(mine, GraphQLInputObjectType):
            their_inputs = {f: str(x.type) for f, x in other.fields.items()}  # type: ignore[attr-defined]
            if {f: str(x.type) for f, x in mine.fields.items()} != their_inputs:
                problems.append(f"input {name}: GitHub {their_inputs}")
        elif isinstance(mine, GraphQLObjectType):
            problems += _field_problems(name, mine, other)
    assert compared >= 40
    assert problems == []


def _field_problems(name: str, mine: GraphQLObjectType, theirs: Any) -> list[str]:
    """How the stand-in's fields of object type ``name`` differ from GitHub's."""
    problems = []
    for field_name, field in mine.fields.items():
        other = theirs.fields.get(field_name)
        if other is None:
            problems.append(f"{name}.{field_name}: not in GitHub's schema")
            continue
        mine_args = {a: str(x.type) for a, x in field.args.items()}
        their_args = {a: str(x.type) for a, x in other.args.items()}
        if (str(field.type), mine_args) != (str(other.type), their_args):
            problems.append(f"{name}.{field_name}: GitHub {other.type} {their_args}")
    return problems


def test_the_stand_in_validates_on_githubs_published_schema_when_installed(
    standin: GitHubStandIn,
) -> None:
    assert standin.graphql_schema.source == "published"
    assert standin.graphql_schema.executable is standin_schema.published_schema(SCHEMA_JSON)


# -- behaviour: the client against the stand-in ----------------------------------------


def test_repository_ids_of_labels_and_users(standin: GitHubStandIn, client: GitHubClient) -> None:
    number = standin.add_issue(REPO, "task", ["Ready"], assignees=["ada"])
    standin.add_issue(REPO, "done", ["gone"])
    standin.set_labels(REPO, 2, [])  # a label once used stays in the repository
    created = standin.add_label(REPO, "in-progress")
    grace = standin.add_user("grace")
    [rest] = client.list_ready_issues(REPO, "ready")  # GET: the REST view of the same things
    [rest_issue] = standin.requests[-1].response
    before = client.request_count

    ids = client.repository_ids(REPO, ["ready", "gone", "in-progress", "never"], ["ada", "grace"])

    assert client.request_count == before + 1
    assert rest.number == number
    assert ids.labels == {
        "ready": rest_issue["labels"][0]["node_id"],  # names match case-insensitively
        "gone": standin.labels(REPO)["gone"],
        "in-progress": created,
    }
    assert ids.users == {"ada": rest_issue["assignees"][0]["node_id"], "grace": grace}
    assert rest.node_id == rest_issue["node_id"]
    assert ids.repository


def test_an_unknown_label_is_null_without_error(standin: GitHubStandIn) -> None:
    answer = _post(
        standin,
        "query($owner: String!, $name: String!, $l0: String!) "
        "{ repository(owner: $owner, name: $name) { id l0: label(name: $l0) { id } } }",
        {"owner": "octo", "name": "widgets", "l0": "never-used"},
    )

    assert answer == {
        "data": {"repository": {"id": answer["data"]["repository"]["id"], "l0": None}}
    }


def test_an_unknown_login_or_repository_is_null_with_a_not_found_error(
    standin: GitHubStandIn,
) -> None:
    answer = _post(
        standin,
        "query($owner: String!, $name: String!, $u0: String!) "
        "{ repository(owner: $owner, name: $name) { id } u0: user(login: $u0) { id } }",
        {"owner": "octo", "name": "nothing", "u0": "ghost"},
    )

    assert answer["data"] == {"repository": None, "u0": None}
    assert [(e["type"], e["path"], e["message"]) for e in answer["errors"]] == [
        (
            "NOT_FOUND",
            ["repository"],
            "Could not resolve to a Repository with the name 'octo/nothing'.",
        ),
        ("NOT_FOUND", ["u0"], "Could not resolve to a User with the login of 'ghost'."),
    ]


def test_repository_ids_leaves_out_an_unknown_login(client: GitHubClient) -> None:
    ids = client.repository_ids(REPO, [], ["ghost"])

    assert ids.users == {}


def test_repository_ids_of_a_missing_repository_is_not_found(client: GitHubClient) -> None:
    with pytest.raises(NotFound):
        client.repository_ids("octo/nothing", ["ready"])


def test_create_labels_in_one_mutation(standin: GitHubStandIn, client: GitHubClient) -> None:
    repository = client.repository_ids(REPO, []).repository
    before = client.request_count

    created = client.create_labels(REPO, repository, ["in-progress", "blocked"])

    assert client.request_count == before + 1
    assert created == {
        "in-progress": standin.labels(REPO)["in-progress"],
        "blocked": standin.labels(REPO)["blocked"],
    }
    assert client.repository_ids(REPO, ["blocked"]).labels == {"blocked": created["blocked"]}
    with pytest.raises(GitHubError, match="Name has already been taken"):
        client.create_labels(REPO, repository, ["Blocked"])


def test_update_issues_applies_every_field_in_order(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    task = standin.add_issue(REPO, "task", ["ready", "backend"], assignees=["ada"])
    other = standin.add_issue(REPO, "other", ["ready"])
    standin.add_user("grace")
    ids = client.repository_ids(REPO, ["ready", "backend"], ["grace"])
    created = client.create_labels(REPO, ids.repository, ["in-progress"])
    node = {i.number: i.node_id for i in client.list_ready_issues(REPO, "ready")}
    before = client.request_count

    client.update_issues(
        REPO,
        [
            IssueUpdate(
                node[task],
                # removed then added back: only serial, in-order execution keeps it
                remove_labels=(ids.labels["ready"], ids.labels["backend"]),
                add_labels=(ids.labels["ready"], created["in-progress"]),
                assignees=(ids.users["grace"],),
                comment="Run r-1 started",
                close=True,
            ),
            IssueUpdate(node[other], remove_labels=(ids.labels["ready"],)),
            IssueUpdate(node[other], add_labels=(ids.labels["ready"],), comment="second"),
        ],
    )

    assert client.request_count == before + 1
    request = standin.requests[-1]
    assert (request.method, request.path, request.status) == ("POST", "/graphql", 200)
    assert set(request.body) == {"query", "variables"}
    done = standin.issue(REPO, task)
    assert done.labels == ["ready", "in-progress"]
    assert done.assignees == ["ada", "grace"]
    assert [(c.body, c.author) for c in done.comments] == [("Run r-1 started", "valine[bot]")]
    assert (done.state, done.state_reason) == ("closed", "completed")
    assert done.closed_at is not None
    assert standin.issue(REPO, other).labels == ["ready"]
    assert standin.comments(REPO, other) == ["second"]
    # the REST view agrees: GET /issues and GET /issues/{n}
    rest = httpx.get(
        f"{standin.url}/repos/{REPO}/issues/{task}",
        headers={"authorization": f"token {standin.token}"},
    ).json()
    assert [label["name"] for label in rest["labels"]] == ["ready", "in-progress"]
    assert [user["login"] for user in rest["assignees"]] == ["ada", "grace"]
    assert [i.number for i in client.list_ready_issues(REPO, "ready")] == [other]
    listed = httpx.get(
        f"{standin.url}/repos/{REPO}/issues",
        params={"state": "closed"},
        headers={"authorization": f"token {standin.token}"},
    ).json()
    [closed] = listed
    assert (closed["number"], closed["state"], closed["state_reason"]) == (
        task,
        "closed",
        "completed",
    )
    assert closed["comments"] == 1
    assert [label["name"] for label in closed["labels"]] == ["ready", "in-progress"]


def test_update_issues_with_a_pull_request_node_id(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    pr, _ = standin.open_pull(REPO, "feature", "")
    client.get_pull(REPO, pr)
    node_id = standin.requests[-1].response["node_id"]  # GET /pulls/{n}: the PR's own id

    client.update_issues(REPO, [IssueUpdate(node_id, comment="from the orchestrator")])

    assert standin.comments(REPO, pr) == ["from the orchestrator"]


def test_an_unknown_node_id_fails_the_field_and_keeps_the_others(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number = standin.add_issue(REPO, "task", ["ready"])
    [issue] = client.list_ready_issues(REPO, "ready")
    ready = client.repository_ids(REPO, ["ready"]).labels["ready"]

    with pytest.raises(GitHubError) as failure:
        client.update_issues(
            REPO,
            [
                IssueUpdate(issue.node_id, comment="before"),
                IssueUpdate("SV85OTk5OTk", add_labels=(ready,)),
                IssueUpdate(issue.node_id, comment="after"),
            ],
        )

    assert "Could not resolve to a node with the global id of 'SV85OTk5OTk'" in str(failure.value)
    answer = standin.requests[-1].response
    assert answer["data"] == {
        "c0": {"clientMutationId": None},
        "a1": None,
        "c2": {"clientMutationId": None},
    }
    assert [(e["type"], e["path"]) for e in answer["errors"]] == [("NOT_FOUND", ["a1"])]
    # GraphQL runs mutation fields serially; a failed one does not stop the rest
    assert standin.comments(REPO, number) == ["before", "after"]


@pytest.mark.parametrize("wrong", ["label", "user"])
def test_an_unknown_label_or_user_id_is_named_in_the_error(
    standin: GitHubStandIn, client: GitHubClient, wrong: str
) -> None:
    number = standin.add_issue(REPO, "task", ["ready"])
    [issue] = client.list_ready_issues(REPO, "ready")
    bogus = "TEFfNDI" if wrong == "label" else "VV80Mg"
    update = (
        IssueUpdate(issue.node_id, add_labels=(bogus,))
        if wrong == "label"
        else IssueUpdate(issue.node_id, assignees=(bogus,))
    )

    with pytest.raises(GitHubError, match=f"global id of '{bogus}'"):
        client.update_issues(REPO, [update])

    unchanged = standin.issue(REPO, number)
    assert (unchanged.labels, unchanged.assignees) == (["ready"], [])


def test_enqueue_then_land_the_merge_queue(standin: GitHubStandIn, client: GitHubClient) -> None:
    bug = standin.add_issue(QUEUED, "bug")
    pr, sha = standin.open_pull(QUEUED, "fix", f"Fixes #{bug}")
    standin.require_merge_queue(QUEUED)
    before = client.request_count

    client.enqueue_pull(QUEUED, pr, sha)

    assert client.request_count == before + 2  # the pull's node id, then the mutation
    assert standin.merge_queue(QUEUED) == [pr]
    assert standin.pull(QUEUED, pr).merged is False
    entry = standin.requests[-1].response["data"]["enqueuePullRequest"]["mergeQueueEntry"]
    assert entry["id"]

    [(landed, merge_sha)] = standin.land_merge_queue(QUEUED)

    assert landed == pr
    pull = standin.pull(QUEUED, pr)
    assert (pull.merged, pull.head_sha, pull.merge_commit_sha) == (True, sha, merge_sha)
    assert (standin.issue(QUEUED, bug).state, standin.issue(QUEUED, bug).state_reason) == (
        "closed",
        "completed",
    )
    assert standin.merge_queue(QUEUED) == []
    merged = client.get_pull(QUEUED, pr)
    assert (merged.merged, merged.state) == (True, "closed")


def test_enqueue_with_a_stale_head_is_refused(standin: GitHubStandIn, client: GitHubClient) -> None:
    pr, stale = standin.open_pull(QUEUED, "fix", "")
    standin.require_merge_queue(QUEUED)
    standin.push(QUEUED, pr)

    with pytest.raises(GitHubError, match="Head branch was modified"):
        client.enqueue_pull(QUEUED, pr, stale)

    assert standin.merge_queue(QUEUED) == []
    assert standin.land_merge_queue(QUEUED) == []


def test_enqueue_without_a_merge_queue_is_refused(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    pr, sha = standin.open_pull(REPO, "fix", "")

    with pytest.raises(GitHubError, match=r"[Mm]erge queue"):
        client.enqueue_pull(REPO, pr, sha)

    assert standin.merge_queue(REPO) == []
    assert standin.pull(REPO, pr).merged is False


def test_a_push_drops_the_pull_request_from_the_queue(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    first, first_sha = standin.open_pull(QUEUED, "one", "")
    second, second_sha = standin.open_pull(QUEUED, "two", "")
    standin.require_merge_queue(QUEUED)
    client.enqueue_pull(QUEUED, first, first_sha)
    client.enqueue_pull(QUEUED, second, second_sha)
    client.enqueue_pull(QUEUED, first, first_sha)  # already queued: stays where it is

    assert standin.merge_queue(QUEUED) == [first, second]
    standin.push(QUEUED, first)

    assert standin.merge_queue(QUEUED) == [second]
    assert [number for number, _ in standin.land_merge_queue(QUEUED)] == [second]


# -- the stand-in's GraphQL endpoint as GitHub's ---------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("query { ", "Syntax Error: Expected Name, found <EOF>."),
        ("{ nonsense }", "Cannot query field 'nonsense' on type 'Query'."),
        ("{ viewer { login } }", "Field 'viewer' on type 'Query' is in GitHub's schema but"),
        ("{ ...Me } fragment Me on Query { viewer { id } }", "the GitHub stand-in does not"),
        ('{ user(login: "ada") }', "Field 'user' of type 'User' must have a selection"),
        ('query($u: String!) { user(login: "ada") { id } }', "Variable '$u' is never used."),
        ("query($u: String) { user(login: $u) { id } }", "used in position expecting type"),
        ("query($u: Strin!) { user(login: $u) { id } }", "Unknown type 'Strin'."),
        ("subscription { user }", "The subscription operation is not supported"),
    ],
)
def test_the_stand_in_refuses_what_it_does_not_understand_with_a_graphql_error(
    standin: GitHubStandIn, client: GitHubClient, document: str, message: str
) -> None:
    with pytest.raises(GitHubError, match="GraphQL: ") as failure:
        client.graphql(document, {})

    assert message in str(failure.value)
    assert standin.requests[-1].status == 200
    assert "data" not in standin.requests[-1].response  # nothing ran


def test_invalid_variables_are_refused_before_anything_runs(
    standin: GitHubStandIn, client: GitHubClient
) -> None:
    number = standin.add_issue(REPO, "task", ["ready"])
    [issue] = client.list_ready_issues(REPO, "ready")
    node_id = issue.node_id
    document = (
        "mutation($c0: AddCommentInput!, $a1: AddLabelsToLabelableInput!) { "
        "c0: addComment(input: $c0) { clientMutationId } "
        "a1: addLabelsToLabelable(input: $a1) { clientMutationId } }"
    )
    variables = {
        "c0": {"subjectId": node_id, "body": "never posted"},
        "a1": {"labelableId": node_id, "labelId": ["x"]},
    }

    with pytest.raises(GitHubError, match=r"Variable '\$a1' has invalid value"):
        client.graphql(document, variables)

    assert standin.comments(REPO, number) == []
    assert validate([{"query": document, "variables": variables}])[0] != []


def test_graphql_needs_a_token_and_counts_its_own_rate_limit(standin: GitHubStandIn) -> None:
    document = '{ user(login: "octocat") { id } }'

    anonymous = httpx.post(f"{standin.url}/graphql", json={"query": document})
    answer = httpx.post(
        f"{standin.url}/graphql",
        json={"query": document},
        headers={"authorization": f"bearer {standin.token}"},
    )

    assert anonymous.status_code == 401
    assert anonymous.json()["message"] == "This endpoint requires you to be authenticated."
    assert answer.status_code == 200
    assert answer.json()["errors"][0]["type"] == "NOT_FOUND"  # nobody seen yet
    assert answer.headers["x-ratelimit-resource"] == "graphql"
    rest = httpx.get(
        f"{standin.url}/repos/{REPO}/issues", headers={"authorization": f"token {standin.token}"}
    )
    assert (rest.headers["x-ratelimit-resource"], rest.headers["x-ratelimit-used"]) == ("core", "1")
    recorded = standin.requests[-2]
    assert (recorded.method, recorded.path, recorded.body) == (
        "POST",
        "/graphql",
        {"query": document},
    )


#: A document the client never sends, valid on GitHub's schema and on the served part:
#: named operations, fragments, inline fragments, aliases, literals, ``__typename``.
ANY_VALID = """
query Other { user(login: "nobody") { id } }
query Picture($owner: String!, $name: String!) {
  ...Repo
  me: user(login: "ada") { __typename login }
}
fragment Repo on Query {
  repository(owner: $owner, name: $name) {
    ... on Repository { nameWithOwner }
    ready: label(name: "READY") { name color }
    pullRequest(number: 2) {
      headRefName
      commits(last: 1) {
        totalCount
        nodes { commit { oid checkSuites(first: 5) { nodes { app { slug } conclusion } } } }
      }
    }
  }
}
"""


@pytest.mark.parametrize("published", [SCHEMA_JSON, None], ids=["published", "served"])
def test_any_valid_document_on_the_served_fields_runs(published: Any) -> None:
    with GitHubStandIn(graphql_schema=published) as standin:
        standin.add_issue(REPO, "task", ["ready"], assignees=["ada"])
        pr, sha = standin.open_pull(REPO, "feature", "Fixes #1")
        standin.report_checks(REPO, sha, "success", app="github-actions")
        answer = httpx.post(
            f"{standin.url}/graphql",
            json={
                "query": ANY_VALID,
                "operationName": "Picture",
                "variables": {"owner": "octo", "name": "widgets"},
            },
            headers={"authorization": f"token {standin.token}"},
        ).json()

    color = answer["data"]["repository"]["ready"].pop("color")
    assert re.fullmatch(r"[0-9a-f]{6}", color)
    assert pr == 2
    assert answer == {
        "data": {
            "repository": {
                "nameWithOwner": REPO,
                "ready": {"name": "ready"},
                "pullRequest": {
                    "headRefName": "feature",
                    "commits": {
                        "totalCount": 1,
                        "nodes": [
                            {
                                "commit": {
                                    "oid": sha,
                                    "checkSuites": {
                                        "nodes": [
                                            {
                                                "app": {"slug": "github-actions"},
                                                "conclusion": "SUCCESS",
                                            }
                                        ]
                                    },
                                }
                            }
                        ],
                    },
                },
            },
            "me": {"__typename": "User", "login": "ada"},
        }
    }


#: Pieces of GraphQL documents to draw from: the served fields, syntax, wrong things.
_PIECES = [
    "query",
    "mutation",
    "subscription",
    "fragment",
    "on",
    "{",
    "}",
    "(",
    ")",
    ":",
    "$v",
    "...",
    "@skip(if: true)",
    "!",
    "[",
    "]",
    "=",
    '"x"',
    "1",
    "-2.5e3",
    "null",
    "true",
    "repository",
    "owner",
    "name",
    "label",
    "pullRequest",
    "number",
    "commits",
    "first",
    "last",
    "nodes",
    "commit",
    "checkSuites",
    "checkRuns",
    "status",
    "user",
    "login",
    "id",
    "addComment",
    "input",
    "closeIssue",
    "clientMutationId",
    "__typename",
    "viewer",
    "String!",
    "Int",
    "ID!",
    "AddCommentInput!",
    "#",
    "\\u0000",
    '"""',
    "\n",
]


@settings(max_examples=examples(300))
@given(
    pieces=st.lists(st.sampled_from(_PIECES), max_size=40),
    variables=st.dictionaries(
        st.sampled_from(["v", "owner", "input"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=6,
        ),
    ),
)
def test_no_document_crashes_the_graphql_endpoint(
    endpoint: tuple[GitHubStandIn, httpx.Client], pieces: list[str], variables: dict[str, Any]
) -> None:
    """Whatever arrives: HTTP 200 and GitHub's shape, and a refused document changes nothing."""
    standin, http = endpoint
    before = standin.comments(REPO, 1)
    response = http.post("/graphql", json={"query": " ".join(pieces), "variables": variables})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) <= {"data", "errors"} and answer
    for error in answer.get("errors", []):
        assert isinstance(error["message"], str) and error["message"]
    if "data" not in answer:
        assert standin.comments(REPO, 1) == before


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[GitHubStandIn, httpx.Client]]:
    """One stand-in for every drawn document (one issue to comment on)."""
    with GitHubStandIn() as running:
        running.add_issue(REPO, "target")
        headers = {"authorization": f"token {running.token}"}
        with httpx.Client(base_url=running.url, headers=headers) as http:
            yield running, http
