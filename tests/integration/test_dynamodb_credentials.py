"""The DynamoDB journal's credential chain, as a pod has it, against real processes: the journal
(its lean client) writes to dynalite through a proxy (tests/support/dynamo_counting_proxy.py)
that checks every request's SigV4 signature with botocore's signer and the secret the
credentials were issued with, and records which key signed it.

- web identity (IRSA): a token file exchanged with AssumeRoleWithWebIdentity at moto's STS
  (moto's server mode, a child process on an unusual loopback port), behind a small front that
  shortens the credentials' lifetime to just over botocore's 15-minute refresh window, so that
  expiry approaches in seconds: the credentials are refreshed before they expire, and no request
  is signed with credentials inside the 10-minute window where botocore must have refreshed;
- a refused token: a clear error naming the source;
- container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI and its authorization token) and the
  instance metadata service (IMDSv2 through AWS_EC2_METADATA_SERVICE_ENDPOINT), both local HTTP
  endpoints of the test;
- keys from the environment, and a shared credentials file with a profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from tests.support.dynamo_counting_proxy import CountingProxy, running_proxy
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings
from threadweaver.adapters.journal.dynamodb.credentials import ChainCredentials
from threadweaver.application.ports import JournalError, NewEvent

ROLE_ARN = "arn:aws:iam::123456789012:role/threadweaver"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.threadweaver-test-service-account.signature"
REFUSED_TOKEN = "refused-token"
# botocore refreshes from 15 minutes before expiry (advisory) and must have from 10 (mandatory)
ADVISORY_S, MANDATORY_S = 15 * 60, 10 * 60
LIFETIME_S = ADVISORY_S + 2.0  # a refresh falls due two seconds after each exchange
CHAIN_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
)


@dataclass
class Issued:
    """Credentials handed out by one of the test's sources: key id -> (secret, token, expiry)."""

    keys: dict[str, tuple[str, str | None, float]] = field(default_factory=dict)
    calls: int = 0

    def add(self, key: str, secret: str, token: str | None, expiry: float) -> None:
        self.keys[key] = (secret, token, expiry)
        self.calls += 1


class SignatureChecker:
    """The proxy's inspect hook: every request signed correctly with an issued key that still
    had more than `min_remaining` seconds to live."""

    def __init__(self, issued: Issued, region: str, min_remaining: float = 0.0) -> None:
        self.issued = issued
        self.region = region
        self.min_remaining = min_remaining
        self.problems: list[str] = []
        self.checked = 0

    def __call__(self, headers: dict[str, str], body: bytes) -> None:
        self.checked += 1
        auth = headers.get("Authorization", "")
        found = re.match(
            r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/dynamodb/aws4_request, "
            r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$",
            auth,
        )
        if not found:
            self.problems.append(f"malformed Authorization {auth[:80]!r}")
            return
        key, _day, region, signed, signature = found.groups()
        if key not in self.issued.keys:
            self.problems.append(f"signed with a key nobody issued: {key}")
            return
        secret, token, expiry = self.issued.keys[key]
        remaining = expiry - time.time()
        if remaining <= self.min_remaining:
            self.problems.append(f"{key} used with {remaining:.0f}s left")
        if token != headers.get("X-Amz-Security-Token"):
            self.problems.append(f"{key}: wrong or missing session token")
        lower = {k.lower(): v for k, v in headers.items()}
        request = AWSRequest(
            method="POST",
            url=f"http://{lower['host']}/",
            data=body,
            headers={name: lower[name] for name in signed.split(";")},
        )
        request.context["timestamp"] = lower["x-amz-date"]
        signer = SigV4Auth(BotoCredentials(key, secret, token), "dynamodb", region)
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        if expected != signature or region != self.region:
            self.problems.append(f"bad signature with {key}")


