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
from functools import cached_property
from typing import TYPE_CHECKING, Any

from valine.infra import unit_of_work
from valine.logs import get_logger
from valine.runtime.config import Settings
from valine.runtime.secrets import SecretSettings, declared_secret_keys, secret_settings_from_env
from valine.runtime.wiring import Services

if TYPE_CHECKING:
    from collections.abc import Collection

    from valine.core.commands import Command, Need
    from valine.core.replies import Answer
    from valine.discord.interactions import DiscordEndpoint, Interaction
    from valine.http import Request, Response
    from valine.ports import Discord, GitHub

log = get_logger("valine.runtime")

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

    @cached_property
    def _declared(self) -> Settings | None:
        """The settings as the deployment declares the secret (``VALINE_SECRET_KEYS``):
        each declared key stands for a value, without reading the secret. None when the
        keys are not declared."""
        from valine.runtime.config import ENV_NAMES

        keys = declared_secret_keys(self._environ)
        if keys is None:
            return None
        attributes = {attr: "(declared)" for attr, env in ENV_NAMES.items() if env in keys}
        return self.settings._replace(**attributes)

    def unmet(self, needs: Collection[Need]) -> list[str]:
        """The settings missing for ``needs``: from the declared secret keys while the
        secret is not read (the Discord function), else from the merged settings."""
        declared = self._declared
        if declared is None or self._merged is not None:
            return super().unmet(needs)
        lacking = declared.unmet(needs)
        if len(self.repositories):
            lacking = [m for m in lacking if m != "GITHUB_REPOSITORY"]
        return lacking

    def answer_command(self, interaction: Interaction, command: Command) -> Answer:
        """Merge the secret unless its keys are declared, then answer as every runtime
        does (interaction handlers use no secret value, only whether one is set)."""
        if self._declared is None:
            self.refresh_secrets()
        return super().answer_command(interaction, command)

    def press_button(self, interaction: Interaction, custom_id: str) -> Answer:
        """Merge the secret unless its keys are declared, then answer as every runtime does."""
        if self._declared is None:
            self.refresh_secrets()
        return super().press_button(interaction, custom_id)

    def discord_endpoint(self) -> Any:
        """``POST /discord``, each interaction's writes in one DynamoDB transaction.

        On a SQLite store (no DynamoDB) it is the endpoint every runtime has.
        """
        endpoint = super().discord_endpoint()
        if not self.uses_dynamodb:
            return endpoint
        return TransactionalEndpoint(endpoint, lambda: self.aws_client("dynamodb"))

    @property
    def github(self) -> GitHub:
        """The GitHub client; refused inside an interaction's unit of work."""
        unit_of_work.forbid_outside_calls("GitHub")
        return super().github

    @property
    def discord(self) -> Discord:
        """The Discord client; refused inside an interaction's unit of work."""
        unit_of_work.forbid_outside_calls("Discord")
        return super().discord


class TransactionalEndpoint:
    """An interactions endpoint whose DynamoDB writes are one unit of work per request.

    The endpoint answers with its writes collected (:mod:`valine.infra.unit_of_work`);
    the answer is sent only once they are committed in one ``TransactWriteItems``. A
    cancelled transaction (a condition failed: nothing was written) or a commit that
    raised means the request is answered again on the immediate path, every write at
    once, which gives the refusal (a replayed interaction, a rate limit) or the error.
    """

    def __init__(self, endpoint: DiscordEndpoint, dynamodb: Callable[[], Any]) -> None:
        self._endpoint = endpoint
        self._dynamodb = dynamodb
        #: How many requests were answered again on the immediate path (for the tests).
        self.replays = 0

    def __call__(self, request: Request) -> Response:
        """Answer ``request``, its writes committed together before the answer."""
        with unit_of_work.unit_of_work(self._transact) as unit:
            response = self._endpoint(request)
            try:
                committed = unit.commit()
            except Exception:
                log.warning("the interaction's transaction failed; answering again", exc_info=True)
                committed = False
        if not committed:
            self.replays += 1  # what the first attempt recorded is dropped with it
            return self._endpoint(request)
        unit.tell_answer()
        try:
            unit.run_after_commit()
        except Exception:
            return _failed_answer()
        return response

    def _transact(self, **arguments: Any) -> Any:
        return self._dynamodb().transact_write_items(**arguments)


def _failed_answer() -> Response:
    """The ephemeral error answer of an interaction whose job could not be sent."""
    import secrets

    from valine.discord.interactions import ephemeral
    from valine.http import json_response

    ref = secrets.token_hex(4)
    log.exception("the job of the interaction could not be sent [ref %s]", ref)
    return json_response(
        200, ephemeral(f"⚠️ Valine could not do that just now (ref {ref}). Try again.")
    )
