"""Several repositories per deployment: the registry, the webhook's filter, job routing."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import WEBHOOK_SECRET, github_headers
from valine import metrics
from valine.core.policy import Policy, rules_from_mapping
from valine.http import Request
from valine.runtime.config import Settings
from valine.runtime.repositories import Repositories, RepositoryQueue, route_jobs
from valine.runtime.wiring import Services
from valine.testing.memory import MemoryJobQueue
from valine.usecases import GITHUB_EVENT, NOTIFY, RECONCILE, SCHEDULE

TWO = {
    "labels": {"ready": "todo"},
    "repositories": [
        {"name": "acme/rocket", "channel_id": "100"},
        {"name": "acme/probe", "channel_id": "200", "labels": {"ready": "go"}},
    ],
}


def registry(environ: dict[str, str], data: dict[str, Any]) -> Repositories:
    return Repositories.of(Settings.from_env(environ), rules_from_mapping(data))


def test_github_repository_alone_is_a_registry_of_one_with_the_top_level_rules() -> None:
    repos = registry({"GITHUB_REPOSITORY": "acme/rocket"}, {"labels": {"ready": "todo"}})
    assert repos.names == ["acme/rocket"]
    only = repos.default
    assert only is not None
    assert only.channel_id is None
    assert only.policy.labels.ready == "todo"
    assert repos.find("ACME/ROCKET") == only  # GitHub's names ignore case
    assert repos.for_channel("100") is None


def test_no_repository_at_all_is_an_empty_registry() -> None:
    repos = registry({}, {})
    assert len(repos) == 0
    assert repos.default is None
    assert not repos.serves("acme/rocket")
    assert not repos.serves(None)


def test_listed_repositories_keep_their_order_and_find_by_channel() -> None:
    repos = registry({}, TWO)
    assert repos.names == ["acme/rocket", "acme/probe"]
    probe = repos.for_channel("200")
    assert probe is not None
    assert probe.name == "acme/probe"
    assert probe.policy.labels.ready == "go"
    assert repos.serves("Acme/Probe")
    assert not repos.serves("acme/other")


def test_github_repository_comes_first_and_takes_its_listed_entry() -> None:
    listed = registry({"GITHUB_REPOSITORY": "acme/probe"}, TWO)
    assert listed.names == ["acme/probe", "acme/rocket"]
    assert listed.default is not None and listed.default.channel_id == "200"
    assert listed.default.policy.labels.ready == "go"
    extra = registry({"GITHUB_REPOSITORY": "acme/legacy", "GITHUB_APP_INSTALLATION_ID": "9"}, TWO)
    assert extra.names == ["acme/legacy", "acme/rocket", "acme/probe"]
    assert extra.default is not None and extra.default.policy.labels.ready == "todo"
    assert extra.installations() == {"acme/legacy": "9"}


# ------------------------------------------------------------------------ the webhook


@pytest.fixture
def services(tmp_path: Path) -> Services:
    config = tmp_path / "valine.toml"
    config.write_text(
        '[[repositories]]\nname = "acme/rocket"\nchannel_id = "100"\n'
        '[[repositories]]\nname = "acme/probe"\nchannel_id = "200"\n'
    )
    return Services(
        Settings.from_env(
            {
                "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "VALINE_CONFIG": str(config),
                "VALINE_STORE": f"sqlite:///{tmp_path}/valine.db",
            }
        )
    )


def deliver(services: Services, event: str, payload: dict[str, Any], delivery: str) -> Any:
    body = json.dumps(payload).encode()
    headers = github_headers(body, event, delivery=delivery)
    request = Request("POST", "/github/webhook", {k.lower(): v for k, v in headers.items()}, body)
    response = services.app().handle(request)
    return response.status, json.loads(response.body)


DELIVERIES = itertools.count()
REPO_NAMES = st.from_regex(r"[A-Za-z0-9_.-]{1,20}/[A-Za-z0-9_.-]{1,20}", fullmatch=True)
EVENTS = {
    "issues": {"action": "labeled", "issue": {"number": 1, "labels": []}},
    "pull_request": {"action": "opened", "number": 2, "pull_request": {"number": 2, "body": ""}},
    "check_suite": {"action": "completed", "check_suite": {"head_sha": "a" * 40}},
    "status": {"sha": "b" * 40, "state": "success", "context": "ci"},
}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one service, by design
@given(
    name=st.sampled_from(["acme/rocket", "ACME/Probe"]) | REPO_NAMES,
    event=st.sampled_from(sorted(EVENTS)),
    n=st.integers(0, 10**9),
)
def test_a_delivery_of_a_repository_not_served_is_202_and_queues_nothing(
    services: Services, name: str, event: str, n: int
) -> None:
    served = services.serves(name)
    before = services.queue.depth()
    payload = {**EVENTS[event], "repository": {"full_name": name}, "n": n}
    status, answer = deliver(services, event, payload, f"d-{next(DELIVERIES)}")
    assert status == 202
    if served:
        assert answer["status"] == "accepted"
        assert services.queue.depth() == before + 1
    else:
        assert answer == {"status": "ignored", "event": event, "reason": "repository not served"}
        assert services.queue.depth() == before


def test_without_any_repository_a_delivery_is_answered_and_nothing_written(
    tmp_path: Path,
) -> None:
    """A service not set up yet (no GITHUB_REPOSITORY) still verifies a delivery, then
    answers 202 "no repository is served", counts it ``unserved`` and writes nothing:
    no job, no dedupe key (the worker used to drop the job it had queued)."""
    bare = Services(
        Settings.from_env(
            {"GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "VALINE_STORE": f"sqlite:///{tmp_path}/v.db"}
        )
    )
    registry = metrics.Registry()
    previous = metrics.use(registry)
    try:
        payload = {**EVENTS["issues"], "repository": {"full_name": "anyone/anything"}}
        status, answer = deliver(bare, "issues", payload, "d-bare")
    finally:
        metrics.use(previous)
    assert (status, answer["reason"]) == (202, "no repository is served")
    assert registry.value("deliveries", event="issues", outcome="unserved") == 1
    assert bare.queue.depth() == 0
    again = deliver(bare, "issues", payload, "d-bare")
    assert again == (202, answer), "no dedupe key was written: not a duplicate"
    assert not bare.serves("anyone/anything")
    body = json.dumps(payload).encode()
    headers = {k.lower(): v for k, v in github_headers(body, "issues", delivery="d-2").items()}
    headers["x-hub-signature-256"] = "sha256=" + "0" * 64
    forged = bare.app().handle(Request("POST", "/github/webhook", headers, body))
    assert forged.status == 401, "still verified first"


def test_each_served_repositorys_delivery_is_queued(services: Services) -> None:
    for number, name in enumerate(["acme/rocket", "ACME/probe", "acme/elsewhere"]):
        payload = {**EVENTS["issues"], "repository": {"full_name": name}}
        deliver(services, "issues", payload, f"d{number}")
    assert services.queue.depth() == 2


# ------------------------------------------------------------------------ jobs


def test_every_job_a_repositorys_use_cases_enqueue_names_it() -> None:
    queue = MemoryJobQueue()
    tagged = RepositoryQueue(queue, "acme/probe")
    assert tagged.enqueue(NOTIFY, {"run_id": "r1"}, dedupe_key="k")
    assert not tagged.enqueue(NOTIFY, {"run_id": "r1"}, dedupe_key="k")
    job = queue.lease(30.0)
    assert job is not None
    assert job.payload == {"run_id": "r1", "repo": "acme/probe"}


def recorder(name: str, seen: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    def record(kind: str) -> Any:
        def handle(payload: dict[str, Any]) -> None:
            seen.append((name, kind, payload))
            if payload.get("fail") == name:
                raise RuntimeError(f"{name} failed")

        return handle

    return {kind: record(kind) for kind in (NOTIFY, RECONCILE, SCHEDULE, GITHUB_EVENT)}


def routed(seen: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    tables = {"acme/rocket": recorder("rocket", seen), "acme/probe": recorder("probe", seen)}
    return route_jobs(
        tables,
        "acme/rocket",
        every_repository=frozenset({RECONCILE, SCHEDULE}),
        github_event_kind=GITHUB_EVENT,
    )


def test_a_job_goes_to_its_repository_and_an_older_one_to_the_first() -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    handlers = routed(seen)
    handlers[NOTIFY]({"run_id": "r1", "repo": "Acme/Probe"})
    handlers[NOTIFY]({"run_id": "r0"})  # enqueued before the repositories were configured
    handlers[NOTIFY]({"run_id": "r9", "repo": "acme/gone"})  # no longer served: dropped
    delivery = {"event": "issues", "payload": {"repository": {"full_name": "acme/probe"}}}
    handlers[GITHUB_EVENT](delivery)
    assert [(name, p.get("run_id")) for name, _, p in seen] == [
        ("probe", "r1"),
        ("rocket", "r0"),
        ("probe", None),
    ]


def test_a_dropped_job_warns_only_when_repositories_are_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A served deployment warns of a stray job; one being tried out (none configured)
    drops every delivery at INFO, so a load does not flood the log at WARNING."""
    delivery = {"event": "issues", "payload": {"repository": {"full_name": "octo/else"}}}
    seen: list[tuple[str, str, dict[str, Any]]] = []
    served = routed(seen)
    trial = route_jobs(
        {"": recorder("blank", seen)},
        "",
        every_repository=frozenset({RECONCILE, SCHEDULE}),
        github_event_kind=GITHUB_EVENT,
    )
    with caplog.at_level(logging.INFO, logger="valine.runtime"):
        served[GITHUB_EVENT](delivery)
        trial[GITHUB_EVENT](delivery)
    levels = [r.levelno for r in caplog.records if "is not served" in r.getMessage()]
    assert levels == [logging.WARNING, logging.INFO]
    assert seen == []


