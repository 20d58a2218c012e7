"""The Secrets Manager secret of the AWS runtime: parsing, the TTL cache, failures."""

from __future__ import annotations

import json

import pytest

from valine.core.errors import ConfigurationError
from valine.runtime.aws import AwsServices
from valine.runtime.secrets import (
    SecretSettings,
    SecretsUnavailable,
    parse_secret,
    secret_settings_from_env,
)
from valine.testing.clock import ManualClock

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"


class Fetches:
    """A fake Secrets Manager: answers the current text, or raises; counts the calls."""

    def __init__(self, document: dict[str, str]) -> None:
        self.text = json.dumps(document)
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self, secret_id: str) -> str:
        assert secret_id == "arn:secret"
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.text


def test_parse_keeps_the_secret_settings_only() -> None:
    text = json.dumps(
        {"GITHUB_TOKEN": " ghp_x ", "DISCORD_BOT_TOKEN": "", "VALINE_STORE": "sqlite:///evil"}
    )
    assert parse_secret(text) == {"GITHUB_TOKEN": "ghp_x"}


def test_parse_accepts_a_pem_with_raw_or_escaped_newlines() -> None:
    escaped = json.dumps({"GITHUB_APP_PRIVATE_KEY": PEM})
    raw = '{"GITHUB_APP_PRIVATE_KEY": "' + PEM + '"}'  # as CloudFormation's !Sub writes it
    assert parse_secret(escaped) == parse_secret(raw) == {"GITHUB_APP_PRIVATE_KEY": PEM}


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"GITHUB_TOKEN": 7}'])
def test_parse_refuses_a_malformed_secret(text: str) -> None:
    with pytest.raises(ConfigurationError, match="VALINE_SECRETS_ARN"):
        parse_secret(text)


def test_values_are_cached_for_the_ttl() -> None:
    fetch, clock = Fetches({"GITHUB_TOKEN": "one"}), ManualClock(100.0)
    secret = SecretSettings("arn:secret", fetch, ttl=300, clock=clock)
    assert secret.values() == {"GITHUB_TOKEN": "one"}
    fetch.text = json.dumps({"GITHUB_TOKEN": "two"})
    clock.t += 299
    assert secret.values() == {"GITHUB_TOKEN": "one"}
    assert fetch.calls == 1
    clock.t += 1
    assert secret.values() == {"GITHUB_TOKEN": "two"}
    assert fetch.calls == 2
    secret.invalidate()
    secret.values()
    assert fetch.calls == 3


def test_a_failed_refresh_keeps_the_last_values_and_a_failed_first_read_raises() -> None:
    fetch, clock = Fetches({"GITHUB_TOKEN": "one"}), ManualClock(100.0)
    secret = SecretSettings("arn:secret", fetch, ttl=10, clock=clock)
    fetch.error = OSError("connection refused")
    with pytest.raises(SecretsUnavailable, match="OSError"):
        secret.values()
    fetch.error = None
    assert secret.values() == {"GITHUB_TOKEN": "one"}
    fetch.error = OSError("throttled")
    clock.t += 10
    assert secret.values() == {"GITHUB_TOKEN": "one"}
    clock.t += 1  # not asked again before another TTL
    secret.values()
    assert fetch.calls == 3


def test_from_env() -> None:
    assert secret_settings_from_env({}) is None
    secret = secret_settings_from_env({"VALINE_SECRETS_ARN": "arn:x", "VALINE_SECRETS_TTL": "5"})
    assert secret is not None
    assert (secret.secret_id, secret.ttl) == ("arn:x", 5.0)
    with pytest.raises(ConfigurationError, match="VALINE_SECRETS_TTL"):
        secret_settings_from_env({"VALINE_SECRETS_ARN": "arn:x", "VALINE_SECRETS_TTL": "-1"})


def test_services_merge_the_secret_lazily_and_rebuild_clients_on_rotation() -> None:
    fetch = Fetches({"GITHUB_TOKEN": "one", "GITHUB_WEBHOOK_SECRET": "hook-one"})
    secret = SecretSettings("arn:secret", fetch, ttl=0)
    seen: list[str | None] = []
    services = AwsServices(
        {"GITHUB_REPOSITORY": "octo/widgets", "GITHUB_TOKEN": "from-env"},
        secret,
        on_settings=lambda s: seen.append(s.github_token),
    )
    assert fetch.calls == 0, "nothing is fetched until something needs a secret"
    assert services.settings.github_token == "from-env"
    assert services.refresh_secrets() is True
    assert services.settings.github_token == "one"  # the secret wins over the environment
    client = services.github
    assert services.refresh_secrets() is False  # same values: nothing rebuilt
    assert services.github is client
    fetch.text = json.dumps({"GITHUB_TOKEN": "two", "GITHUB_WEBHOOK_SECRET": "hook-one"})
    assert services.refresh_secrets() is True
    assert services.settings.github_token == "two"
    assert services.github is not client
    assert seen == ["from-env", "one", "two"]


def test_without_a_secret_the_environment_is_all() -> None:
    services = AwsServices({"GITHUB_TOKEN": "env-token"})
    assert services.uses_secret is False
    assert services.refresh_secrets() is False
    assert services.settings.github_token == "env-token"
