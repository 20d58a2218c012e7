"""The stand-ins' deterministic fault injection (valine.testing.faults), over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from valine.testing import faults
from valine.testing.clock import ManualClock
from valine.testing.discord_standin import DiscordStandIn
from valine.testing.faults import FaultPlan, FaultRequest, Match, Phase
from valine.testing.github import GitHubStandIn

REPO = "octo/widgets"
COMMENT = "mutation($c: AddCommentInput!) { c: addComment(input: $c) { clientMutationId } }"


@pytest.fixture
def clock() -> ManualClock:
    """A hand-moved clock for the GitHub stand-in."""
    return ManualClock(1_900_000_000.0)


@pytest.fixture
def github(clock: ManualClock) -> Iterator[GitHubStandIn]:
    """A GitHub stand-in with one repository, on the hand-moved clock."""
    with GitHubStandIn(clock=clock) as standin:
        standin.add_repo(REPO)
        yield standin


def _http(standin: GitHubStandIn) -> httpx.Client:
    return httpx.Client(
        base_url=standin.url, headers={"Authorization": f"token {standin.token}"}, timeout=5
    )


def _node(http: httpx.Client, number: int) -> str:
    return str(http.get(f"/repos/{REPO}/issues/{number}").json()["node_id"])


def _comment(http: httpx.Client, node_id: str, body: str) -> httpx.Response:
    return http.post(
        "/graphql",
        json={"query": COMMENT, "variables": {"c": {"subjectId": node_id, "body": body}}},
    )


def test_apply_then_fail_applies_the_mutation_and_answers_502(github: GitHubStandIn) -> None:
    number = github.add_issue(REPO, "task")
    with _http(github) as http:
        node_id = _node(http, number)
        github.apply_then_fail_next(502, match=Match(graphql="addComment"))
        first = _comment(http, node_id, "one")
        second = _comment(http, node_id, "two")

    assert first.status_code == 502
    assert second.status_code == 200
    assert github.comments(REPO, number) == ["one", "two"]
    assert [r.fault for r in github.requests[-2:]] == ["http-502", None]


def test_instead_faults_change_nothing(github: GitHubStandIn) -> None:
    number = github.add_issue(REPO, "task")
    with _http(github) as http:
        node_id = _node(http, number)
        github.fail_next(1, 503)
        assert _comment(http, node_id, "lost").status_code == 503

    assert github.comments(REPO, number) == []


def test_a_dropped_answer_still_applied_the_mutation(github: GitHubStandIn) -> None:
    number = github.add_issue(REPO, "task")
    with _http(github) as http:
        node_id = _node(http, number)
        github.apply_then_drop_next(match=Match(method="POST", path="^/graphql$"))
        with pytest.raises(httpx.TransportError):
            _comment(http, node_id, "applied")

    assert github.comments(REPO, number) == ["applied"]


def test_a_fault_strikes_only_the_requests_it_matches(github: GitHubStandIn) -> None:
    number = github.add_issue(REPO, "task")
    with _http(github) as http:
        github.apply_then_fail_next(500, match=Match(graphql="addComment"))
        assert http.get(f"/repos/{REPO}/issues/{number}").status_code == 200
        assert github.faults.pending() == 1
        assert _comment(http, _node(http, number), "x").status_code == 500
    assert github.faults.pending() == 0


def test_graphql_rate_limited_is_http_200_and_lasts_until_the_reset(
    github: GitHubStandIn, clock: ManualClock
) -> None:
    number = github.add_issue(REPO, "task")
    with _http(github) as http:
        node_id = _node(http, number)
        github.graphql_rate_limit_next(reset_in=5)
        limited = [_comment(http, node_id, f"early {i}") for i in range(2)]
        rest = http.get(f"/repos/{REPO}/issues/{number}")  # REST has its own budget
        clock.t += 5
        after = _comment(http, node_id, "after the reset")

    for answer in limited:
        assert answer.status_code == 200
        assert answer.json()["errors"][0]["type"] == "RATE_LIMITED"
        assert answer.headers["x-ratelimit-remaining"] == "0"
        assert int(answer.headers["x-ratelimit-reset"]) == int(clock.t)
    assert rest.status_code == 200
    assert after.json() == {"data": {"c": {"clientMutationId": None}}}
    assert github.comments(REPO, number) == ["after the reset"]


def test_a_primary_limit_refuses_every_rest_request_until_the_reset(
    github: GitHubStandIn, clock: ManualClock
) -> None:
    number = github.add_issue(REPO, "task")
    with _http(github) as http:
        github.primary_rate_limit_next(reset_in=3)
        early = [http.get(f"/repos/{REPO}/issues/{number}") for _ in range(3)]
        clock.t += 3
        late = http.get(f"/repos/{REPO}/issues/{number}")

    assert [a.status_code for a in early] == [403, 403, 403]
    assert {a.headers["x-ratelimit-remaining"] for a in early} == {"0"}
    assert late.status_code == 200
    too_early = [r for r in github.requests if r.at < clock.t]
    assert len(too_early) == 3 and all(r.fault == "primary-limit" for r in too_early)


def test_answers_of_a_spent_limit_say_when_it_was_spent(
    github: GitHubStandIn, clock: ManualClock
) -> None:
    number = github.add_issue(REPO, "task")
    with _http(github) as http:
        github.primary_rate_limit_next(reset_in=3)
        spent_at = clock.t
        http.get(f"/repos/{REPO}/issues/{number}")
        clock.t += 1
        http.get(f"/repos/{REPO}/issues/{number}")
        clock.t += 2
        http.get(f"/repos/{REPO}/issues/{number}")

    spending, repeated, after = github.requests[-3:]
    assert spending.fault == "primary-limit" and spending.spent_since is None
    assert repeated.fault == "primary-limit" and repeated.spent_since == spent_at
    assert repeated.spent_peer == spending.peer != 0  # one keep-alive connection
    assert after.status == 200 and after.spent_since is None


def test_the_policy_is_asked_when_no_queued_fault_matches() -> None:
    plan = FaultPlan()
    seen: list[str] = []

    def every_second_post(request: FaultRequest) -> faults.Fault | None:
        seen.append(request.path)
        return faults.server_error(500) if len(seen) % 2 == 0 else None

    plan.policy = every_second_post
    plan.add(faults.server_error(502, match=Match(path="^/a$")))

    taken = [plan.take(FaultRequest("POST", p)) for p in ("/a", "/b", "/c", "/d")]

    assert [f.status if f else None for f in taken] == [502, None, 500, None]
    assert seen == ["/b", "/c", "/d"]
    assert [(r.path, f.status) for r, f in plan.history] == [("/a", 502), ("/c", 500)]


def test_after_with_no_status_keeps_the_real_answer_and_merges_headers() -> None:
    fault = faults.Fault(Phase.AFTER, None, headers={"x-extra": "1"})
    assert fault.answer((201, {"ok": True}, {"a": "b"})) == (
        201,
        {"ok": True},
        {"a": "b", "x-extra": "1"},
    )


# -- Discord ------------------------------------------------------------------------------

CHANNEL = "1300000000000000001"


def _post(standin: DiscordStandIn, http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return http.post(
        f"{standin.url}/channels/{CHANNEL}/messages",
        json=body,
        headers={"Authorization": f"Bot {standin.bot_token}"},
    )


def test_discord_enforce_nonce_returns_the_first_message() -> None:
    with DiscordStandIn() as standin, httpx.Client(timeout=5) as http:
        body = {"content": "shipped", "nonce": "valine-r1-shipped", "enforce_nonce": True}
        first = _post(standin, http, body)
        again = _post(standin, http, body)
        plain = _post(standin, http, {"content": "shipped", "nonce": "valine-r1-shipped"})
        too_long = _post(standin, http, {"content": "x", "nonce": "n" * 26, "enforce_nonce": True})

    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["nonce"] == "valine-r1-shipped"
    assert plain.json()["id"] != first.json()["id"]  # without enforce_nonce: a new message
    assert too_long.status_code == 400
    assert len(standin.channel_messages(CHANNEL)) == 2


def test_discord_apply_then_fail_creates_the_message_and_answers_502() -> None:
    with DiscordStandIn() as standin, httpx.Client(timeout=5) as http:
        standin.apply_then_fail_next(502, match=Match(method="POST"))
        body = {"content": "ready", "nonce": "valine-r2-ready", "enforce_nonce": True}
        failed = _post(standin, http, body)
        retried = _post(standin, http, body)

    assert failed.status_code == 502
    assert retried.status_code == 200
    assert [m["id"] for m in standin.channel_messages(CHANNEL)] == [retried.json()["id"]]


def test_a_client_that_vanished_is_no_stand_in_error(capsys: pytest.CaptureFixture[str]) -> None:
    with GitHubStandIn() as github:
        server = github._server
        assert server is not None
        for error in (ConnectionResetError(104, "reset by peer"), ValueError("a real bug")):
            try:
                raise error
            except (ConnectionResetError, ValueError):
                server.handle_error(None, ("127.0.0.1", 1))

    printed = capsys.readouterr().err
    assert "ConnectionResetError" not in printed
    assert "ValueError: a real bug" in printed
