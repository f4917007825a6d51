"""Bearer-token (JWT) authentication for the HTTP API, off by default (`--auth none`).

With `--auth jwt` every request needs `Authorization: Bearer <JWT>`, except CORS preflights and
`routes.OPEN_PATHS`, derived from the route table: the open routes (probes, metrics, the OpenAPI
document, `/`) and the internal API (internal.py), which checks its own peer token. The token
is verified with exactly one of:

- an HS256 shared secret (`--jwt-hs256-secret-file`, at least 32 bytes), or
- RS256 public keys in a JWKS JSON file (`--jwt-jwks-file`), chosen by the token's `kid`,

and must carry `exp` and `sub` (plus `iss`/`aud` when `--jwt-issuer`/`--jwt-audience` are set);
`exp`, `nbf` and `iat` are checked with a leeway of 30 seconds. The token's `sub` is the acting
account: a body `accountId` or a query `account_id` naming another account is a 403.

Answers: 401 with `WWW-Authenticate: Bearer ...` and `{"error_messages": [why]}` for a missing,
malformed, badly signed, expired or otherwise unacceptable token; 403
`{"error_messages": ["accountId does not match the authenticated subject"]}`. Neither the token
nor the secret is ever logged or echoed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
import orjson
from aiohttp import hdrs, web

from ...domain.ids import is_ulid
from .errors import ApiError, Handler
from .routes import OPEN_PATHS
from .wire import is_json_content_type

LEEWAY_SECONDS = 30.0
MIN_HS256_SECRET_BYTES = 32
#: request key of the authenticated account (canonical form), for handlers that want it
SUBJECT: Any = (
    web.RequestKey("threadweaver.auth.subject", str)
    if hasattr(web, "RequestKey")
    else "threadweaver.auth.subject"
)
SUBJECT_MISMATCH = "accountId does not match the authenticated subject"
REALM = 'Bearer realm="thread-weaver"'


class AuthConfigError(ValueError):
    """The key material cannot be used (the message names the flag, never the secret)."""


class Unauthorized(Exception):
    """A request whose token is missing or not acceptable; `reason` is safe to answer."""

    def __init__(self, reason: str, error: str | None = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error

    def to_api_error(self) -> ApiError:
        challenge = REALM
        if self.error:
            description = self.reason.replace('"', "'")
            challenge += f', error="{self.error}", error_description="{description}"'
        return ApiError(401, [self.reason], {"WWW-Authenticate": challenge})


def canonical_account(value: str) -> str:
    """Ids are compared in their canonical (upper-case) form; other subjects as they are."""
    return value.upper() if is_ulid(value) else value


class JwtVerifier:
    """Verifies tokens and returns their subject. Immutable after construction."""

    def __init__(
        self,
        *,
        hs256_secret: bytes | None = None,
        rs256_keys: dict[str | None, Any] | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = LEEWAY_SECONDS,
        source: str = "",
    ) -> None:
        if (hs256_secret is None) == (not rs256_keys):
            raise AuthConfigError("give exactly one of an HS256 secret or RS256 (JWKS) keys")
        if hs256_secret is not None and len(hs256_secret) < MIN_HS256_SECRET_BYTES:
            raise AuthConfigError(
                f"--jwt-hs256-secret-file: the secret must be at least "
                f"{MIN_HS256_SECRET_BYTES} bytes"
            )
        self._secret = hs256_secret
        self._keys = dict(rs256_keys or {})
        self.algorithm = "HS256" if hs256_secret is not None else "RS256"
        self.issuer = issuer or None
        self.audience = audience or None
        self.leeway = leeway
        self._source = source

    def __repr__(self) -> str:  # no key material, ever
        return f"JwtVerifier({self.describe()})"

    def describe(self) -> str:
        what = "an HS256 secret" if self._secret is not None else f"{len(self._keys)} RS256 key(s)"
        parts = [f"jwt with {what}" + (f" from {self._source}" if self._source else "")]
        if self.issuer:
            parts.append(f"issuer {self.issuer}")
        if self.audience:
            parts.append(f"audience {self.audience}")
        return ", ".join(parts)

    # -- construction from the settings' files ----------------------------------------------
    @classmethod
    def from_files(
        cls,
        *,
        hs256_secret_file: str = "",
        jwks_file: str = "",
        issuer: str = "",
        audience: str = "",
        leeway: float = LEEWAY_SECONDS,
    ) -> JwtVerifier:
        if bool(hs256_secret_file) == bool(jwks_file):
            raise AuthConfigError(
                "--auth jwt needs exactly one of --jwt-hs256-secret-file or --jwt-jwks-file"
            )
        if hs256_secret_file:
            try:
                secret = Path(hs256_secret_file).read_bytes().strip()
            except OSError as exc:
                raise AuthConfigError(
                    f"--jwt-hs256-secret-file: cannot read {hs256_secret_file}: {exc.strerror}"
                ) from None
            return cls(
                hs256_secret=secret,
                issuer=issuer,
                audience=audience,
                leeway=leeway,
                source=hs256_secret_file,
            )
        try:
            document = json.loads(Path(jwks_file).read_text())
        except OSError as exc:
            raise AuthConfigError(
                f"--jwt-jwks-file: cannot read {jwks_file}: {exc.strerror}"
            ) from None
        except ValueError:
            raise AuthConfigError(f"--jwt-jwks-file: {jwks_file} is not JSON") from None
        return cls(
            rs256_keys=rs256_keys_of(document, jwks_file),
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            source=jwks_file,
        )

    # -- verification -----------------------------------------------------------------------
    def verify(self, token: str) -> str:
        """The token's subject, or Unauthorized saying why (without the token)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a well-formed JWT") from None
        if header.get("alg") != self.algorithm:
            raise Unauthorized(f"the bearer token must be signed with {self.algorithm}")
        key: Any = self._secret
        if key is None:
            kid = header.get("kid")
            if kid is None and len(self._keys) == 1:
                key = next(iter(self._keys.values()))
            else:
                key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise Unauthorized("the bearer token's key id (kid) is not known")
        options: jwt.types.Options = {
            "require": ["exp", "sub"],
            "verify_aud": self.audience is not None,
        }
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                options=options,
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the bearer token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the bearer token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the bearer token's issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the bearer token's audience is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the bearer token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the bearer token's signature is not valid") from None
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not valid") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("the bearer token has no sub claim")
        return canonical_account(subject)


