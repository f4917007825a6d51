"""AWS Signature Version 4 for DynamoDB's JSON protocol: ``POST /`` with a JSON body and the
headers ``content-type``, ``host``, ``x-amz-date``, ``x-amz-target`` (and
``x-amz-security-token`` with temporary credentials), all signed.

The general signer (botocore's ``SigV4Auth``) builds and canonicalises a request object per
call; here the request's shape is fixed, so a signature is two SHA-256 digests and one HMAC, and
the signing key (four HMACs) is derived once per secret, day and region. The result is the
signature botocore computes for the same request (tests/unit/journal/test_dynamodb_sigv4.py).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import NamedTuple

__all__ = ["CONTENT_TYPE", "TARGET_PREFIX", "Credentials", "Signer"]

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "DynamoDB_20120810."
_ALGORITHM = "AWS4-HMAC-SHA256"
_SERVICE = "dynamodb"


class Credentials(NamedTuple):
    """Frozen credentials: what one request is signed with."""

    access_key: str
    secret_key: str
    token: str | None = None


class Signer:
    """Signs DynamoDB requests to `host` (the Host header: ``name`` or ``name:port``) in
    `region`."""

    __slots__ = ("_date", "_date_second", "_host", "_key", "_key_for", "_region", "_scope_tail")

    def __init__(self, host: str, region: str) -> None:
        self._host = host
        self._region = region
        self._scope_tail = f"/{region}/{_SERVICE}/aws4_request"
        self._key: bytes = b""
        self._key_for: tuple[str, str] = ("", "")  # (secret, yyyymmdd) the key was derived for
        self._date = ""
        self._date_second = -1

    @property
    def host(self) -> str:
        return self._host

    def _amz_date(self, now: float | None) -> str:
        second = int(time.time() if now is None else now)
        if second != self._date_second:
            self._date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._date_second = second
        return self._date

    def _signing_key(self, secret: str, day: str) -> bytes:
        if self._key_for != (secret, day):
            key = _hmac(("AWS4" + secret).encode(), day)
            key = _hmac(key, self._region)
            key = _hmac(key, _SERVICE)
            self._key = _hmac(key, "aws4_request")
            self._key_for = (secret, day)
        return self._key

    def headers(
        self, operation: str, body: bytes, creds: Credentials, now: float | None = None
    ) -> dict[str, str]:
        """The request headers of `operation` (``"PutItem"``) with `body`, signed with `creds`
        at `now` (epoch seconds; default: the current time)."""
        amz_date = self._amz_date(now)
        day = amz_date[:8]
        target = TARGET_PREFIX + operation
        token = creds.token
        if token:
            signed = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
            canonical_headers = (
                f"content-type:{CONTENT_TYPE}\nhost:{self._host}\nx-amz-date:{amz_date}\n"
                f"x-amz-security-token:{token}\nx-amz-target:{target}\n"
            )
        else:
            signed = "content-type;host;x-amz-date;x-amz-target"
            canonical_headers = (
                f"content-type:{CONTENT_TYPE}\nhost:{self._host}\nx-amz-date:{amz_date}\n"
                f"x-amz-target:{target}\n"
            )
        canonical = f"POST\n/\n\n{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        scope = day + self._scope_tail
        to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(creds.secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Host": self._host,
            "Content-Type": CONTENT_TYPE,
            "X-Amz-Date": amz_date,
            "X-Amz-Target": target,
            "Authorization": (
                f"{_ALGORITHM} Credential={creds.access_key}/{scope}, "
                f"SignedHeaders={signed}, Signature={signature}"
            ),
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        return headers


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
