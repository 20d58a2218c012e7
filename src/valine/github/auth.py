"""How the GitHub client authenticates: a token, or a GitHub App installation.

A personal access token goes in every request. A GitHub App signs a JWT
(``gidgethub.apps.get_jwt``) that buys installation tokens, cached until five minutes
before they expire and bought anew once when GitHub answers 401 (revoked early); without
an installation id the installation is looked up once per repository.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from typing import Unpack
from urllib.parse import quote

from gidgethub import sansio

from valine.core.errors import ConfigurationError
from valine.github.transport import Transport, TransportOptions
from valine.ports import GitHubError

USER_AGENT = "valine-orchestrator"
ACCEPT = "application/vnd.github+json"


API_VERSION = "2022-11-28"
#: An installation token is replaced this long before GitHub says it expires.
TOKEN_REFRESH_MARGIN = 5 * 60.0


@dataclass(frozen=True)
class TokenAuth:
    """Authenticate with a personal access token (``GITHUB_TOKEN``)."""

    token: str = field(repr=False)


@dataclass(frozen=True)
class AppAuth:
    """Authenticate as a GitHub App installation.

    The App's JWT (signed with ``private_key_pem``) buys installation tokens, one per
    installation, each cached until five minutes before it expires. A repository's
    installation is the one ``installations`` names for it (lower-case ``owner/name``),
    else ``installation_id``, else the one GitHub says is installed on it (looked up once
    per repository: ``GET /repos/{repo}/installation``).
    """

    app_id: str
    private_key_pem: str = field(repr=False)
    installation_id: str | None = None
    #: ``(lower-case owner/name, installation id)`` of the repositories known ahead.
    installations: tuple[tuple[str, str], ...] = ()


class Authenticated(Transport):
    """A :class:`~valine.github.transport.Transport` that adds its credentials."""

    def __init__(self, auth: TokenAuth | AppAuth, **options: Unpack[TransportOptions]) -> None:
        """``options``: the transport's (:class:`~valine.github.transport.Transport`)."""
        super().__init__(**options)
        self._auth = auth
        self._token_lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._installations: dict[str, str] = {}

    # -- credentials --------------------------------------------------------------------

    def _credentials(self, repo: str | None, *, jwt: bool) -> tuple[dict[str, str], str | None]:
        """Request headers, and the installation token used (to refresh it on a 401)."""
        auth = self._auth
        if isinstance(auth, TokenAuth):
            return self._headers(oauth_token=auth.token), None
        if jwt:
            return self._headers(jwt=self._app_jwt(auth)), None
        token = self._installation_token(auth, repo)
        return self._headers(oauth_token=token), token

    @staticmethod
    def _headers(*, oauth_token: str | None = None, jwt: str | None = None) -> dict[str, str]:
        headers = sansio.create_headers(USER_AGENT, accept=ACCEPT, oauth_token=oauth_token, jwt=jwt)
        headers["x-github-api-version"] = API_VERSION
        return headers

    @staticmethod
    def _app_jwt(auth: AppAuth) -> str:
        from gidgethub.apps import get_jwt

        key = auth.private_key_pem
        if "\\n" in key and "\n" not in key:  # a PEM squeezed onto one line in .env
            key = key.replace("\\n", "\n")
        try:
            return str(get_jwt(app_id=str(auth.app_id), private_key=key))
        except Exception as exc:  # PyJWT/cryptography: malformed or wrong-type key
            raise ConfigurationError(
                f"GITHUB_APP_PRIVATE_KEY cannot sign the App JWT: {type(exc).__name__}"
            ) from None

    def _installation_token(self, auth: AppAuth, repo: str | None) -> str:
        """A cached installation token, bought anew when within 5 minutes of expiry."""
        with self._token_lock:
            installation = self._installation_id(auth, repo)
            cached = self._tokens.get(installation)
            if cached is not None and cached[1] - TOKEN_REFRESH_MARGIN > self._clock():
                return cached[0]
            url = f"{self._base}/app/installations/{quote(installation, safe='')}/access_tokens"
            data = self._request("POST", url, jwt=True).data
            try:
                token = str(data["token"])
                expires = datetime.datetime.fromisoformat(str(data["expires_at"])).timestamp()
            except (KeyError, TypeError, ValueError):
                raise GitHubError(201, "unexpected installation token answer") from None
            self._tokens[installation] = (token, expires)
            return token

    def _installation_id(self, auth: AppAuth, repo: str | None) -> str:
        """The configured installation, or the one installed on ``repo`` (looked up once)."""
        named = dict(auth.installations).get(repo.lower()) if repo else None
        if named:
            return named
        if auth.installation_id:
            return str(auth.installation_id)
        if repo is None:
            raise ConfigurationError("GITHUB_APP_INSTALLATION_ID is not set")
        known = self._installations.get(repo.lower())
        if known is None:
            data = self._request("GET", f"{self._repo_url(repo)}/installation", jwt=True).data
            try:
                known = str(int(data["id"]))
            except (KeyError, TypeError, ValueError):
                raise GitHubError(200, "unexpected installation answer") from None
            self._installations[repo.lower()] = known
        return known

    def _limit_scope(self, repo: str | None, *, jwt: bool) -> str:
        """A GitHub App's budget: its installation's for an installation token (found by
        :meth:`_credentials` just before), ``app`` for its JWT; a token's: the one."""
        auth = self._auth
        if isinstance(auth, TokenAuth):
            return ""
        if jwt:
            return "app"
        with self._token_lock:
            return f"installation:{self._installation_id(auth, repo)}"

    def _forget_token(self, token: str) -> bool:
        """Drop ``token`` from the cache; True if it was there (so a retry may help)."""
        with self._token_lock:
            for installation, (cached, _expiry) in list(self._tokens.items()):
                if cached == token:
                    del self._tokens[installation]
                    return True
        return False
