"""Settings: the names README "Configuration" lists, malformed values named, missing ones listed."""

from __future__ import annotations

import pytest

from valine.core.errors import ConfigurationError
from valine.runtime.config import DEFAULT_STORE, Settings, load_dotenv_into


def test_defaults_start_without_credentials_and_list_what_is_missing() -> None:
    settings = Settings.from_env({})
    assert settings.store_url == DEFAULT_STORE
    assert settings.github_api_url == "https://api.github.com"
    missing = settings.missing()
    assert "DISCORD_PUBLIC_KEY" in missing
    assert "GITHUB_WEBHOOK_SECRET" in missing
    assert any(m.startswith("GITHUB_TOKEN") for m in missing)


def test_a_github_app_counts_instead_of_a_token() -> None:
    settings = Settings.from_env({"GITHUB_APP_ID": "12", "GITHUB_APP_PRIVATE_KEY": "pem"})
    assert not any(m.startswith("GITHUB_TOKEN") for m in settings.missing())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DISCORD_PUBLIC_KEY", "abc"),
        ("DISCORD_PUBLIC_KEY", "z" * 64),
        ("GITHUB_REPOSITORY", "no-slash"),
        ("GITHUB_API_URL", "ftp://x"),
        ("VALINE_STORE", "postgres://db"),
        ("VALINE_WORKERS", "two"),
        ("VALINE_JOB_LEASE", "0"),
        ("VALINE_JOB_LEASE", "soon"),
        ("DISCORD_APPLICATION_ID", "app"),
    ],
)
def test_malformed_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_env({variable: value})


def test_secret_values_are_collected_for_redaction() -> None:
    settings = Settings.from_env(
        {"GITHUB_TOKEN": "ghp_x", "DISCORD_BOT_TOKEN": "bot", "GITHUB_REPOSITORY": "o/r"}
    )
    assert sorted(settings.secret_values()) == ["bot", "ghp_x"]


def test_dotenv_fills_in_but_never_overrides_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / ".env"
    env_file.write_text("GITHUB_REPOSITORY=from/file\nGITHUB_TOKEN='quoted value'\n")
    environ = {"GITHUB_REPOSITORY": "from/env"}
    load_dotenv_into(environ, str(env_file))
    assert environ == {"GITHUB_REPOSITORY": "from/env", "GITHUB_TOKEN": "quoted value"}