def free_unusual_port() -> int:
    """A free loopback port in a range nothing else here uses."""
    for port in range(47_311, 47_911, 7):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 47311-47911")


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto in server mode (it serves STS), a child process on an unusual loopback port."""
    port = free_unusual_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                pytest.fail(f"moto's server exited ({proc.returncode}): {err}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("moto's server did not listen within 60 s", pytrace=False)
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class StsFront:
    """In front of moto's STS: forwards AssumeRoleWithWebIdentity, refuses REFUSED_TOKEN like
    STS does, and sets the credentials' Expiration to LIFETIME_S from now (moto issues an
    hour), recording what it issued."""

    def __init__(self, moto: str) -> None:
        self.moto = moto
        self.issued = Issued()
        self.tokens: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.tokens.append(str(form.get("WebIdentityToken", "")))
        if form.get("WebIdentityToken") == REFUSED_TOKEN:
            body = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                "<Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                "<Message>Token is not valid</Message></Error></ErrorResponse>"
            )
            return web.Response(status=400, text=body, content_type="text/xml")
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.moto + "/", data=dict(form)) as resp,
        ):
            text = await resp.text()
        expiry = time.time() + LIFETIME_S
        stamp = datetime.datetime.fromtimestamp(expiry, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = re.sub(r"<Expiration>[^<]*</Expiration>", f"<Expiration>{stamp}</Expiration>", text)
        key = re.search(r"<AccessKeyId>([^<]+)<", text)
        secret = re.search(r"<SecretAccessKey>([^<]+)<", text)
        token = re.search(r"<SessionToken>([^<]+)<", text)
        assert key and secret and token, text[:500]
        self.issued.add(key.group(1), secret.group(1), token.group(1), int(expiry))
        return web.Response(text=text, content_type="text/xml")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest_asyncio.fixture
async def sts(moto_server: str) -> AsyncIterator[StsFront]:
    front = StsFront(moto_server)
    await front.start()
    yield front
    await front.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    """No credential source in the environment but what a test sets; no shared files; the
    instance metadata service off (a test that wants it points it at its own endpoint)."""
    for name in CHAIN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return monkeypatch


async def appends(journal: DynamoDBJournal, pid: str, count: int, pause: float = 0.0) -> None:
    for seq in range(count):
        await journal.append(pid, seq, [NewEvent("T", {"n": seq})])
        if pause:
            await asyncio.sleep(pause)


def pid() -> str:
    return f"thread-cred-{time.monotonic_ns()}"


@dataclass
class Signed:
    """A started journal whose requests go through a signature-checking counting proxy."""

    proxy: CountingProxy
    journal: DynamoDBJournal

    @property
    def credentials(self) -> ChainCredentials:
        return self.journal._client.transport.credentials  # type: ignore[union-attr]


OpenSigned = Callable[..., contextlib.AbstractAsyncContextManager[Signed]]


@pytest.fixture
def signed_journal(dynamodb_settings: DynamoDBSettings) -> OpenSigned:
    """The set-up the credential tests share: `async with signed_journal(checker) as signed`
    starts a counting proxy in front of dynalite that hands every request to `checker`, and a
    journal writing through it (closed on exit). With `query` (``"&profile=..."``, or ``""``)
    the journal's settings are parsed from a ``dynamodb://<proxy>?table-prefix=...`` URL with it
    appended, as a runtime's would be, instead of the test settings' own."""

    @contextlib.asynccontextmanager
    async def open_signed(
        checker: SignatureChecker, query: str | None = None
    ) -> AsyncIterator[Signed]:
        upstream = dynamodb_settings.endpoint_url or ""
        async with running_proxy(upstream, inspect=checker) as proxy:
            if query is None:
                settings = replace(dynamodb_settings, endpoint_url=proxy.url)
            else:
                url = proxy.url.replace("http://", "dynamodb://")
                settings = DynamoDBSettings.from_url(
                    f"{url}?table-prefix={dynamodb_settings.table_prefix}{query}"
                )
            journal = DynamoDBJournal(settings, shards=8)
            await journal.start()
            try:
                yield Signed(proxy, journal)
            finally:
                await journal.close()

    return open_signed


# ---------------------------------------------------------------------------------------------


async def test_web_identity_token_is_exchanged_and_refreshed_before_expiry(
    signed_journal, sts, clean_env, tmp_path
):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    clean_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    clean_env.setenv("AWS_ROLE_ARN", ROLE_ARN)
    clean_env.setenv("AWS_ROLE_SESSION_NAME", "threadweaver-test")
    clean_env.setenv("AWS_ENDPOINT_URL_STS", sts.url)
    checker = SignatureChecker(sts.issued, "us-east-1", min_remaining=MANDATORY_S)
    async with signed_journal(checker) as signed:
        p, seq = pid(), 0
        deadline = time.monotonic() + 30
        while sts.issued.calls < 3 and time.monotonic() < deadline:
            await signed.journal.append(p, seq, [NewEvent("T", {"n": seq})])
            seq += 1
            await asyncio.sleep(0.05)
        credentials = signed.credentials
    proxy = signed.proxy
    assert isinstance(credentials, ChainCredentials)
    assert credentials.method == "assume-role-with-web-identity"
    assert sts.issued.calls >= 3, "the credentials were not refreshed within 30 s"
    assert set(sts.tokens) == {TOKEN}  # the token file's content was what STS got
    assert checker.problems == [] and checker.checked == proxy.snapshot()["total"]
    used = set(proxy.keys)
    assert len(used) >= 2 and used <= set(sts.issued.keys)  # refreshed keys were used
    assert credentials.changes >= 1


async def test_a_refused_web_identity_token_is_a_clear_error(
    dynamodb_settings, sts, clean_env, tmp_path
):
    token_file = tmp_path / "token"
    token_file.write_text(REFUSED_TOKEN)
    clean_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    clean_env.setenv("AWS_ROLE_ARN", ROLE_ARN)
    clean_env.setenv("AWS_ENDPOINT_URL_STS", sts.url)
    journal = DynamoDBJournal(dynamodb_settings, shards=8)
    with pytest.raises(JournalError) as info:
        await journal.start()
    await journal.close()
    text = str(info.value)
    assert "cannot obtain AWS credentials" in text and "web-identity" in text
    assert "InvalidIdentityToken" in text and dynamodb_settings.endpoint_url in text


class LocalCredentialEndpoint:
    """The container credentials endpoint (GET with the authorization token) and the instance
    metadata service (IMDSv2: PUT /latest/api/token, then the role and its credentials), on
    one loopback port, handing out credentials that live LIFETIME_S."""

    AUTH = "container-authorization-token"

    def __init__(self) -> None:
        self.issued = Issued()
        self.refused = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    def _credentials(self, token_field: str) -> dict[str, str]:
        n = self.issued.calls + 1
        key, secret, token = f"ASIALOCAL{n:011d}", f"secret-{n}-{time.time_ns()}", f"tok-{n}"
        expiry = time.time() + LIFETIME_S
        self.issued.add(key, secret, token, int(expiry))
        stamp = datetime.datetime.fromtimestamp(expiry, datetime.UTC)
        return {
            "Code": "Success",
            "Type": "AWS-HMAC",
            "AccessKeyId": key,
            "SecretAccessKey": secret,
            token_field: token,
            "Expiration": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    async def container(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.AUTH:
            self.refused += 1
            return web.Response(status=401)
        return web.json_response(self._credentials("Token"))

    async def imds_token(self, request: web.Request) -> web.Response:
        return web.Response(text="imds-session-token")

    async def imds_role(self, request: web.Request) -> web.Response:
        if request.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
            return web.Response(status=401)
        return web.Response(text="threadweaver-node")

    async def imds_credentials(self, request: web.Request) -> web.Response:
        if request.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
            return web.Response(status=401)
        return web.json_response(self._credentials("Token"))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/container-credentials", self.container)
        app.router.add_put("/latest/api/token", self.imds_token)
        app.router.add_get("/latest/meta-data/iam/security-credentials/", self.imds_role)
        app.router.add_get(
            "/latest/meta-data/iam/security-credentials/threadweaver-node", self.imds_credentials
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest_asyncio.fixture
async def local_endpoint() -> AsyncIterator[LocalCredentialEndpoint]:
    endpoint = LocalCredentialEndpoint()
    await endpoint.start()
    yield endpoint
    await endpoint.close()


async def test_container_credentials_with_their_token_and_refresh(
    signed_journal, local_endpoint, clean_env
):
    clean_env.setenv(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{local_endpoint.url}/container-credentials"
    )
    clean_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", LocalCredentialEndpoint.AUTH)
    checker = SignatureChecker(local_endpoint.issued, "us-east-1", min_remaining=MANDATORY_S)
    async with signed_journal(checker) as signed:
        p, seq = pid(), 0
        deadline = time.monotonic() + 30
        while local_endpoint.issued.calls < 2 and time.monotonic() < deadline:
            await signed.journal.append(p, seq, [NewEvent("T", {"n": seq})])
            seq += 1
            await asyncio.sleep(0.05)
        await signed.journal.append(p, seq, [NewEvent("T", {"n": seq})])
        credentials = signed.credentials
    proxy = signed.proxy
    assert credentials.method == "container-role"
    assert local_endpoint.issued.calls >= 2 and local_endpoint.refused == 0
    assert checker.problems == [] and checker.checked == proxy.snapshot()["total"]
    assert len(set(proxy.keys)) >= 2


async def test_instance_metadata_credentials(signed_journal, local_endpoint, clean_env):
    """(botocore stretches the expiry of instance-metadata credentials on its own, "static
    stability", so their refresh is not what this test times.)"""
    clean_env.delenv("AWS_EC2_METADATA_DISABLED")
    clean_env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", local_endpoint.url + "/")
    checker = SignatureChecker(local_endpoint.issued, "us-east-1")
    async with signed_journal(checker) as signed:
        await appends(signed.journal, pid(), 3)
        credentials = signed.credentials
    proxy = signed.proxy
    assert credentials.method == "iam-role"
    assert checker.problems == [] and checker.checked == proxy.snapshot()["total"]
    assert proxy.keys and set(proxy.keys) <= set(local_endpoint.issued.keys)


async def test_keys_from_the_environment(signed_journal, clean_env, services):
    issued = Issued()
    issued.add("AKIAENVIRONMENT00001", "environment-secret", "environment-token", 2**40)
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    clean_env.setenv("AWS_SESSION_TOKEN", "environment-token")
    checker = SignatureChecker(issued, "us-east-1")
    async with signed_journal(checker, query="") as signed:
        await appends(signed.journal, pid(), 3)
    proxy = signed.proxy
    assert checker.problems == [] and proxy.keys == {"AKIAENVIRONMENT00001": checker.checked}


async def test_a_shared_credentials_file_and_profile(signed_journal, clean_env, tmp_path):
    issued = Issued()
    issued.add("AKIAPROFILEKEY000001", "profile-secret", None, 2**40)
    path = tmp_path / "credentials"
    path.write_text(
        "[default]\naws_access_key_id = AKIADEFAULT000000001\naws_secret_access_key = x\n"
        "[threadweaver]\naws_access_key_id = AKIAPROFILEKEY000001\n"
        "aws_secret_access_key = profile-secret\n"
    )
    checker = SignatureChecker(issued, "us-east-1")
    query = f"&credentials-file={path}&profile=threadweaver"
    async with signed_journal(checker, query=query) as signed:
        await appends(signed.journal, pid(), 3)
    assert checker.problems == [] and set(signed.proxy.keys) == {"AKIAPROFILEKEY000001"}
