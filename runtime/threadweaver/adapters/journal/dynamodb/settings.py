"""Where the DynamoDB journal lives and who it authenticates as: ``DynamoDBSettings`` (also
parsed from a ``dynamodb://`` URL) and the credentials it resolves to.

Light on purpose: the operator imports this module (and :mod:`.tables`) only, never the journal
or its client.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ....application.ports import JournalError

__all__ = ["DynamoDBSettings"]

_LOCAL_DUMMY_CREDENTIALS = ("threadweaver-local", "threadweaver-local")


@dataclass(frozen=True)
class DynamoDBSettings:
    """Where the journal lives and how to authenticate.

    ``endpoint_url`` None means AWS itself (the regional endpoint). Credentials, first found wins:
    ``access_key_id``/``secret_access_key``; ``credentials_file`` (a directory such as a mounted
    Kubernetes Secret with files ``access-key-id`` and ``secret-access-key``, or an AWS shared
    credentials file, profile ``AWS_PROFILE`` or ``default``); then botocore's default chain
    (environment, shared files and profiles, web identity / IRSA, container credentials,
    instance role; :mod:`.credentials`). A custom endpoint gets dummy ones (local servers check
    none) unless a profile or the environment names a source (keys, a web identity token file,
    container credentials, an instance-metadata endpoint, a config file).
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"
    table_prefix: str = "threadweaver"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    credentials_file: str | None = None
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None

    def __post_init__(self) -> None:
        prefix = self.table_prefix
        if not prefix or len(prefix) > 200 or not all(c.isalnum() or c in "_.-" for c in prefix):
            raise ValueError(f"table prefix {prefix!r}: 1 to 200 characters of a-z A-Z 0-9 _ . -")
        if not self.region:
            raise ValueError("region must not be empty")

    @property
    def journal_table(self) -> str:
        return f"{self.table_prefix}-journal"

    @property
    def snapshot_table(self) -> str:
        return f"{self.table_prefix}-snapshot"

    @property
    def tables(self) -> list[str]:
        return [self.journal_table, self.snapshot_table]

    def __repr__(self) -> str:  # never shows secrets
        creds = (
            "explicit"
            if self.access_key_id
            else f"file {self.credentials_file}"
            if self.credentials_file
            else "default chain"
        )
        return (
            f"DynamoDBSettings(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"table_prefix={self.table_prefix!r}, credentials={creds})"
        )

    def describe(self) -> str:
        """For logs and errors: where, never who."""
        return f"{self.endpoint_url or 'AWS'} ({self.region}), tables {self.table_prefix}-*"

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> DynamoDBSettings:
        """``dynamodb://HOST:PORT?region=R&table-prefix=P`` (no host: AWS).

        Query parameters: ``region`` (else AWS_REGION, AWS_DEFAULT_REGION, us-east-1),
        ``table-prefix`` (default ``threadweaver``), ``tls=true`` (https to HOST),
        ``credentials-file`` (directory or shared credentials file; else
        AWS_SHARED_CREDENTIALS_FILE), ``profile``. Keys from AWS_ACCESS_KEY_ID /
        AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) are used unless a credentials file is named
        in the URL.
        """
        env = os.environ if environ is None else environ
        parts = urlsplit(url)
        if parts.scheme != "dynamodb":
            raise ValueError(f"not a dynamodb:// URL: {url!r}")
        query = {k.replace("_", "-"): v[-1] for k, v in parse_qs(parts.query).items()}
        allowed = {"region", "table-prefix", "tls", "credentials-file", "profile"}
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise ValueError(
                f"unknown dynamodb URL parameter(s) {', '.join(unknown)};"
                f" allowed: {', '.join(sorted(allowed))}"
            )
        if parts.username or parts.password:
            raise ValueError(
                "credentials do not belong in the dynamodb URL: use AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY or a credentials file"
            )
        tls = query.get("tls", "false").lower() in ("1", "true", "yes", "on")
        endpoint = None
        if parts.hostname:
            try:
                port = parts.port
            except ValueError as exc:
                raise ValueError(f"invalid port in {url!r}") from exc
            host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            endpoint = f"{'https' if tls else 'http'}://{host}" + (f":{port}" if port else "")
        region = (
            query.get("region")
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        creds_file = query.get("credentials-file") or env.get("AWS_SHARED_CREDENTIALS_FILE") or None
        key_id = secret = token = None
        if (
            "credentials-file" not in query
            and env.get("AWS_ACCESS_KEY_ID")
            and env.get("AWS_SECRET_ACCESS_KEY")
        ):
            key_id, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
            token = env.get("AWS_SESSION_TOKEN") or None
        return cls(
            endpoint_url=endpoint,
            region=region,
            table_prefix=query.get("table-prefix") or "threadweaver",
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token,
            credentials_file=creds_file,
            profile=query.get("profile") or env.get("AWS_PROFILE") or None,
        )

    def resolve_credentials(self) -> tuple[str, str, str | None] | None:
        """(key id, secret, session token) to use, or None for botocore's default chain
        (:mod:`.credentials`, which refreshes temporary credentials). Files are read on every
        call, so a rotated Secret is picked up by a new client."""
        if self.access_key_id and self.secret_access_key:
            return self.access_key_id, self.secret_access_key, self.session_token
        if self.credentials_file:
            found = _read_credentials_file(Path(self.credentials_file), self.profile)
            if found is not None:
                return found
        if self.endpoint_url and not self.profile and not _env_names_credentials():
            return (*_LOCAL_DUMMY_CREDENTIALS, None)
        return None


# What makes the default chain worth asking for a custom endpoint (a local server otherwise gets
# dummy keys: asking the chain there would end at the instance metadata address).
_CHAIN_VARIABLES = (
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_CONFIG_FILE",
)


def _env_names_credentials() -> bool:
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return True
    return any(env.get(name) for name in _CHAIN_VARIABLES)


_DIR_KEY_FILES = (
    ("access-key-id", "secret-access-key", "session-token"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"),
    ("accessKeyId", "secretAccessKey", "sessionToken"),
)


def _read_credentials_file(path: Path, profile: str | None) -> tuple[str, str, str | None] | None:
    try:
        if path.is_dir():
            for id_name, secret_name, token_name in _DIR_KEY_FILES:
                if (path / id_name).is_file() and (path / secret_name).is_file():
                    token_file = path / token_name
                    token = token_file.read_text().strip() if token_file.is_file() else None
                    return (
                        (path / id_name).read_text().strip(),
                        (path / secret_name).read_text().strip(),
                        token or None,
                    )
            raise JournalError(
                f"credentials directory {path} has no access-key-id and secret-access-key files"
            )
        if path.is_file():
            parser = configparser.ConfigParser()
            parser.read(path)
            section = profile or "default"
            for name in (section, f"profile {section}"):
                if parser.has_section(name):
                    sec = parser[name]
                    if sec.get("aws_access_key_id") and sec.get("aws_secret_access_key"):
                        return (
                            sec["aws_access_key_id"].strip(),
                            sec["aws_secret_access_key"].strip(),
                            (sec.get("aws_session_token") or "").strip() or None,
                        )
            raise JournalError(f"credentials file {path} has no keys for profile {section!r}")
    except OSError as exc:
        raise JournalError(f"cannot read credentials file {path}: {exc.strerror}") from None
    raise JournalError(f"credentials file {path} does not exist")
