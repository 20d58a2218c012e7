"""A GitHub App over several repositories: one installation token per installation.

The stand-in scopes an installation token as GitHub does: a repository of another
installation is 404 on REST and NOT_FOUND on GraphQL, so a token sent to the wrong
repository fails the request instead of passing silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import rsa_key_pair
from valine import metrics
from valine.core.errors import RateLimited
from valine.core.policy import rules_from_mapping
from valine.github.client import AppAuth, GitHubClient, TokenAuth
from valine.ports import IssueUpdate
from valine.runtime.clients import github_client
from valine.runtime.config import Settings
from valine.runtime.repositories import Repositories
from valine.testing.github import GitHubStandIn

ROCKET, PROBE = "acme/rocket", "other-org/probe"


@pytest.fixture(scope="module")
def app_keys() -> tuple[str, str]:
    return rsa_key_pair()


@pytest.fixture
def standin(app_keys: tuple[str, str]) -> Iterator[GitHubStandIn]:
    """Two repositories in two installations of one App (77 and 88)."""
    _, public = app_keys
    with GitHubStandIn(app_id="4242", app_public_key_pem=public, installation_id=77) as running:
        running.add_issue(ROCKET, "rocket task", ["ready"])
        running.add_issue(PROBE, "probe task", ["ready"])
        running.install(PROBE, 88)
        yield running


def test_a_token_sees_only_its_installations_repositories(
    standin: GitHubStandIn, app_keys: tuple[str, str]
) -> None:
    """The stand-in's model: another installation's repository does not exist for a token."""
    from gidgethub.apps import get_jwt

    private, _ = app_keys
    jwt = get_jwt(app_id="4242", private_key=private)
    with httpx.Client(base_url=standin.url) as http:
        bought = http.post(
            "/app/installations/77/access_tokens", headers={"authorization": f"Bearer {jwt}"}
        )
        assert bought.status_code == 201
        rocket_token = {"authorization": f"token {bought.json()['token']}"}
        assert http.get(f"/repos/{ROCKET}/issues", headers=rocket_token).status_code == 200
        assert http.get(f"/repos/{PROBE}/issues", headers=rocket_token).status_code == 404
        query = 'query { repository(owner: "other-org", name: "probe") { id } }'
        answer = http.post("/graphql", json={"query": query}, headers=rocket_token).json()
        assert answer["data"] == {"repository": None}
        assert answer["errors"][0]["type"] == "NOT_FOUND"
        lookup = http.get(
            f"/repos/{PROBE}/installation", headers={"authorization": f"Bearer {jwt}"}
        )
        assert lookup.json()["id"] == 88
        unknown = http.post(
            "/app/installations/99/access_tokens", headers={"authorization": f"Bearer {jwt}"}
        )
        assert unknown.status_code == 404
        # a personal token sees every repository, as before
        personal = {"authorization": f"token {standin.token}"}
        assert http.get(f"/repos/{PROBE}/issues", headers=personal).status_code == 200


def test_each_repository_gets_its_installations_token_found_and_cached(
    standin: GitHubStandIn, app_keys: tuple[str, str]
) -> None:
    private, _ = app_keys
    with GitHubClient(AppAuth("4242", private), api_url=standin.url) as client:
        for _ in range(3):  # interleaved, as two runs' jobs are
            for repo in (ROCKET, PROBE):
                [issue] = client.list_ready_issues(repo, "ready")
                client.update_issues(repo, [IssueUpdate(issue.node_id, comment=f"on {repo}")])
        count = client.request_count
    bought = [
        (r.method, r.path)
        for r in standin.requests
        if r.path.endswith(("/installation", "/access_tokens"))
    ]
    assert bought == [
        ("GET", f"/repos/{ROCKET}/installation"),
        ("POST", "/app/installations/77/access_tokens"),
        ("GET", f"/repos/{PROBE}/installation"),
        ("POST", "/app/installations/88/access_tokens"),
    ]
    assert all(r.status < 400 for r in standin.requests)
    assert count == 4 + 3 * 2 * 2 == len(standin.requests)
    assert standin.comments(ROCKET, 1) == [f"on {ROCKET}"] * 3
    assert standin.comments(PROBE, 1) == [f"on {PROBE}"] * 3


def test_installations_named_in_the_configuration_need_no_lookup(
    standin: GitHubStandIn, app_keys: tuple[str, str]
) -> None:
    """``GITHUB_APP_INSTALLATION_ID`` is ``GITHUB_REPOSITORY``'s; an entry's own
    ``installation_id`` is its; the others are looked up."""
    private, _ = app_keys
    settings = Settings.from_env(
        {
            "GITHUB_APP_ID": "4242",
            "GITHUB_APP_PRIVATE_KEY": private,
            "GITHUB_APP_INSTALLATION_ID": "77",
            "GITHUB_REPOSITORY": ROCKET,
            "GITHUB_API_URL": standin.url,
        }
    )
    listed = rules_from_mapping({"repositories": [{"name": PROBE, "installation_id": 88}]})
    with github_client(settings, Repositories.of(settings, listed)) as client:
        assert len(client.list_ready_issues(ROCKET, "ready")) == 1
        assert len(client.list_ready_issues(PROBE, "ready")) == 1
    assert [r.path for r in standin.requests if "installation" in r.path] == [
        "/app/installations/77/access_tokens",
        "/app/installations/88/access_tokens",
    ]
    # with GITHUB_APP_INSTALLATION_ID and a second repository not naming its own, that
    # one is looked up (its installation may differ), not sent the first one's token
    standin.clear_requests()
    other = Repositories.of(settings, rules_from_mapping({"repositories": [{"name": PROBE}]}))
    with github_client(settings, other) as client:
        assert len(client.list_ready_issues(PROBE, "ready")) == 1
    assert [r.path for r in standin.requests] == [
        f"/repos/{PROBE}/installation",
        "/app/installations/88/access_tokens",
        f"/repos/{PROBE}/issues",
    ]


# ------------------------------------------------------------------------ rate limits

NOW = 1_900_000_000.0
INSTALLATION = {ROCKET: 77, PROBE: 88}
BUDGETS = [(repo, kind) for repo in (ROCKET, PROBE) for kind in ("core", "graphql")]


@contextmanager
def two_installations(
    private: str, **standin_options: Any
) -> Iterator[tuple[GitHubStandIn, GitHubClient, list[float]]]:
    """A stand-in with ROCKET in installation 77 and PROBE in 88, an App client over both
    on one moving clock (``standin.now``), and the client's sleeps."""
    now = [NOW]
    sleeps: list[float] = []
    with GitHubStandIn(
        app_id="4242", installation_id=77, clock=lambda: now[0], **standin_options
    ) as standin:
        for repo in (ROCKET, PROBE):
            standin.add_issue(repo, f"{repo} task", ["ready"])
        standin.install(PROBE, 88)
        auth = AppAuth(
            "4242", private, installations=tuple((r, str(i)) for r, i in INSTALLATION.items())
        )
        with GitHubClient(
            auth, api_url=standin.url, clock=lambda: now[0], sleep=sleeps.append
        ) as client:
            standin.now = now  # type: ignore[attr-defined]
            yield standin, client, sleeps


