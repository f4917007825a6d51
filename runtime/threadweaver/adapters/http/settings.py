"""Settings of the HTTP API: `HttpSettings` (what `create_app` serves with) and `AuthSettings`
(`--auth` and its `--jwt-*` key files, turned into an `auth.JwtVerifier` by the runtime's
configuration). A leaf module: nothing else of adapters/http is imported here.

Fields declared with `setting` are configurable (`threadweaver serve --FLAG`, see
application/settings.py); the others are set by code (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...application.settings import setting
from ...domain.ids import new_ulid

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

AUTH_MODES = ("none", "jwt")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    max_body_bytes: int = setting(1 << 20, "largest request body accepted (413 beyond)")
    default_limit: int = 100
    max_limit: int = 1000
    # 0 or None: no time-out
    request_timeout_seconds: float = setting(
        20.0, "seconds before a command answers 503", name="request-timeout"
    )
    id_generator: Callable[[], str] = new_ulid  # thread and message ids
    #: where the HTTP metrics live and what /metrics exposes (None: prometheus_client.REGISTRY)
    metrics_registry: CollectorRegistry | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Authentication of the /v1 API (auth.py); the key material stays in its files."""

    mode: str = setting(
        "none",
        "authentication of the /v1 API: none, or jwt (a bearer JWT whose sub is the acting "
        "account)",
        name="auth",
        choices=AUTH_MODES,
    )
    # exactly one of the two key files with mode jwt
    jwt_hs256_secret_file: str = setting(
        "", "with --auth jwt: file holding the HS256 secret (at least 32 bytes; a mounted Secret)"
    )
    jwt_jwks_file: str = setting(
        "", "with --auth jwt: JWKS JSON file with the RS256 public keys (instead of a secret)"
    )
    jwt_issuer: str = setting("", "with --auth jwt: required `iss` of the tokens")
    jwt_audience: str = setting("", "with --auth jwt: required `aud` of the tokens")

    @property
    def enabled(self) -> bool:
        return self.mode == "jwt"
