"""The secret settings on AWS: one Secrets Manager secret (JSON), read at run time, cached.

The SAM template stores the NoEcho parameters (bot token, GitHub token, webhook secret,
App private key) in one secret and gives each function only its ARN, in
``VALINE_SECRETS_ARN``; no secret value is ever in a function's environment. The secret
is a JSON object whose keys are the setting names of README "Configuration"::

    {"DISCORD_BOT_TOKEN": "...", "GITHUB_TOKEN": "...", "GITHUB_WEBHOOK_SECRET": "...",
     "GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\\n..."}

:class:`SecretSettings` fetches it on first use and again once ``ttl`` seconds have
passed, so a value changed in Secrets Manager (a rotation) reaches running functions
within the TTL, without a redeploy. boto3 is imported only when the secret is first
fetched: the Discord PING path never pays for it.
"""

from __future__ import annotations

import json
import time
from _thread import allocate_lock  # threading.Lock itself; threading costs a PING ~1 ms
from collections.abc import Callable, Mapping
from typing import Any

from valine.core.errors import ConfigurationError, ValineError
from valine.logs import get_logger

log = get_logger("valine.secrets")

#: The environment variable naming the secret (its ARN or name).
SECRETS_ARN_ENV = "VALINE_SECRETS_ARN"
#: The environment variable overriding the cache lifetime, in seconds.
SECRETS_TTL_ENV = "VALINE_SECRETS_TTL"
#: How long a fetched secret is used before it is fetched again (seconds).
DEFAULT_TTL = 300.0
#: The settings the secret may hold; any other key in it is ignored (so a secret can
#: never override a non-secret setting such as ``VALINE_STORE``).
SECRET_KEYS = frozenset(
    {"DISCORD_BOT_TOKEN", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET", "GITHUB_APP_PRIVATE_KEY"}
)

#: The environment variable declaring which keys the deployment's secret holds (set,
#: comma-separated): the Discord function answers a command's missing-setting check from
#: it instead of reading the secret (the template knows which parameters it was given).
SECRET_KEYS_ENV = "VALINE_SECRET_KEYS"  # noqa: S105 - a variable name, not a secret


def declared_secret_keys(environ: Mapping[str, str]) -> frozenset[str] | None:
    """The secret's keys the deployment declares (``VALINE_SECRET_KEYS``), or None.

    Empty entries are ignored (the template joins one entry per parameter, empty for a
    parameter left empty); a name that is not a secret setting is a ConfigurationError.
    """
    text = environ.get(SECRET_KEYS_ENV)
    if text is None:
        return None
    keys = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = keys - SECRET_KEYS
    if unknown:
        raise ConfigurationError(f"{SECRET_KEYS_ENV}: not secret settings: {sorted(unknown)}")
    return keys


#: Fetches the secret's ``SecretString`` given its id.
Fetch = Callable[[str], str]


class SecretsUnavailable(ValineError):
    """The secret could not be read and no earlier value is cached."""


def parse_secret(text: str) -> dict[str, str]:
    """The setting values of a secret's JSON text: known keys with non-empty values.

    Control characters are accepted inside strings (``strict=False``), so a PEM private
    key passed as a multi-line CloudFormation parameter survives the template's JSON.
    Raises ConfigurationError if the text is not a JSON object of strings.
    """
    try:
        document = json.loads(text, strict=False)
    except ValueError as exc:
        raise ConfigurationError(f"{SECRETS_ARN_ENV}: the secret is not valid JSON") from exc
    if not isinstance(document, dict):
        raise ConfigurationError(f"{SECRETS_ARN_ENV}: the secret is not a JSON object")
    values: dict[str, str] = {}
    for key, value in document.items():
        if key not in SECRET_KEYS:
            log.warning("ignoring key %r of the secret: not a secret setting", key)
            continue
        if not isinstance(value, str):
            raise ConfigurationError(f"{SECRETS_ARN_ENV}: {key} must be a string")
        if value.strip():
            values[key] = value.strip()
    return values


def boto3_fetch(endpoint_url: str | None = None) -> Fetch:
    """A :data:`Fetch` over a Secrets Manager client built on first call (boto3 lazily)."""
    client: Any = None
    lock = allocate_lock()

    def fetch(secret_id: str) -> str:
        nonlocal client
        with lock:
            if client is None:
                import boto3

                client = boto3.client("secretsmanager", endpoint_url=endpoint_url)
        answer = client.get_secret_value(SecretId=secret_id)
        return str(answer["SecretString"])

    return fetch


class SecretSettings:
    """The secret's setting values, cached for ``ttl`` seconds.

    A failed refresh keeps serving the last good values (and logs it) so a Secrets
    Manager hiccup does not take the service down; only a first fetch that fails raises
    :class:`SecretsUnavailable`. A malformed secret raises ConfigurationError.
    """

    def __init__(
        self,
        secret_id: str,
        fetch: Fetch | None = None,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret_id = secret_id
        self._fetch = fetch or boto3_fetch()
        self.ttl = ttl
        self._clock = clock
        self._values: dict[str, str] | None = None
        self._fetched_at = 0.0
        self._lock = allocate_lock()

    def values(self) -> dict[str, str]:
        """The current values (from the cache while it is fresh)."""
        with self._lock:
            now = self._clock()
            if self._values is not None and now - self._fetched_at < self.ttl:
                return dict(self._values)
            try:
                text = self._fetch(self.secret_id)
            except Exception as exc:  # any SDK or network error: the boundary is here
                if self._values is None:
                    raise SecretsUnavailable(
                        f"could not read the secret {self.secret_id}: {type(exc).__name__}"
                    ) from exc
                log.warning(
                    "could not refresh the secret (%s); using the cached values",
                    type(exc).__name__,
                )
                self._fetched_at = now  # try again after another TTL, not on every call
                return dict(self._values)
            self._values = parse_secret(text)
            self._fetched_at = now
            return dict(self._values)

    def invalidate(self) -> None:
        """Fetch again on the next :meth:`values` call."""
        with self._lock:
            self._fetched_at = float("-inf")


def secret_settings_from_env(
    environ: Mapping[str, str], fetch: Fetch | None = None
) -> SecretSettings | None:
    """The cached secret named by ``VALINE_SECRETS_ARN``, or None when it is not set.

    ``VALINE_SECRETS_TTL`` overrides the cache lifetime (seconds); ``fetch`` defaults to
    a Secrets Manager client of its own (:func:`boto3_fetch`).
    """
    secret_id = environ.get(SECRETS_ARN_ENV, "").strip()
    if not secret_id:
        return None
    raw_ttl = environ.get(SECRETS_TTL_ENV, "").strip()
    try:
        ttl = float(raw_ttl) if raw_ttl else DEFAULT_TTL
        if ttl < 0:
            raise ValueError
    except ValueError:
        raise ConfigurationError(f"{SECRETS_TTL_ENV} must be seconds (>= 0)") from None
    return SecretSettings(secret_id, fetch, ttl=ttl)
