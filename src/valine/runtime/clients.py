"""The GitHub and Discord clients built from the settings (the adapters never read them).

Each client module is imported inside its builder: the Discord function never loads the
GitHub client's dependencies for a command that needs only Discord.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from valine.core.errors import ConfigurationError

if TYPE_CHECKING:
    from valine.discord.client import DiscordClient
    from valine.github.client import GitHubClient
    from valine.runtime.config import Settings
    from valine.runtime.repositories import Repositories


def github_client(
    settings: Settings, repositories: Repositories | None = None, **options: Any
) -> GitHubClient:
    """A :class:`GitHubClient` for the configured credentials and ``GITHUB_API_URL``.

    A complete GitHub App configuration (``GITHUB_APP_ID`` + ``GITHUB_APP_PRIVATE_KEY``)
    wins over ``GITHUB_TOKEN``. With an App, each of ``repositories`` uses its own
    installation: the one it names (``installation_id``, or ``GITHUB_APP_INSTALLATION_ID``
    for ``GITHUB_REPOSITORY``), else the one GitHub says is installed on it (looked up
    once); with one repository or none, ``GITHUB_APP_INSTALLATION_ID`` serves every
    request, as it always has. Raises ConfigurationError naming what is missing.
    ``options`` go to the constructor (timeouts, retry limits, ``sleep`` ...).
    """
    from valine.github.client import AppAuth, GitHubClient, TokenAuth

    auth: TokenAuth | AppAuth
    if settings.github_app_id and settings.github_app_private_key:
        several = repositories is not None and len(repositories) > 1
        auth = AppAuth(
            app_id=settings.github_app_id,
            private_key_pem=settings.github_app_private_key,
            installation_id=None if several else settings.github_app_installation_id,
            installations=tuple(sorted(repositories.installations().items()))
            if repositories is not None
            else (),
        )
    elif settings.github_app_id:
        raise ConfigurationError("GITHUB_APP_PRIVATE_KEY is not set (GITHUB_APP_ID is)")
    elif settings.github_app_private_key:
        raise ConfigurationError("GITHUB_APP_ID is not set (GITHUB_APP_PRIVATE_KEY is)")
    elif settings.github_token:
        auth = TokenAuth(settings.github_token)
    else:
        raise ConfigurationError(
            "GITHUB_TOKEN is not set (or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY for an App)"
        )
    return GitHubClient(auth, api_url=settings.github_api_url, **options)


def discord_client(
    settings: Settings, *, require: Iterable[str] = (), **options: Any
) -> DiscordClient:
    """The Discord client of ``settings`` (``DISCORD_API_URL``, application id, bot token).

    A missing ``DISCORD_APPLICATION_ID`` or ``DISCORD_BOT_TOKEN`` only fails the
    operations that need it (``edit_original`` and ``followup`` get the application id
    from the interaction and need no bot token); name them in ``require`` to fail here
    instead, with a ``ConfigurationError`` naming the variable.
    """
    values = {
        "DISCORD_APPLICATION_ID": settings.discord_application_id,
        "DISCORD_BOT_TOKEN": settings.discord_bot_token,
    }
    for name in require:
        if name not in values:
            raise ValueError(f"unknown Discord setting {name!r}")
        if not values[name]:
            raise ConfigurationError(f"{name} is not set: the Discord client needs it")
    from valine.discord.client import DiscordClient

    return DiscordClient(
        settings.discord_api_url,
        settings.discord_application_id,
        settings.discord_bot_token,
        **options,
    )