@pytest.fixture
def two_budgets(
    app_keys: tuple[str, str],
) -> Iterator[tuple[GitHubStandIn, GitHubClient, list[float]]]:
    """:func:`two_installations`, GraphQL documents not checked against the schema."""
    with two_installations(app_keys[0], graphql_schema=None) as parts:
        yield parts


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spent=st.sets(st.sampled_from(BUDGETS), max_size=3),
    calls=st.lists(st.sampled_from(BUDGETS), min_size=1, max_size=12),
)
def test_a_spent_rate_limit_holds_only_its_installations_requests(
    two_budgets: tuple[GitHubStandIn, GitHubClient, list[float]],
    spent: set[tuple[str, str]],
    calls: list[tuple[str, str]],
) -> None:
    """Two repositories in installations 77 and 88: whichever budgets (REST ``core``,
    GraphQL) of whichever installation are spent -- REST 403 with remaining 0, GraphQL
    ``RATE_LIMITED`` as HTTP 200 -- only that budget's calls wait (here: are put back,
    the reset being an hour away); every other call is served at once. A spent budget
    receives one request (the one that learns the reset), never a second."""
    standin, client, sleeps = two_budgets
    standin.now[0] += 7200  # type: ignore[attr-defined]  # every earlier limit and token gone
    nodes = {repo: client.list_ready_issues(repo, "ready")[0].node_id for repo in INSTALLATION}
    comments = {repo: len(standin.comments(repo, 1)) for repo in INSTALLATION}
    for repo, kind in spent:
        spend = (
            standin.primary_rate_limit_next if kind == "core" else standin.graphql_rate_limit_next
        )
        spend(reset_in=3600, installation=INSTALLATION[repo])
    standin.clear_requests()
    sleeps.clear()
    for repo, kind in calls:
        try:
            if kind == "core":
                client.list_ready_issues(repo, "ready")
            else:
                client.update_issues(repo, [IssueUpdate(nodes[repo], comment="c")])
        except RateLimited:
            assert (repo, kind) in spent
        else:
            assert (repo, kind) not in spent
    assert sleeps == []  # nothing waited: a held budget's call is put back at once
    sent = Counter(
        (r.budget, "graphql" if r.path == "/graphql" else "core") for r in standin.requests
    )
    for repo, kind in BUDGETS:
        budget = (f"installation:{INSTALLATION[repo]}", kind)
        asked = calls.count((repo, kind))
        assert sent[budget] == (min(asked, 1) if (repo, kind) in spent else asked)
    for repo in INSTALLATION:
        served = 0 if (repo, "graphql") in spent else calls.count((repo, "graphql"))
        assert len(standin.comments(repo, 1)) == comments[repo] + served


