"""--auth jwt against a real `threadweaver serve` process: HS256 configured through environment
variables, RS256 through a JWKS file and flags; probes stay open; the secret and the tokens never
reach the log; a misconfiguration stops the process at start."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.runtime_process import THREADWEAVER, RuntimeProcess
from threadweaver.domain import new_ulid

SECRET = "integration-secret-0123456789abcdef-0123456789"
ISSUER, AUDIENCE = "https://issuer.example", "thread-weaver-it"


def hs256(sub, **claims):
    payload = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300, **claims}
    return jwt.encode(payload, SECRET, "HS256")


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def create_body(admin):
    return {
        "accountId": admin,
        "title": "auth",
        "administratorIds": [admin],
        "memberIds": [],
        "createAt": int(time.time() * 1000),
    }


@pytest.fixture(scope="module")
def hs_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("auth-hs256")
    (data / "jwt-secret").write_text(SECRET + "\n")
    proc = RuntimeProcess(
        data,
        name="auth-hs256",
        env={
            "THREADWEAVER_AUTH": "jwt",
            "THREADWEAVER_JWT_HS256_SECRET_FILE": str(data / "jwt-secret"),
            "THREADWEAVER_JWT_ISSUER": ISSUER,
            "THREADWEAVER_JWT_AUDIENCE": AUDIENCE,
            "THREADWEAVER_LOG_LEVEL": "debug",
        },
    ).start()
    yield proc
    assert proc.stop() == 0, proc.log_tail()


async def test_hs256_end_to_end(hs_server):
    admin, other = new_ulid(), new_ulid()
    token = hs256(admin)
    async with aiohttp.ClientSession(hs_server.url) as http:
        for path in ("/", "/live", "/ready", "/metrics", "/v1/openapi.json"):
            async with http.get(path) as r:
                assert r.status == 200, path
        async with http.post("/v1/threads/create", json=create_body(admin)) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json())["error_messages"]
        async with http.post(
            "/v1/threads/create", json=create_body(admin), headers=bearer(token)
        ) as r:
            assert r.status == 200, await r.text()
            tid = (await r.json())["thread_id"]
        async with http.post(
            "/v1/threads/create", json=create_body(other), headers=bearer(token)
        ) as r:
            assert r.status == 403
            assert await r.json() == {
                "error_messages": ["accountId does not match the authenticated subject"]
            }
        async with http.get(
            f"/v1/threads/{tid}", params={"account_id": other}, headers=bearer(token)
        ) as r:
            assert r.status == 403
        expired = hs256(admin, exp=int(time.time()) - 120)
        async with http.get(
            "/v1/threads", params={"account_id": admin}, headers=bearer(expired)
        ) as r:
            assert r.status == 401 and "expired" in (await r.json())["error_messages"][0]
        wrong_audience = hs256(admin, aud="someone-else")
        async with http.get(
            "/v1/threads", params={"account_id": admin}, headers=bearer(wrong_audience)
        ) as r:
            assert r.status == 401
        deadline = time.monotonic() + 10
        while True:  # the read model catches up
            async with http.get(
                f"/v1/threads/{tid}", params={"account_id": admin}, headers=bearer(token)
            ) as r:
                if r.status == 200 or time.monotonic() > deadline:
                    break
            await asyncio.sleep(0.05)
        assert r.status == 200
        # idempotency and authentication together
        path = f"/v1/threads/{tid}/messages/add"
        body = {"accountId": admin, "createAt": 1, "messages": [{"text": "x", "toAccountIds": []}]}
        answers = []
        for _ in range(2):
            async with http.post(
                path, json=body, headers={**bearer(token), "Idempotency-Key": "k"}
            ) as r:
                assert r.status == 200
                answers.append(await r.json())
        assert answers[0] == answers[1]
    log = hs_server.log_path.read_text()
    assert "authentication: jwt with an HS256 secret" in log
    assert SECRET not in log and token not in log and expired not in log


async def test_rs256_jwks_end_to_end(tmp_path):
    keys = {
        kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("a", "b")
    }
    jwks = {
        "keys": [
            {
                **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())),
                "kid": kid,
                "use": "sig",
                "alg": "RS256",
            }
            for kid, k in keys.items()
        ]
    }
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    server = RuntimeProcess(
        tmp_path,
        name="auth-rs256",
        args=[
            "--auth",
            "jwt",
            "--jwt-jwks-file",
            str(tmp_path / "jwks.json"),
            "--jwt-issuer",
            ISSUER,
        ],
    ).start()
    admin = new_ulid()
    try:
        async with aiohttp.ClientSession(server.url) as http:
            for kid, key in keys.items():
                token = jwt.encode(
                    {"sub": admin, "iss": ISSUER, "exp": int(time.time()) + 60},
                    key,
                    "RS256",
                    headers={"kid": kid},
                )
                async with http.post(
                    "/v1/threads/create", json=create_body(admin), headers=bearer(token)
                ) as r:
                    assert r.status == 200, await r.text()
            stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            forged = jwt.encode(
                {"sub": admin, "iss": ISSUER, "exp": int(time.time()) + 60},
                stranger,
                "RS256",
                headers={"kid": "a"},
            )
            async with http.post(
                "/v1/threads/create", json=create_body(admin), headers=bearer(forged)
            ) as r:
                assert r.status == 401
                assert "signature" in (await r.json())["error_messages"][0]
    finally:
        assert server.stop() == 0, server.log_tail()


def test_a_misconfigured_auth_stops_the_process_at_start(tmp_path):
    short = tmp_path / "short-secret"
    short.write_text("tiny-s3cr3t")
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADWEAVER_")}
    for args, message in (
        (["--auth", "jwt"], "exactly one of"),
        (["--auth", "jwt", "--jwt-hs256-secret-file", str(short)], "at least 32 bytes"),
        (["--jwt-hs256-secret-file", str(short)], "--auth"),
    ):
        proc = subprocess.run(
            [str(THREADWEAVER), "serve", "--data-dir", str(tmp_path), "--port", "1", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "tiny-s3cr3t" not in proc.stderr