def test_the_reconcile_and_the_schedule_run_for_every_repository_even_if_one_fails() -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    handlers = routed(seen)
    handlers[SCHEDULE]({"what": "plan", "slot": 1.0})
    with pytest.raises(RuntimeError, match="rocket failed"):
        handlers[RECONCILE]({"fail": "rocket"})
    assert [(name, kind) for name, kind, _ in seen] == [
        ("rocket", SCHEDULE),
        ("probe", SCHEDULE),
        ("rocket", RECONCILE),
        ("probe", RECONCILE),
    ]


def test_services_build_one_orchestrator_per_repository_with_its_rules(
    services: Services,
) -> None:
    assert list(services.orchestrators) == ["acme/rocket", "acme/probe"]
    probe = services.orchestrator_for("ACME/PROBE")
    assert probe is not None and probe.repo == "acme/probe"
    assert services.orchestrator.repo == "acme/rocket"
    assert services.orchestrator_for("acme/other") is None
    assert "GITHUB_REPOSITORY" not in services.missing()
    assert services.policy == Policy()


def test_each_repositorys_use_cases_ship_and_schedule_by_its_own_rules(tmp_path: Path) -> None:
    config = tmp_path / "valine.toml"
    config.write_text(
        '[ship]\ndeploy_workflow = "deploy.yml"\n'
        '[schedule]\ndigest = "0 17 * * *"\nchannel_id = "9"\n'
        '[[repositories]]\nname = "acme/rocket"\nchannel_id = "100"\n'
        '[[repositories]]\nname = "acme/probe"\nchannel_id = "200"\n'
        '[repositories.ship]\ndeploy_workflow = "release.yml"\n'
        '[repositories.schedule]\ndigest = "0 18 * * *"\n'
    )
    services = Services(
        Settings.from_env(
            {"VALINE_CONFIG": str(config), "VALINE_STORE": f"sqlite:///{tmp_path}/v.db"}
        )
    )
    rocket, probe = (services.orchestrator_for(n) for n in ("acme/rocket", "acme/probe"))
    assert rocket is not None and probe is not None
    assert (rocket.policy.ship.deploy_workflow, probe.policy.ship.deploy_workflow) == (
        "deploy.yml",
        "release.yml",
    )
    assert services.scheduled
    assert services.scheduler().repositories == {
        "acme/rocket": rocket.policy.schedule,
        "acme/probe": probe.policy.schedule,
    }
    assert (rocket.policy.schedule.digest, probe.policy.schedule.digest) == (
        "0 17 * * *",
        "0 18 * * *",
    )