def test_the_rate_limit_gauge_shows_the_lowest_installations_budget(
    app_keys: tuple[str, str],
) -> None:
    """Installation 77 has spent 9 of its 10 requests of the hour, 88 only 1: the gauge
    ``github_rate_limit_remaining{resource="core"}`` says 10 %, however many requests the
    fresh installation makes after it (the alarm fires below 10 % of any budget), and
    the spent budget counts as full again once its reset has passed."""
    registry = metrics.Registry()
    previous = metrics.use(registry)
    try:
        with two_installations(app_keys[0], rate_limit=10) as (standin, client, _):
            for i in range(9):  # other labels: no answer is a 304 (which costs nothing)
                client.list_ready_issues(ROCKET, f"label-{i}")
            for i in range(3):
                client.list_ready_issues(PROBE, f"label-{i}")
            assert gauge(registry, "core") == 10.0
            standin.now[0] += 3601  # type: ignore[attr-defined]  # both windows reset
            client.list_ready_issues(PROBE, "label-9")  # only PROBE asks again
            assert gauge(registry, "core") == 90.0  # a new hour: PROBE has spent 1 of 10
    finally:
        metrics.use(previous)


def gauge(registry: metrics.Registry, resource: str) -> float:
    """The rate-limit gauge's value for ``resource``, as ``GET /metrics`` serves it."""
    prefix = f'valine_github_rate_limit_remaining{{resource="{resource}"}} '
    lines = [line for line in registry.render().splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, lines
    return float(lines[0].removeprefix(prefix))


def test_a_personal_token_has_one_budget_for_every_repository(app_keys: tuple[str, str]) -> None:
    """With a token, both repositories spend the token's user budget: one spent limit
    holds them both, as GitHub counts it."""
    with GitHubStandIn(clock=lambda: NOW) as standin:
        for repo in (ROCKET, PROBE):
            standin.add_issue(repo, f"{repo} task", ["ready"])
        with GitHubClient(
            TokenAuth(standin.token), api_url=standin.url, clock=lambda: NOW
        ) as client:
            standin.primary_rate_limit_next(reset_in=3600)
            with pytest.raises(RateLimited):
                client.list_ready_issues(ROCKET, "ready")
            with pytest.raises(RateLimited):
                client.list_ready_issues(PROBE, "ready")
    assert [(r.budget, r.status) for r in standin.requests] == [("user", 403)]


def test_the_stand_in_spends_a_budget_at_its_hours_limit() -> None:
    """GitHub's primary limit by count: the request after the last of the hour is
    refused (403, remaining 0) until the window resets; another budget is not."""
    now = [NOW]
    with (
        GitHubStandIn(rate_limit=3, clock=lambda: now[0]) as standin,
        httpx.Client(base_url=standin.url) as http,
    ):
        standin.add_repo(ROCKET)
        personal = {"authorization": f"token {standin.token}"}
        statuses = [
            http.get(f"/repos/{ROCKET}/issues", headers=personal).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 403]
        refused = http.get(f"/repos/{ROCKET}/issues", headers=personal)
        assert refused.headers["x-ratelimit-remaining"] == "0"
        # the GraphQL budget is apart
        query = {"query": 'query { repository(owner: "acme", name: "rocket") { id } }'}
        assert "errors" not in http.post("/graphql", json=query, headers=personal).json()
        now[0] += 3601
        assert http.get(f"/repos/{ROCKET}/issues", headers=personal).status_code == 200


# ------------------------------------------------------------------------ doctor


def test_doctor_reads_the_organisation_webhooks_with_the_installations_token(
    standin: GitHubStandIn, app_keys: tuple[str, str]
) -> None:
    """PROBE's organisation has the only webhook. Installation 88 without the
    ``organization_hooks`` permission gets 403: 'could not check', not 'missing'; with
    it, the organisation's webhook counts."""
    from valine.core.policy import Policy
    from valine.runtime.doctor import _repository

    private, _ = app_keys
    org = PROBE.partition("/")[0]
    standin.add_org_hook(org, "https://valine.example/github/webhook", ["*"])
    with GitHubClient(AppAuth("4242", private), api_url=standin.url) as client:
        refused = _repository(client, PROBE, Policy(), "https://valine.example")
        standin.add_org(org, hook_readers=[88])
        granted = _repository(client, PROBE, Policy(), "https://valine.example")
    denied = [r for r in standin.requests if r.path == f"/orgs/{org}/hooks"]
    assert [(r.status, r.response["message"] if r.status != 200 else "") for r in denied] == [
        (403, "Resource not accessible by integration"),
        (200, ""),
    ]
    assert all(r.budget == "installation:88" for r in denied)  # PROBE's token, not ROCKET's
    assert [f.level for f in refused if "webhook" in f.what] == ["warn"]
    assert "could not check the organisation webhooks of other-org" in " ".join(
        f.what for f in refused
    )
    assert [f.level for f in granted if "webhook" in f.what] == ["ok"]
    assert "organisation webhook" in " ".join(f.what for f in granted)


def test_an_installation_without_the_webhooks_permission_is_told_which_to_grant(
    standin: GitHubStandIn, app_keys: tuple[str, str]
) -> None:
    """An App has no role in a repository: reading its webhooks takes the Repository
    permission Webhooks (read). Without it GitHub answers 403 "Resource not accessible
    by integration"; the doctor warns and names the permission, then, granted, finds
    the webhook."""
    from valine.core.policy import Policy
    from valine.runtime.doctor import _repository

    private, _ = app_keys
    standin.add_hook(ROCKET, "https://valine.example/github/webhook", ["*"])
    standin.install(ROCKET, 77, reads_hooks=False)
    with GitHubClient(AppAuth("4242", private), api_url=standin.url) as client:
        refused = _repository(client, ROCKET, Policy(), "https://valine.example")
        standin.install(ROCKET, 77)
        granted = _repository(client, ROCKET, Policy(), "https://valine.example")
    reads = [r for r in standin.requests if r.path == f"/repos/{ROCKET}/hooks"]
    assert [r.status for r in reads] == [403, 200]
    warned = [f for f in refused if "webhook" in f.what]
    assert [f.level for f in warned] == ["warn"]
    assert "Repository permission Webhooks: read" in warned[0].what
    assert [f.level for f in granted if "webhook" in f.what] == ["ok"]
