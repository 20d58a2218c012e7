"""A GitHub App over several repositories: one installation token per installation.

The stand-in scopes an installation token as GitHub does: a repository of another
installation is 404 on REST and NOT_FOUND on GraphQL, so a token sent to the wrong
repository fails the request instead of passing silently.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from helpers import rsa_key_pair
from valine.core.policy import rules_from_mapping
from valine.github.client import AppAuth, GitHubClient
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
