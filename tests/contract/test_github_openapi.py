"""What the GitHub client sends and the stand-in answers, checked against GitHub's OpenAPI.

The description is GitHub's own (``@octokit/openapi``, ``generated/api.github.com.json``,
installed by ``make material``). A scripted scenario drives :class:`GitHubClient` against
the stand-in; then every recorded exchange is matched to its operation (concrete path to
path template) and checked: query parameters are declared and valid, the request body
validates against the operation's ``requestBody`` schema, the status is one the
operation declares, and the stand-in's answer validates against that status's schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from typing import Any

import httpx
import pytest
from jsonschema import FormatChecker, ValidationError
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from helpers import ROOT, rsa_key_pair
from valine.core.errors import NotFound
from valine.github.client import AppAuth, GitHubClient, TokenAuth
from valine.ports import HeadMoved, MergeQueueRequired
from valine.testing.github import GitHubStandIn, RecordedRequest

SPEC_PATH = ROOT / ".cache/material/api.github.com.json"
SPEC_URI = "urn:github:api.github.com.json"
REPO = "octo/widgets"


class OpenAPI:
    """GitHub's REST description: operation lookup and schema validation."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource(contents=document, specification=DRAFT4)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self.format_checker = FormatChecker()  # date-time and friends ...
        self.format_checker.checkers.update(oas30_format_checker.checkers)  # ... + int64 etc.
        self._templates = sorted(
            (
                (re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))), path)
                for path in document["paths"]
            ),
            key=lambda item: item[1].count("{"),  # literal segments win over parameters
        )

    def template(self, path: str) -> str:
        """The path template a concrete path belongs to."""
        for pattern, template in self._templates:
            if pattern.fullmatch(path):
                return template
        raise AssertionError(f"{path} matches no path of GitHub's REST description")

    def resolve(self, pointer: str) -> tuple[str, Any]:
        """Follow ``$ref``s from ``pointer``; the final pointer and the object there."""
        for _ in range(20):
            node: Any = self.document
            for part in pointer.lstrip("/").split("/"):
                key = part.replace("~1", "/").replace("~0", "~")
                node = node[int(key)] if isinstance(node, list) else node[key]
            if not (isinstance(node, dict) and "$ref" in node and len(node) == 1):
                return pointer, node
            pointer = node["$ref"].removeprefix("#")
        raise AssertionError(f"$ref loop at {pointer}")

    def validate(self, pointer: str, instance: Any) -> None:
        """Validate ``instance`` against the schema at ``pointer`` ($refs resolved)."""
        _validator(self, pointer).validate(instance)


@cache
def _validator(spec: OpenAPI, pointer: str) -> Any:
    return OAS30Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"},
        registry=spec.registry,
        format_checker=spec.format_checker,
    )


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    """GitHub's REST OpenAPI description, loaded once (it is 13 MB)."""
    if not SPEC_PATH.exists():
        pytest.fail(f"{SPEC_PATH} is missing: run `make material` (make test does it)")
    document = json.loads(SPEC_PATH.read_text())
    assert document["openapi"].startswith("3.0."), "the validator below is for OpenAPI 3.0"
    return OpenAPI(document)


def check_exchange(spec: OpenAPI, exchange: RecordedRequest) -> None:
    """Raise if one recorded request/answer disagrees with GitHub's description."""
    template = spec.template(exchange.path)
    method = exchange.method.lower()
    op_pointer = f"/paths/{_escape(template)}/{method}"
    _, operation = spec.resolve(op_pointer)
    where = f"{exchange.method} {template}"

    declared = {}
    for index in range(len(operation.get("parameters", []))):
        pointer, parameter = spec.resolve(f"{op_pointer}/parameters/{index}")
        if parameter["in"] == "query":
            declared[parameter["name"]] = (pointer, parameter)
    for name, value in exchange.query.items():
        assert name in declared, f"{where}: undeclared query parameter {name!r}"
        pointer, parameter = declared[name]
        typed: Any = int(value) if parameter["schema"].get("type") == "integer" else value
        spec.validate(f"{pointer}/schema", typed)

    if exchange.body is not None:
        assert "requestBody" in operation, f"{where}: sends a body it does not take"
        body_pointer, _ = spec.resolve(f"{op_pointer}/requestBody")
        spec.validate(f"{body_pointer}/content/application~1json/schema", exchange.body)
    elif "requestBody" in operation:
        assert not spec.resolve(f"{op_pointer}/requestBody")[1].get("required"), where

    status = str(exchange.status)
    if status == "304" and method == "get":
        assert exchange.headers.get("if-none-match"), f"{where}: 304 to an unconditional GET"
        return  # conditional requests apply to every GET; a 304 has no body
    assert status in operation["responses"], f"{where}: undeclared status {status}"
    response_pointer, response = spec.resolve(f"{op_pointer}/responses/{status}")
    content = response.get("content", {})
    if "application/json" not in content:
        assert exchange.response is None, f"{where}: {status} must have no body"
        return
    assert exchange.response is not None, f"{where}: {status} needs a body"
    spec.validate(f"{response_pointer}/content/application~1json/schema", exchange.response)


