"""Settings from the environment (README "Configuration"), validated once at start-up.

Missing credentials do not stop the local server: it starts, says which are missing (at
start-up and in ``/healthz``), and answers the affected requests with a message naming
the setting. A *malformed* value stops start-up with an error naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from valine.core.errors import ConfigurationError
from valine.core.records import Record

if TYPE_CHECKING:
    from valine.core.commands import Need
    from valine.core.policy import Policy, Rules

DEFAULT_STORE = "sqlite:///.valine/valine.db"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_DIGITS = re.compile(r"[0-9]+")


class Settings(Record):
    """Every setting the service reads; :data:`ENV_NAMES` gives each one's variable.

    A NamedTuple rather than a dataclass: immutable all the same, and ``dataclasses``
    (with ``inspect``) stays out of the Discord PING's cold start.
    """

    discord_public_key: str | None = None
    discord_application_id: str | None = None
    discord_bot_token: str | None = None
    github_webhook_secret: str | None = None
    github_token: str | None = None
    github_app_id: str | None = None
    github_app_private_key: str | None = None
    github_app_installation_id: str | None = None
    github_repository: str | None = None
    github_api_url: str = "https://api.github.com"
    discord_api_url: str = "https://discord.com/api/v10"
    store_url: str = DEFAULT_STORE
    config_path: str | None = None
    discord_max_body: str = str(1 << 20)
    github_max_body: str = str(25 << 20)
    max_body_in_flight: str = str(64 << 20)
    body_timeout: str = "10"
    workers: str = "2"
    notify_window: str = "3"
    reconcile_every: str = "300"
    job_lease: str = "60"
    log_level: str = "INFO"
    log_format: str = "auto"
    #: The deployment stage (``Stage`` of the template): the ``Stage`` dimension of the
    #: metrics on AWS (read by valine.metrics from the environment itself).
    stage: str = "default"
    # The AWS runtime (VALINE_STORE=dynamodb://...): explicit table names (default
    # ``<prefix>-runs`` ...) and the SQS queues. The SAM template sets every one.
    runs_table: str | None = None
    audit_table: str | None = None
    dedupe_table: str | None = None
    #: The job outbox (``queue.outbox``): set, jobs are enqueued as its items.
    outbox_table: str | None = None
    queue_url: str | None = None
    dead_letter_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raises ConfigurationError naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name in cls._fields:
            raw = env.get(ENV_NAMES[name], "").strip()
            if raw:
                values[name] = raw
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigurationError for the first malformed value."""
        if self.discord_public_key and not _HEX64.fullmatch(self.discord_public_key):
            raise ConfigurationError("DISCORD_PUBLIC_KEY must be 64 hexadecimal characters")
        if self.github_repository and not _REPO.fullmatch(self.github_repository):
            raise ConfigurationError("GITHUB_REPOSITORY must look like owner/name")
        for name in ("GITHUB_API_URL", "DISCORD_API_URL"):
            value = getattr(self, _attr(name))
            if not value.startswith(("https://", "http://")):
                raise ConfigurationError(f"{name} must be an http(s) URL, got {value!r}")
        if not self.store_url.startswith(("sqlite:///", "dynamodb://")):
            raise ConfigurationError(
                "VALINE_STORE must be sqlite:///path/to.db or dynamodb://<table-prefix>"
            )
        for name in (
            "VALINE_DISCORD_MAX_BODY",
            "VALINE_GITHUB_MAX_BODY",
            "VALINE_MAX_BODY_IN_FLIGHT",
            "VALINE_WORKERS",
        ):
            if not _DIGITS.fullmatch(getattr(self, _attr(name))):
                raise ConfigurationError(f"{name} must be a whole number")
        for name in ("DISCORD_APPLICATION_ID", "GITHUB_APP_ID", "GITHUB_APP_INSTALLATION_ID"):
            value = getattr(self, _attr(name))
            if value and not _DIGITS.fullmatch(value):
                raise ConfigurationError(f"{name} must be a number")
        if self.log_format not in ("auto", "json", "text"):
            raise ConfigurationError("VALINE_LOG_FORMAT must be auto, json or text")
        _seconds("VALINE_NOTIFY_WINDOW", self.notify_window, allow_zero=True)
        _seconds("VALINE_RECONCILE_EVERY", self.reconcile_every, allow_zero=False)
        _seconds("VALINE_JOB_LEASE", self.job_lease, allow_zero=False)
        _seconds("VALINE_BODY_TIMEOUT", self.body_timeout, allow_zero=False)

    def missing(self) -> list[str]:
        """Names of the settings the full workflow needs that are not set."""
        wanted = [
            "DISCORD_PUBLIC_KEY",
            "DISCORD_APPLICATION_ID",
            "DISCORD_BOT_TOKEN",
            "GITHUB_WEBHOOK_SECRET",
            "GITHUB_REPOSITORY",
        ]
        absent = [name for name in wanted if not getattr(self, _attr(name))]
        if not self.github_token and not (self.github_app_id and self.github_app_private_key):
            absent.append("GITHUB_TOKEN (or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY)")
        return absent

    def unmet(self, needs: Collection[Need]) -> list[str]:
        """The settings missing for ``needs`` (a command's), named as ``missing()`` names them."""
        from valine.core.commands import Need

        lacking = []
        if Need.REPOSITORY in needs and not self.github_repository:
            lacking.append("GITHUB_REPOSITORY")
        if Need.GITHUB_AUTH in needs and not (
            self.github_token or (self.github_app_id and self.github_app_private_key)
        ):
            lacking.append("GITHUB_TOKEN (or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY)")
        return lacking

    def secret_values(self) -> list[str]:
        """The values of every secret setting, for log redaction."""
        return [value for name in SECRET_SETTINGS if (value := getattr(self, name))]


