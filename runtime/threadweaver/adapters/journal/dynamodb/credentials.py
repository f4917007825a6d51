"""Where the journal's client gets the credentials it signs with.

- :class:`StaticCredentials`: keys given explicitly (the environment's AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY as read by :class:`.settings.DynamoDBSettings`, a credentials file or
  directory), or dummy ones for a local server that checks none.
- :class:`ChainCredentials`: botocore's default chain through aiobotocore's async providers,
  what a pod has: the environment, the shared credentials and config files (a profile, an
  assume-role profile), a web identity token (IRSA: AWS_WEB_IDENTITY_TOKEN_FILE and
  AWS_ROLE_ARN, exchanged with STS' AssumeRoleWithWebIdentity), container credentials
  (AWS_CONTAINER_CREDENTIALS_FULL_URI / _RELATIVE_URI with the authorization token or its
  file) and the instance metadata service (IMDSv2; AWS_EC2_METADATA_SERVICE_ENDPOINT). STS and
  the other endpoints follow botocore's configuration (AWS_ENDPOINT_URL_STS, AWS_REGION, ...).

Temporary credentials are refreshed by botocore before they expire: from 15 minutes before,
one caller refreshes while the others sign with the current ones; from 10 minutes before,
callers wait for the refresh. This module asks botocore for the frozen credentials at most once
per `check_every` seconds, so a request pays a comparison, not botocore's clock and locks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from ....application.ports import JournalError
from .errors import credentials_error, no_credentials
from .settings import DynamoDBSettings
from .sigv4 import Credentials

__all__ = ["ChainCredentials", "CredentialSource", "StaticCredentials", "credential_source"]


class CredentialSource(Protocol):
    async def get(self) -> Credentials:
        """The credentials to sign the next request with."""
        ...


class StaticCredentials:
    __slots__ = ("_creds",)

    def __init__(self, creds: Credentials) -> None:
        self._creds = creds

    async def get(self) -> Credentials:
        return self._creds


class ChainCredentials:
    """botocore's default credential chain (see the module docstring), refreshed before expiry.
    `method` names the provider that answered (``env``, ``assume-role-with-web-identity``,
    ``container-role``, ``iam-role``, ...) once credentials were found."""

    def __init__(self, settings: DynamoDBSettings, *, check_every: float = 1.0) -> None:
        self._settings = settings
        self._check_every = check_every
        self._source: Any = None  # aiobotocore's (refreshable) credentials object
        self._frozen: Credentials | None = None
        self._next_check = 0.0
        self._lock = asyncio.Lock()
        self.method = ""
        self.changes = 0  # times the access key changed (refreshes that brought new keys)

    async def get(self) -> Credentials:
        frozen = self._frozen
        if frozen is not None and (time.monotonic() < self._next_check or self._lock.locked()):
            return frozen  # fresh enough, or another caller is asking botocore right now
        async with self._lock:
            if self._frozen is not None and time.monotonic() < self._next_check:
                return self._frozen
            got = await self._ask_botocore()
            if self._frozen is not None and got.access_key != self._frozen.access_key:
                self.changes += 1
            self._frozen = got
            self._next_check = time.monotonic() + self._check_every
            return got

    async def _ask_botocore(self) -> Credentials:
        from botocore import exceptions as bex

        from .client import ConnectionFailure

        try:
            if self._source is None:
                from aiobotocore.session import AioSession

                session = AioSession(profile=self._settings.profile)
                source = await session.get_credentials()
                if source is None:
                    raise no_credentials(self._settings)
                self._source = source
                self.method = str(getattr(source, "method", "") or "")
            frozen = await self._source.get_frozen_credentials()
        except JournalError:
            raise
        except asyncio.CancelledError:
            raise
        except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as exc:
            raise ConnectionFailure(f"credentials ({self.method or 'chain'}): {exc}") from None
        except Exception as exc:  # CredentialRetrievalError, STS refusing the token, bad config
            raise credentials_error(
                self._settings,
                self.method or "the default chain",
                f"{type(exc).__name__}: {exc}",
            ) from None
        if not frozen.access_key or not frozen.secret_key:
            raise no_credentials(self._settings)
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def credential_source(settings: DynamoDBSettings) -> CredentialSource:
    """Static credentials where the settings resolve to keys, else the default chain."""
    creds = settings.resolve_credentials()
    if creds is not None:
        return StaticCredentials(Credentials(*creds))
    return ChainCredentials(settings)
