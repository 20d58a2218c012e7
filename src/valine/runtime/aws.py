"""The AWS runtime's :class:`~valine.runtime.wiring.Services`: settings = environment + secret.

On Lambda the non-secret settings come from the function's environment (the SAM
template sets them) and the secret ones from one Secrets Manager secret
(:mod:`valine.runtime.secrets`). The secret is merged in on first need, not at start-up:
a Discord PING needs only ``DISCORD_PUBLIC_KEY``, so it never waits for boto3 or a
Secrets Manager call. Commands and button presses merge it before they run (their
answers depend on whether the GitHub credentials are set); the GitHub function, the
worker and the reconcile merge it on every invocation (from the cache while it is fresh).

When the secret's values change (a rotation, seen once the cache expires), the settings
are rebuilt and the clients built from the old values are dropped, so the next use
builds them with the new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from valine.runtime.config import Settings
from valine.runtime.secrets import SecretSettings, secret_settings_from_env
from valine.runtime.wiring import Services

if TYPE_CHECKING:
    from valine.core.commands import Command
    from valine.core.replies import Answer
    from valine.discord.interactions import Interaction

#: Cached members built from secret settings: dropped when the secret changes.
_SECRET_DEPENDENTS = ("github", "discord", "github_endpoint")


class AwsServices(Services):
    """:class:`Services` whose secret settings come from Secrets Manager, merged lazily."""

    def __init__(
        self,
        environ: Mapping[str, str],
        secrets: SecretSettings | None = None,
        *,
        on_settings: Callable[[Settings], None] | None = None,
    ) -> None:
        """``secrets`` defaults to the one ``VALINE_SECRETS_ARN`` names (None: env only).

        ``on_settings`` is called with the settings at start and after every change (the
        Lambda runtime configures logging there, redacting the secret values).
        """
        self._environ = dict(environ)
        self._secrets = (
            secrets if secrets is not None else secret_settings_from_env(environ, self._fetch)
        )
        self._merged: dict[str, str] | None = None
        self._on_settings = on_settings
        super().__init__(Settings.from_env(self._environ))
        if on_settings is not None:
            on_settings(self.settings)

    def _fetch(self, secret_id: str) -> str:
        """The secret's text, read with this process's shared AWS (botocore) session."""
        answer = self.aws_client("secretsmanager").get_secret_value(SecretId=secret_id)
        return str(answer["SecretString"])

    @property
    def uses_secret(self) -> bool:
        """True when a Secrets Manager secret is configured (``VALINE_SECRETS_ARN``)."""
        return self._secrets is not None

    def refresh_secrets(self) -> bool:
        """Merge the (cached) secret into the settings; True if the settings changed.

        The first merge counts as a change. Without a configured secret this does
        nothing and returns False: the settings are the environment's alone.
        """
        if self._secrets is None:
            return False
        values = self._secrets.values()
        if values == self._merged:
            return False
        first = self._merged is None
        self.settings = Settings.from_env({**self._environ, **values})
        self._merged = values
        if not first:
            for name in _SECRET_DEPENDENTS:
                self.__dict__.pop(name, None)
        if self._on_settings is not None:
            self._on_settings(self.settings)
        return True

    def answer_command(self, interaction: Interaction, command: Command) -> Answer:
        """Merge the secret, then answer as every runtime does."""
        self.refresh_secrets()
        return super().answer_command(interaction, command)

    def press_button(self, interaction: Interaction, custom_id: str) -> Answer:
        """Merge the secret, then answer as every runtime does."""
        self.refresh_secrets()
        return super().press_button(interaction, custom_id)
