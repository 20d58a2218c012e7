"""The shared HTTP app, driven in-process with signed requests (same code as every runtime)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from helpers import WEBHOOK_SECRET, discord_headers, github_headers, interaction
from valine import logs
from valine.app import App
from valine.http import Deferred, Request, Response
from valine.runtime.config import Settings
from valine.runtime.server import enqueue_all
from valine.runtime.wiring import Services


@pytest.fixture
def services(tmp_path: Path, public_key_hex: str) -> Services:
    # the repositories of the published examples used here (a delivery of a repository
    # the deployment does not serve queues nothing)
    config = tmp_path / "valine.toml"
    config.write_text(
        '[[repositories]]\nname = "Codertocat/Hello-World"\n'
        '[[repositories]]\nname = "octo-org/octo-repo"\n'
    )
    settings = Settings.from_env(
        {
            "DISCORD_PUBLIC_KEY": public_key_hex,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "VALINE_CONFIG": str(config),
            "VALINE_STORE": f"sqlite:///{tmp_path}/valine.db",
            "VALINE_DISCORD_MAX_BODY": "4096",
        }
    )
    return Services(settings)


@pytest.fixture
def app(services: Services) -> App:
    return services.app()


def post(app: App, path: str, body: bytes, headers: dict[str, str]) -> Response:
    return app.handle(Request("POST", path, {k.lower(): v for k, v in headers.items()}, body))


def doc(response: Response) -> Any:
    return json.loads(response.body)


# --- Discord -------------------------------------------------------------------------------


def test_signed_ping_gets_pong(app: App, signing_key: SigningKey) -> None:
    body = interaction(kind=1)
    response = post(app, "/discord", body, discord_headers(signing_key, body))
    assert (response.status, doc(response)) == (200, {"type": 1})


@pytest.mark.parametrize("tamper", ["other-key", "body", "timestamp", "no-headers", "bad-hex"])
def test_bad_signatures_get_401(app: App, signing_key: SigningKey, tamper: str) -> None:
    body = interaction(kind=1)
    headers = discord_headers(signing_key, body)
    if tamper == "other-key":
        headers = discord_headers(SigningKey.generate(), body)
    elif tamper == "body":
        body = body.replace(b'"type": 1', b'"type": 2')
    elif tamper == "timestamp":
        headers["x-signature-timestamp"] = str(int(headers["x-signature-timestamp"]) + 1)
    elif tamper == "no-headers":
        headers = {}
    else:
        headers["x-signature-ed25519"] = "zz" * 64
    assert post(app, "/discord", body, headers).status == 401


def test_signed_non_json_gets_400(app: App, signing_key: SigningKey) -> None:
    body = b"not json"
    assert post(app, "/discord", body, discord_headers(signing_key, body)).status == 400


def test_known_command_answers_honestly_and_ephemerally(app: App, signing_key: SigningKey) -> None:
    body = interaction(name="plan")
    answer = doc(post(app, "/discord", body, discord_headers(signing_key, body)))
    assert answer["type"] == 4
    assert answer["data"]["flags"] == 64
    assert "GITHUB_TOKEN" in answer["data"]["content"]  # names the missing setting


def test_unknown_command_gets_an_ephemeral_error(app: App, signing_key: SigningKey) -> None:
    body = interaction(name="rollback")
    answer = doc(post(app, "/discord", body, discord_headers(signing_key, body)))
    assert answer["data"]["flags"] == 64
    assert "Unknown command `/rollback`" in answer["data"]["content"]


def test_oversized_discord_body_gets_413(app: App, signing_key: SigningKey) -> None:
    body = b"{" + b" " * 5000 + b"}"
    assert post(app, "/discord", body, discord_headers(signing_key, body)).status == 413


def test_discord_without_public_key_refuses_with_the_setting_named(tmp_path: Path) -> None:
    services = Services(Settings.from_env({"VALINE_STORE": f"sqlite:///{tmp_path}/v.db"}))
    response = post(services.app(), "/discord", b"{}", {})
    assert response.status == 503
    assert "DISCORD_PUBLIC_KEY" in doc(response)["error"]


# --- GitHub --------------------------------------------------------------------------------


def test_github_ping_gets_200(app: App, webhook_examples: dict[str, Any]) -> None:
    body = json.dumps(webhook_examples["ping"][0]).encode()
    assert post(app, "/github/webhook", body, github_headers(body, "ping")).status == 200


def test_every_published_workflow_run_example_is_accepted_and_slimmed(
    app: App, services: Services, webhook_examples: dict[str, Any]
) -> None:
    from valine.core.events import WorkflowRunChanged
    from valine.github.events import essentials, event_of

    for number, example in enumerate(webhook_examples["workflow_run"]):
        body = json.dumps(example).encode()
        headers = github_headers(body, "workflow_run", delivery=f"wr-{number}")
        assert post(app, "/github/webhook", body, headers).status == 202
        seen, slim = event_of("workflow_run", example), essentials("workflow_run", example)
        assert isinstance(seen, WorkflowRunChanged)
        assert event_of("workflow_run", slim) == seen  # tracking reads the same from both
        assert seen.run.id == example["workflow_run"]["id"]
        if example["action"] == "completed":
            assert seen.run.status == "completed"
        assert len(json.dumps(slim)) < len(body) / 5
    assert services.queue.depth() == len(webhook_examples["workflow_run"])


def test_bad_webhook_signature_gets_401_and_writes_nothing(
    app: App, services: Services, webhook_examples: dict[str, Any]
) -> None:
    body = json.dumps(webhook_examples["issues"][0]).encode()
    for headers in (
        github_headers(body, "issues", secret="wrong"),
        {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "d1"},
    ):
        assert post(app, "/github/webhook", body, headers).status == 401
    assert services.queue.depth() == 0


def test_each_delivery_is_accepted_once(
    app: App, services: Services, webhook_examples: dict[str, Any]
) -> None:
    body = json.dumps(webhook_examples["issues"][0]).encode()
    headers = github_headers(body, "issues", delivery="delivery-1")
    first = post(app, "/github/webhook", body, headers)
    again = post(app, "/github/webhook", body, headers)
    assert (first.status, doc(first)["status"]) == (202, "accepted")
    assert (again.status, doc(again)["status"]) == (200, "duplicate")
    assert services.queue.depth() == 1


def test_deliveries_are_deduplicated_by_delivery_id_not_by_body(
    app: App, services: Services, webhook_examples: dict[str, Any]
) -> None:
    body = json.dumps(webhook_examples["issues"][0]).encode()
    first = post(app, "/github/webhook", body, github_headers(body, "issues", "delivery-1"))
    other = post(app, "/github/webhook", body, github_headers(body, "issues", "delivery-2"))
    again = post(app, "/github/webhook", body, github_headers(body, "issues", "delivery-2"))
    # Two deliveries of one content are two events; the second copy of one id is not.
    assert [r.status for r in (first, other, again)] == [202, 202, 200]
    assert doc(again) == {"status": "duplicate", "delivery": "delivery-2"}
    assert services.queue.depth() == 2
    ids = set()
    while (job := services.queue.lease(30.0)) is not None:
        ids.add(job.payload["delivery_id"])
        services.queue.ack(job)
    assert ids == {"delivery-1", "delivery-2"}


def test_the_served_app_leaves_a_deliverys_job_to_the_group_commit(
    app: App, services: Services, webhook_examples: dict[str, Any]
) -> None:
    """valine serve answers a webhook in two steps (App.begin, then finish after the
    commit): the route must have them, and nothing is written before the commit."""
    body = json.dumps(webhook_examples["issues"][0]).encode()
    headers = {k.lower(): v for k, v in github_headers(body, "issues", "delivery-9").items()}
    step = app.begin(Request("POST", "/github/webhook", headers, body))
    assert isinstance(step, Deferred)
    assert (step.dedupe_key, step.payload["delivery_id"]) == (
        "github:delivery:delivery-9",
        "delivery-9",
    )
    assert services.queue.depth() == 0
    (added,) = enqueue_all(services.queue, [(step.kind, step.payload, step.dedupe_key)])
    assert (step.finish(added).status, services.queue.depth()) == (202, 1)
    again = app.begin(Request("POST", "/github/webhook", headers, body))
    assert isinstance(again, Deferred)
    assert doc(again.finish(*enqueue_all(services.queue, [again[:3]])))["status"] == "duplicate"
    # Anything not to be committed is answered in the first step.
    unsigned = {**headers, "x-hub-signature-256": "sha256=" + "0" * 64}
    refused = app.begin(Request("POST", "/github/webhook", unsigned, body))
    assert isinstance(refused, Response) and refused.status == 401


def test_a_redelivery_of_a_dead_lettered_delivery_is_processed(
    tmp_path: Path, public_key_hex: str, webhook_examples: dict[str, Any]
) -> None:
    from valine.queue.sqlite import SqliteJobQueue

    services = Services(
        Settings.from_env(
            {
                "DISCORD_PUBLIC_KEY": public_key_hex,
                "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "GITHUB_REPOSITORY": "Codertocat/Hello-World",
                "VALINE_STORE": f"sqlite:///{tmp_path}/valine.db",
            }
        )
    )
    queue = SqliteJobQueue(services.database, max_attempts=1)
    services.__dict__["queue"] = queue  # one attempt, so the first failure dead-letters
    app = services.app()
    body = json.dumps(webhook_examples["issues"][0]).encode()
    headers = github_headers(body, "issues", "delivery-1")
    assert post(app, "/github/webhook", body, headers).status == 202
    job = queue.lease(30.0)
    assert job is not None
    assert queue.retry(job, "the worker failed") is False  # dead-lettered
    # GitHub's Redeliver: the same delivery id and body, processed again, once.
    again = post(app, "/github/webhook", body, headers)
    assert (again.status, doc(again)["status"]) == (202, "accepted")
    assert doc(post(app, "/github/webhook", body, headers))["status"] == "duplicate"
    assert queue.depth() == 1


def test_a_store_error_reaches_discord_as_a_ref_only(
    app: App, services: Services, signing_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel = "SENTINEL arn:aws:dynamodb:us-west-2:123456789012:table/x"

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(sentinel)

    # the use cases /help goes to: a channel no repository names, of the two served
    services.__dict__["_blank_orchestrator"] = Broken()
    body = interaction(name="help")
    response = post(app, "/discord", body, discord_headers(signing_key, body))
    assert response.status == 200
    content = doc(response)["data"]["content"]
    assert sentinel not in response.body.decode()
    ref = content.split("(ref ")[1].split(")")[0]
    assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)


def test_every_real_payload_of_the_handled_events_is_accepted(
    app: App, services: Services, webhook_examples: dict[str, Any]
) -> None:
    count = 0
    for event in ("issues", "pull_request", "check_suite", "issue_comment"):
        for example in webhook_examples[event]:
            body = json.dumps(example).encode()
            assert post(app, "/github/webhook", body, github_headers(body, event)).status == 202
            count += 1
    assert services.queue.depth() == count


def test_unused_event_is_acknowledged_and_ignored(
    app: App, services: Services, webhook_examples: dict[str, Any]
) -> None:
    body = json.dumps(webhook_examples["star"][0]).encode()
    response = post(app, "/github/webhook", body, github_headers(body, "star"))
    assert (response.status, doc(response)["status"]) == (202, "ignored")
    assert services.queue.depth() == 0


def test_webhook_non_json_and_missing_headers_get_400(app: App) -> None:
    body = b"<xml/>"
    assert post(app, "/github/webhook", body, github_headers(body, "issues")).status == 400
    body = b"{}"
    headers = github_headers(body, "issues")
    del headers["x-github-delivery"]
    assert post(app, "/github/webhook", body, headers).status == 400


# --- Routing and health --------------------------------------------------------------------


def test_wrong_method_gets_405_with_allow(app: App) -> None:
    response = app.handle(Request("GET", "/discord", {}, b""))
    assert response.status == 405
    assert ("allow", "POST") in response.headers


def test_unknown_path_gets_404(app: App) -> None:
    assert app.handle(Request("GET", "/nope", {}, b"")).status == 404


def test_healthz_names_store_queue_and_missing_settings(app: App) -> None:
    response = app.handle(Request("GET", "/healthz", {}, b""))
    document = doc(response)
    assert response.status == 200
    assert document["store"].startswith("sqlite:///")
    assert "queue" in document
    assert "DISCORD_BOT_TOKEN" in document["missing_settings"]
    assert "DISCORD_PUBLIC_KEY" not in document["missing_settings"]


# --- Logs ----------------------------------------------------------------------------------


def test_logs_are_json_with_correlation_ids_and_never_show_secrets(
    tmp_path: Path,
    public_key_hex: str,
    signing_key: SigningKey,
    webhook_examples: dict[str, Any],
) -> None:
    secrets = {"GITHUB_TOKEN": "ghp_" + "S" * 36, "DISCORD_BOT_TOKEN": "bot-" + "T" * 40}
    settings = Settings.from_env(
        {
            **secrets,
            "DISCORD_PUBLIC_KEY": public_key_hex,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITHUB_REPOSITORY": "Codertocat/Hello-World",
            "VALINE_STORE": f"sqlite:///{tmp_path}/valine.db",
        }
    )
    stream = io.StringIO()
    logs.configure("DEBUG", settings.secret_values(), stream)
    try:
        app = Services(settings).app()
        body = json.dumps(webhook_examples["issues"][0]).encode()
        post(app, "/github/webhook", body, github_headers(body, "issues", delivery="corr-1"))
        post(app, "/github/webhook", body, github_headers(body, "issues", secret="bad"))
        command = interaction(name="plan")
        post(app, "/discord", command, discord_headers(signing_key, command))
        # Even a careless log line never prints a configured secret:
        logging.getLogger("valine.test").info("token is %s", secrets["GITHUB_TOKEN"])
    finally:
        logs.configure("INFO", (), io.StringIO())
    output = stream.getvalue()
    records = [json.loads(line) for line in output.splitlines()]
    assert any(r.get("delivery_id") == "corr-1" for r in records)
    assert any("interaction_id" in r for r in records)
    assert "[redacted]" in output
    for value in (*secrets.values(), WEBHOOK_SECRET):
        assert value not in output