@pytest.fixture(scope="module")
def scenario() -> Iterator[list[RecordedRequest]]:
    """Every exchange of a scripted plan → approve → execute → checks → ship, and failures."""
    private, public = rsa_key_pair()
    with GitHubStandIn(app_id="7", app_public_key_pem=public, installation_id=9) as standin:
        standin.add_issue(REPO, "blocked", ["ready", "blocked"], assignees=["ada"])
        task = standin.add_issue(
            REPO, "task", ["ready"], milestone="v1", milestone_due_on="2030-01-31T00:00:00Z"
        )
        for i in range(120):
            standin.add_issue(REPO, f"filler {i}", ["ready"])
        pr, sha = standin.open_pull(REPO, f"valine/r-1/{task}", f"Fixes #{task}", labels=["ready"])
        moved_pr, moved_sha = standin.open_pull(REPO, "other", "Refs #1")
        standin.push(REPO, moved_pr)
        standin.report_checks(REPO, sha, "success", app="github-actions", check_runs=3)
        standin.report_checks(REPO, sha, None, status="queued", check_runs=0, app="idle-app")
        pending_sha = standin.push(REPO, moved_pr)
        standin.report_checks(REPO, pending_sha, None, status="in_progress", app="ci")
        fork_pr, _ = standin.open_pull(
            REPO,
            "drive-by",
            f"Fixes #{task}",
            author="stranger",
            head_repo="stranger/widgets",
            author_association="NONE",
        )
        bot_pr, _ = standin.open_pull(REPO, "agent", f"Fixes #{task}", author="agent[bot]")
        queued_repo = "octo/queued"
        queued_pr, queued_sha = standin.open_pull(queued_repo, "fix", "")
        standin.require_merge_queue(queued_repo)

        with (
            GitHubClient(AppAuth("7", private), api_url=standin.url) as app,
            GitHubClient(TokenAuth(standin.token), api_url=standin.url) as client,
        ):
            client.list_ready_issues(REPO, "ready")  # two pages
            client.list_ready_issues(REPO, "ready")  # two 304s
            # relabelling, comments, assignees and closing go over GraphQL (tested against
            # GitHub's schema in test_github_graphql.py), not through these REST exchanges
            client.dispatch_workflow(REPO, "agent.yml", "main", {"issue_number": str(task)})
            client.get_pull(REPO, pr)
            fork = client.get_pull(REPO, fork_pr)
            client.get_pull(REPO, bot_pr)
            # The client reads checks over GraphQL (test_github_graphql.py); the stand-in's
            # REST check suites are still checked against the description, read directly.
            suites_url = f"{standin.url}/repos/{REPO}/commits/{sha}/check-suites"
            auth = {"authorization": f"token {standin.token}"}
            etag = httpx.get(suites_url, headers=auth).headers["etag"]
            assert httpx.get(suites_url, headers={**auth, "if-none-match": etag}).status_code == 304
            httpx.get(
                f"{standin.url}/repos/{REPO}/commits/{pending_sha}/check-suites", headers=auth
            )
            assert fork.number == fork_pr
            client.merge_pull(REPO, pr, sha, "squash")
            with pytest.raises(HeadMoved):
                client.merge_pull(REPO, moved_pr, moved_sha, "merge")
            with pytest.raises(MergeQueueRequired):
                client.merge_pull(queued_repo, queued_pr, queued_sha, "merge")
            with pytest.raises(NotFound):
                client.get_pull(REPO, 9999)
            # valine doctor's reads: the repository, its labels, its hooks (admin only)
            standin.add_hook(REPO, "https://example.invalid/prod/github/webhook", ["issues"])
            client.read_repository(REPO)
            client.read_repository(REPO, "labels")
            client.read_repository(REPO, "hooks")
            standin.set_role(queued_repo, "push")
            with pytest.raises(NotFound):
                client.read_repository(queued_repo, "hooks")
            # and the organisation's webhooks (a token without admin:org_hook: 404)
            standin.add_org_hook("octo", "https://example.invalid/org/github/webhook", ["*"])
            assert len(client.read_organisation_hooks(REPO)) == 1
            standin.add_org("octo", token_reads_hooks=False)
            with pytest.raises(NotFound):
                client.read_organisation_hooks(REPO)
            standin.add_org("octo")
            started = client.dispatch_deployment(REPO, "deploy.yml", "main", {"run_id": "r1"})
            assert started is not None
            standin.advance_workflow_run(REPO, started.id, "completed", "success")
            assert client.workflow_run(REPO, started.id).conclusion == "success"
            assert [r.id for r in client.dispatched_runs(REPO, "deploy.yml", "main", 0)] == [
                started.id
            ]
            app.list_ready_issues(REPO, "ready")  # installation lookup, token, two pages
            app.dispatch_workflow(REPO, "agent.yml", "main", {"issue_number": str(task)})
            # a repository in another installation of the App: its own lookup and token
            standin.install(queued_repo, 10)
            assert app.get_pull(queued_repo, queued_pr).number == queued_pr
        assert standin.installation_of(queued_repo) == 10
        assert [r.path for r in standin.requests if r.path.startswith("/app/")] == [
            "/app/installations/9/access_tokens",
            "/app/installations/10/access_tokens",
        ]
        yield standin.requests