def rs256_keys_of(document: Any, source: str = "the JWKS") -> dict[str | None, Any]:
    """kid -> public key for the RSA signing keys of a JWKS document (RS256 or no `alg`)."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise AuthConfigError(f'--jwt-jwks-file: {source} has no "keys" array')
    keys: dict[str | None, Any] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
            continue
        if "d" in entry:
            raise AuthConfigError(
                f"--jwt-jwks-file: {source} holds a private key; give the public keys only"
            )
        try:
            keys[entry.get("kid")] = jwt.PyJWK(entry, "RS256").key
        except jwt.PyJWTError as exc:
            raise AuthConfigError(
                f"--jwt-jwks-file: a key of {source} is not usable: {type(exc).__name__}"
            ) from None
    if not keys:
        raise AuthConfigError(f"--jwt-jwks-file: {source} holds no RSA signing key (RS256)")
    return keys


# ---------------------------------------------------------------------------------------------
# The middleware
# ---------------------------------------------------------------------------------------------


def bearer_token(request: web.Request) -> str:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if not header:
        raise Unauthorized("a bearer token is required (Authorization: Bearer <JWT>)", None)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be `Bearer <JWT>`", "invalid_request")
    return token


async def _body_account_id(request: web.Request) -> str | None:
    """The body's `accountId` when the body is a JSON object with a ULID there; else None (the
    handler then answers the 400/413/415 it would answer anyway). aiohttp keeps the body read
    here for the handler."""
    if request.method != "POST" or not request.body_exists:
        return None
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if content_type is not None and not is_json_content_type(content_type):
        return None
    try:  # too large: aiohttp raises 413 here, as it would in the handler
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None
    value = body.get("accountId") if type(body) is dict else None
    return value if is_ulid(value) else None


def auth_middleware(verifier: JwtVerifier, open_paths: Iterable[str] = OPEN_PATHS) -> Any:
    """The aiohttp middleware; give it to `create_app(middlewares=[...])` (it raises ApiError,
    which the error middleware outside it turns into JSON)."""
    open_paths = frozenset(open_paths)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths or request.method == "OPTIONS":
            return await handler(request)
        try:
            subject = verifier.verify(bearer_token(request))
        except Unauthorized as exc:
            raise exc.to_api_error() from None
        request[SUBJECT] = subject
        account = request.query.get("account_id")
        if account is not None and is_ulid(account) and canonical_account(account) != subject:
            raise ApiError(403, [SUBJECT_MISMATCH])
        account = await _body_account_id(request)
        if account is not None and canonical_account(account) != subject:
            raise ApiError(403, [SUBJECT_MISMATCH])
        return await handler(request)

    return authenticate