#: The environment variable of each setting (the names README "Configuration" lists).
ENV_NAMES: Mapping[str, str] = {
    "discord_public_key": "DISCORD_PUBLIC_KEY",
    "discord_application_id": "DISCORD_APPLICATION_ID",
    "discord_bot_token": "DISCORD_BOT_TOKEN",
    "github_webhook_secret": "GITHUB_WEBHOOK_SECRET",
    "github_token": "GITHUB_TOKEN",
    "github_app_id": "GITHUB_APP_ID",
    "github_app_private_key": "GITHUB_APP_PRIVATE_KEY",
    "github_app_installation_id": "GITHUB_APP_INSTALLATION_ID",
    "github_repository": "GITHUB_REPOSITORY",
    "github_api_url": "GITHUB_API_URL",
    "discord_api_url": "DISCORD_API_URL",
    "store_url": "VALINE_STORE",
    "config_path": "VALINE_CONFIG",
    "discord_max_body": "VALINE_DISCORD_MAX_BODY",
    "github_max_body": "VALINE_GITHUB_MAX_BODY",
    "max_body_in_flight": "VALINE_MAX_BODY_IN_FLIGHT",
    "body_timeout": "VALINE_BODY_TIMEOUT",
    "workers": "VALINE_WORKERS",
    "notify_window": "VALINE_NOTIFY_WINDOW",
    "reconcile_every": "VALINE_RECONCILE_EVERY",
    "job_lease": "VALINE_JOB_LEASE",
    "log_level": "VALINE_LOG_LEVEL",
    "log_format": "VALINE_LOG_FORMAT",
    "stage": "VALINE_STAGE",
    "runs_table": "VALINE_RUNS_TABLE",
    "audit_table": "VALINE_AUDIT_TABLE",
    "dedupe_table": "VALINE_DEDUPE_TABLE",
    "outbox_table": "VALINE_OUTBOX_TABLE",
    "queue_url": "VALINE_QUEUE_URL",
    "dead_letter_url": "VALINE_DEAD_LETTER_URL",
}
_ATTRS: Mapping[str, str] = {env: attr for attr, env in ENV_NAMES.items()}
#: Settings whose values must never be logged.
SECRET_SETTINGS = frozenset(
    {"discord_bot_token", "github_webhook_secret", "github_token", "github_app_private_key"}
)


def _attr(env_name: str) -> str:
    return _ATTRS[env_name]


def _seconds(name: str, value: str, *, allow_zero: bool) -> None:
    """Raise ConfigurationError unless ``value`` is a number of seconds (> 0, or >= 0)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be seconds ({bound})")


def load_dotenv_into(environ: dict[str, str], path: str = ".env") -> None:
    """Add the variables of a ``.env`` file that ``environ`` does not already set."""
    if not os.path.exists(path):
        return
    from dotenv import dotenv_values

    for key, value in dotenv_values(path).items():
        if value is not None:
            environ.setdefault(key, value)


def read_policy(config_path: str | None) -> Policy:
    """The top-level workflow rules of ``config_path`` (see :func:`read_rules`)."""
    return read_rules(config_path).policy


def read_rules(config_path: str | None) -> Rules:
    """The rules of ``config_path`` (``VALINE_CONFIG``), else ``./valine.toml``: the
    top-level policy and each ``[[repositories]]`` entry's.

    Without ``config_path`` a missing ``valine.toml`` means the defaults; a named file
    that does not exist, invalid TOML, an unknown section or key and a bad value are
    ConfigurationErrors naming the file.
    """
    from valine.core.policy import Rules, rules_from_mapping

    path = config_path or "valine.toml"
    if not os.path.exists(path):
        if config_path:
            raise ConfigurationError(f"{path}: no such file")
        return Rules()
    import tomllib

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return rules_from_mapping(data)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def local_settings() -> Settings:
    """The settings of a local command: the environment, then ``.env`` for what it lacks."""
    environ = dict(os.environ)
    load_dotenv_into(environ)
    return Settings.from_env(environ)