def test_scenario_covers_every_endpoint_the_client_uses(
    scenario: list[RecordedRequest], spec: OpenAPI
) -> None:
    seen = {(r.method, spec.template(r.path), r.status) for r in scenario}
    assert seen >= {
        ("GET", "/repos/{owner}/{repo}/issues", 200),
        ("GET", "/repos/{owner}/{repo}/issues", 304),
        ("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", 204),
        ("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", 200),
        ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", 200),
        ("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs", 200),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200),
        ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 404),
        ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-suites", 200),
        ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-suites", 304),
        ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", 200),
        ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", 405),
        ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", 409),
        ("GET", "/repos/{owner}/{repo}/installation", 200),
        ("POST", "/app/installations/{installation_id}/access_tokens", 201),
        ("GET", "/repos/{owner}/{repo}", 200),
        ("GET", "/repos/{owner}/{repo}/labels", 200),
        ("GET", "/repos/{owner}/{repo}/hooks", 200),
        ("GET", "/repos/{owner}/{repo}/hooks", 404),
        ("GET", "/orgs/{org}/hooks", 200),
        ("GET", "/orgs/{org}/hooks", 404),
    }
    assert any(r.path.endswith("/issues") and r.query.get("page") == "2" for r in scenario)


def test_every_exchange_matches_githubs_description(
    scenario: list[RecordedRequest], spec: OpenAPI
) -> None:
    problems = []
    for exchange in scenario:
        try:
            check_exchange(spec, exchange)
        except (AssertionError, ValidationError) as exc:
            message = exc.message if isinstance(exc, ValidationError) else str(exc)
            problems.append(f"{exchange.method} {exchange.path} {exchange.status}: {message}")
    assert problems == [], "\n".join(problems)


#: A request body the client sent, made wrong: ``(method, field, wrong value, error)``.
WRONG_BODIES = {
    "dispatch inputs as a string": ("POST", "inputs", "issue_number=1", "is not of type 'object'"),
    "unknown merge method": ("PUT", "merge_method", "octopus", "'octopus' is not one of"),
}


@pytest.mark.parametrize("case", list(WRONG_BODIES))
def test_a_wrong_request_body_fails(
    spec: OpenAPI, scenario: list[RecordedRequest], case: str
) -> None:
    method, field, value, message = WRONG_BODIES[case]
    sent = next(r for r in scenario if r.method == method and r.body and field in r.body)
    check_exchange(spec, sent)  # as sent, it is valid
    wrong = replace(sent, body={**sent.body, field: value})

    with pytest.raises(ValidationError, match=message):
        check_exchange(spec, wrong)


def test_a_wrong_response_fails(spec: OpenAPI, scenario: list[RecordedRequest]) -> None:
    get_pull = next(
        r for r in scenario if r.method == "GET" and "/pulls/" in r.path and r.status == 200
    )
    response = {k: v for k, v in get_pull.response.items() if k != "head"}
    wrong = replace(get_pull, response=response)

    with pytest.raises(ValidationError, match="'head' is a required property"):
        check_exchange(spec, wrong)


def test_an_undeclared_status_fails(spec: OpenAPI, scenario: list[RecordedRequest]) -> None:
    token = next(r for r in scenario if r.path.endswith("/access_tokens"))  # GitHub: 201
    wrong = replace(token, status=200)

    with pytest.raises(AssertionError, match="undeclared status 200"):
        check_exchange(spec, wrong)


def test_a_check_suite_without_its_app_fails(
    spec: OpenAPI, scenario: list[RecordedRequest]
) -> None:
    listing = next(r for r in scenario if r.path.endswith("/check-suites") and r.status == 200)
    suites = [
        {k: v for k, v in suite.items() if k != "app"} for suite in listing.response["check_suites"]
    ]
    wrong = replace(listing, response={**listing.response, "check_suites": suites})

    with pytest.raises(ValidationError, match="'app' is a required property"):
        check_exchange(spec, wrong)
