"""--auth jwt: the bearer-token middleware (HS256 secret, RS256 JWKS), the subject check on body
and query, the open routes, the settings and flags, and the OpenAPI security scheme."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from threadweaver.adapters.http import HttpSettings, create_app
from threadweaver.adapters.http.auth import (
    SUBJECT_MISMATCH,
    AuthConfigError,
    JwtVerifier,
    auth_middleware,
)
from threadweaver.config import ConfigError, Settings
from threadweaver.domain import new_ulid

SECRET = b"0123456789abcdef0123456789abcdef-test-secret"
ISSUER, AUDIENCE = "https://issuer.example", "thread-weaver"


def hs256(sub, secret=SECRET, **claims):
    payload = {"sub": sub, "exp": int(time.time()) + 300, "iss": ISSUER, "aud": AUDIENCE}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def verifier():
    return JwtVerifier(hs256_secret=SECRET, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
async def http(make_client, verifier):
    return await make_client(middlewares=[auth_middleware(verifier)])


def create_body(admin):
    return {
        "accountId": admin,
        "title": "t",
        "administratorIds": [admin],
        "memberIds": [],
        "createAt": 1,
    }


async def expect_401(resp, fragment):
    data = await resp.json()
    assert resp.status == 401, (resp.status, data)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.headers["Content-Type"] == "application/json"
    assert len(data["error_messages"]) == 1 and fragment in data["error_messages"][0], data
    return data


# --- HS256 -------------------------------------------------------------------------------------
async def test_a_valid_token_is_accepted(http):
    admin = new_ulid()
    resp = await http.post(
        "/v1/threads/create", json=create_body(admin), headers=bearer(hs256(admin))
    )
    assert resp.status == 200, await resp.text()
    tid = (await resp.json())["thread_id"]
    resp = await http.get(
        f"/v1/threads/{tid}", params={"account_id": admin}, headers=bearer(hs256(admin))
    )
    assert resp.status == 200


async def test_a_missing_token_is_a_401(http):
    resp = await http.post("/v1/threads/create", json=create_body(new_ulid()))
    await expect_401(resp, "bearer token is required")
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="thread-weaver"'
    resp = await http.get("/v1/threads", params={"account_id": new_ulid()})
    await expect_401(resp, "bearer token is required")
    resp = await http.get("/no/such/route")  # nothing is revealed without a token
    assert resp.status == 401


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "token"])
async def test_another_scheme_is_a_401(http, header):
    resp = await http.get(
        "/v1/threads", params={"account_id": new_ulid()}, headers={"Authorization": header}
    )
    await expect_401(resp, "Bearer <JWT>")


async def test_a_bad_signature_is_a_401_and_the_token_is_not_echoed(http):
    admin = new_ulid()
    token = hs256(admin, secret=b"another-secret-another-secret-another")
    resp = await http.post("/v1/threads/create", json=create_body(admin), headers=bearer(token))
    data = await expect_401(resp, "signature is not valid")
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    text = json.dumps(data) + str(dict(resp.headers))
    assert token not in text and token.split(".")[2] not in text


@pytest.mark.parametrize(
    "token, fragment",
    [
        ("not-a-jwt", "not a well-formed JWT"),
        ("a.b.c", "not a well-formed JWT"),
    ],
)
async def test_a_malformed_token_is_a_401(http, token, fragment):
    resp = await http.get("/v1/threads", params={"account_id": new_ulid()}, headers=bearer(token))
    await expect_401(resp, fragment)


async def test_an_expired_token_is_a_401_after_the_leeway(http):
    admin = new_ulid()
    now = int(time.time())
    resp = await http.post(
        "/v1/threads/create", json=create_body(admin), headers=bearer(hs256(admin, exp=now - 120))
    )
    await expect_401(resp, "expired")
    resp = await http.post(
        "/v1/threads/create", json=create_body(admin), headers=bearer(hs256(admin, exp=now - 10))
    )  # within 30 s
    assert resp.status == 200
    resp = await http.post(
        "/v1/threads/create", json=create_body(admin), headers=bearer(hs256(admin, nbf=now + 120))
    )
    await expect_401(resp, "not valid yet")


@pytest.mark.parametrize(
    "claims, fragment",
    [
        ({"iss": "https://evil.example"}, "issuer is not accepted"),
        ({"iss": None}, "no iss claim"),
        ({"aud": "someone-else"}, "audience is not accepted"),
        ({"aud": None}, "no aud claim"),
        ({"exp": None}, "no exp claim"),
        ({"sub": None}, "no sub claim"),
    ],
)
async def test_issuer_audience_and_required_claims(http, claims, fragment):
    admin = new_ulid()
    token = hs256(admin, **claims) if "sub" not in claims else hs256(None)
    resp = await http.post("/v1/threads/create", json=create_body(admin), headers=bearer(token))
    await expect_401(resp, fragment)


async def test_other_algorithms_are_refused(http):
    admin = new_ulid()
    unsigned = jwt.encode(
        {"sub": admin, "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE}, None, "none"
    )
    resp = await http.post("/v1/threads/create", json=create_body(admin), headers=bearer(unsigned))
    await expect_401(resp, "must be signed with HS256")
    hs512 = jwt.encode(
        {"sub": admin, "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE},
        SECRET + b"-long-enough-for-hs512-" * 3,
        "HS512",
    )
    resp = await http.post("/v1/threads/create", json=create_body(admin), headers=bearer(hs512))
    await expect_401(resp, "must be signed with HS256")


async def test_no_audience_configured_accepts_any_audience(make_client):
    client = await make_client(middlewares=[auth_middleware(JwtVerifier(hs256_secret=SECRET))])
    admin = new_ulid()
    resp = await client.post(
        "/v1/threads/create",
        json=create_body(admin),
        headers=bearer(hs256(admin, aud="whatever", iss="anyone")),
    )
    assert resp.status == 200


# --- the subject is the acting account ---------------------------------------------------------
async def test_a_body_account_id_of_another_account_is_a_403(http):
    me, other = new_ulid(), new_ulid()
    resp = await http.post("/v1/threads/create", json=create_body(other), headers=bearer(hs256(me)))
    assert resp.status == 403
    assert await resp.json() == {"error_messages": [SUBJECT_MISMATCH]}
    resp = await http.post(
        f"/v1/threads/{new_ulid()}/messages/add",
        headers=bearer(hs256(me)),
        json={"accountId": other, "createAt": 1, "messages": []},
    )
    assert resp.status == 403


async def test_a_query_account_id_of_another_account_is_a_403(http):
    me, other = new_ulid(), new_ulid()
    for path in ("/v1/threads", f"/v1/threads/{new_ulid()}", f"/v1/threads/{new_ulid()}/messages"):
        resp = await http.get(path, params={"account_id": other}, headers=bearer(hs256(me)))
        assert resp.status == 403, path
        assert await resp.json() == {"error_messages": [SUBJECT_MISMATCH]}
    resp = await http.get("/v1/threads", params={"account_id": me}, headers=bearer(hs256(me)))
    assert resp.status == 200


async def test_ids_are_compared_in_canonical_case(http):
    me = new_ulid()
    resp = await http.post(
        "/v1/threads/create", json=create_body(me.lower()), headers=bearer(hs256(me))
    )
    assert resp.status == 200
    resp = await http.get(
        "/v1/threads", params={"account_id": me}, headers=bearer(hs256(me.lower()))
    )
    assert resp.status == 200


async def test_bad_input_is_still_a_400_with_a_valid_token(http):
    me = new_ulid()
    resp = await http.post(
        "/v1/threads/create",
        data=b"{not json",
        headers={**bearer(hs256(me)), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    resp = await http.post(
        "/v1/threads/create",
        json={**create_body(me), "accountId": "nope"},
        headers=bearer(hs256(me)),
    )
    assert resp.status == 400 and "accountId" in (await resp.json())["error_messages"][0]
    resp = await http.get("/v1/threads", params={"account_id": "nope"}, headers=bearer(hs256(me)))
    assert resp.status == 400
    resp = await http.post(
        "/v1/threads/create", data="x", headers={**bearer(hs256(me)), "Content-Type": "text/plain"}
    )
    assert resp.status == 415


# --- open routes -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/live", "/ready", "/metrics", "/v1/openapi.json"])
async def test_open_routes_need_no_token(http, path):
    resp = await http.get(path)
    assert resp.status == 200


async def test_preflight_needs_no_token(http):
    resp = await http.options(
        "/v1/threads/create",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert resp.status == 204
    assert "authorization" in resp.headers["Access-Control-Allow-Headers"]


async def test_the_internal_endpoint_is_left_to_its_peer_token(gateway, queries, registry):
    app = create_app(
        commands=gateway,
        queries=queries,
        settings=HttpSettings(metrics_registry=registry),
        middlewares=[auth_middleware(JwtVerifier(hs256_secret=SECRET))],
    )

    async def internal(request):
        return web.json_response({"reached": True})

    app.router.add_post("/internal/v1/execute", internal)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.post(
            "/internal/v1/execute", json={}, headers={"Authorization": "Bearer peer-token"}
        )
        assert resp.status == 200 and await resp.json() == {"reached": True}
    finally:
        await client.close()


async def test_without_the_middleware_nothing_changes(client):
    resp = await client.post("/v1/threads/create", json=create_body(new_ulid()))
    assert resp.status == 200


# --- RS256 with a JWKS file --------------------------------------------------------------------
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(private_key, kid, **extra):
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256", **extra}


@pytest.fixture(scope="module")
def rsa_keys():
    return {"k1": rsa_key(), "k2": rsa_key()}


@pytest.fixture
def jwks_file(tmp_path, rsa_keys):
    path = tmp_path / "jwks.json"
    ec_key = {
        "kty": "EC",
        "crv": "P-256",
        "kid": "ec",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    }
    path.write_text(
        json.dumps({"keys": [jwk_of(k, kid) for kid, k in rsa_keys.items()] + [ec_key]})
    )
    return path


def rs256(private_key, sub, kid, **claims):
    payload = {"sub": sub, "exp": int(time.time()) + 300, **claims}
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, private_key, "RS256", headers=headers)


async def test_rs256_tokens_verified_with_a_jwks_file(make_client, jwks_file, rsa_keys):
    verifier = JwtVerifier.from_files(jwks_file=str(jwks_file))
    assert verifier.algorithm == "RS256" and "2 RS256 key(s)" in verifier.describe()
    client = await make_client(middlewares=[auth_middleware(verifier)])
    admin = new_ulid()
    for kid in ("k1", "k2"):
        resp = await client.post(
            "/v1/threads/create",
            json=create_body(admin),
            headers=bearer(rs256(rsa_keys[kid], admin, kid)),
        )
        assert resp.status == 200, await resp.text()
    # the wrong key for the kid, an unknown kid, no kid among several keys
    await expect_401(
        await client.post(
            "/v1/threads/create",
            json=create_body(admin),
            headers=bearer(rs256(rsa_keys["k2"], admin, "k1")),
        ),
        "signature is not valid",
    )
    await expect_401(
        await client.post(
            "/v1/threads/create",
            json=create_body(admin),
            headers=bearer(rs256(rsa_key(), admin, "k9")),
        ),
        "key id (kid) is not known",
    )
    await expect_401(
        await client.post(
            "/v1/threads/create",
            json=create_body(admin),
            headers=bearer(rs256(rsa_keys["k1"], admin, None)),
        ),
        "key id (kid) is not known",
    )
    # an HS256 token (e.g. signed with the public key: algorithm confusion) is refused
    forged = jwt.encode(
        {"sub": admin, "exp": int(time.time()) + 60}, b"x" * 32, "HS256", headers={"kid": "k1"}
    )
    await expect_401(
        await client.post("/v1/threads/create", json=create_body(admin), headers=bearer(forged)),
        "must be signed with RS256",
    )
    # expired, and a subject mismatch, as with HS256
    await expect_401(
        await client.post(
            "/v1/threads/create",
            json=create_body(admin),
            headers=bearer(rs256(rsa_keys["k1"], admin, "k1", exp=int(time.time()) - 120)),
        ),
        "expired",
    )
    resp = await client.post(
        "/v1/threads/create",
        json=create_body(new_ulid()),
        headers=bearer(rs256(rsa_keys["k1"], admin, "k1")),
    )
    assert resp.status == 403


async def test_a_single_key_jwks_accepts_tokens_without_kid(make_client, tmp_path, rsa_keys):
    path = tmp_path / "one.json"
    jwk = jwk_of(rsa_keys["k1"], "only")
    del jwk["kid"], jwk["alg"], jwk["use"]
    path.write_text(json.dumps({"keys": [jwk]}))
    verifier = JwtVerifier.from_files(jwks_file=str(path), issuer=ISSUER)
    client = await make_client(middlewares=[auth_middleware(verifier)])
    admin = new_ulid()
    resp = await client.post(
        "/v1/threads/create",
        json=create_body(admin),
        headers=bearer(rs256(rsa_keys["k1"], admin, None, iss=ISSUER)),
    )
    assert resp.status == 200
    await expect_401(
        await client.post(
            "/v1/threads/create",
            json=create_body(admin),
            headers=bearer(rs256(rsa_keys["k1"], admin, None, iss="other")),
        ),
        "issuer",
    )


# --- configuration ---------------------------------------------------------------------------
def test_key_material_errors(tmp_path, rsa_keys):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    assert JwtVerifier.from_files(hs256_secret_file=str(secret)).algorithm == "HS256"
    short = tmp_path / "short"
    short.write_text("too-short\n")
    cases = [
        dict(hs256_secret_file=str(short)),
        dict(),
        dict(hs256_secret_file=str(secret), jwks_file=str(secret)),
        dict(hs256_secret_file=str(tmp_path / "missing")),
        dict(jwks_file=str(secret)),  # not JSON
    ]
    private = tmp_path / "private.json"
    private.write_text(
        jwt.algorithms.RSAAlgorithm.to_jwk(rsa_keys["k1"]).join(['{"keys": [', "]}"])
    )
    no_rsa = tmp_path / "no-rsa.json"
    no_rsa.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    no_keys = tmp_path / "no-keys.json"
    no_keys.write_text("{}")
    enc_only = tmp_path / "enc.json"
    enc_only.write_text(json.dumps({"keys": [jwk_of(rsa_keys["k1"], "e", use="enc")]}))
    cases += [dict(jwks_file=str(p)) for p in (private, no_rsa, no_keys, enc_only)]
    for case in cases:
        with pytest.raises(AuthConfigError) as err:
            JwtVerifier.from_files(**case)
        assert SECRET.decode() not in str(err.value)
    with pytest.raises(AuthConfigError, match="private key"):
        JwtVerifier.from_files(jwks_file=str(private))


def test_the_secret_never_shows(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    verifier = JwtVerifier.from_files(hs256_secret_file=str(secret), issuer=ISSUER)
    for text in (repr(verifier), verifier.describe()):
        assert SECRET.decode() not in text
    assert str(secret) in verifier.describe() and ISSUER in verifier.describe()


def test_settings_validate_auth(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    base = dict(data_dir=tmp_path)
    assert Settings.from_options(base).resolved().auth.mode == "none"
    Settings.from_options(dict(**base, auth="jwt", jwt_hs256_secret_file=str(secret))).resolved()
    for bad in (
        dict(auth="jwt"),
        dict(auth="basic"),
        dict(auth="none", jwt_hs256_secret_file=str(secret)),
        dict(auth="jwt", jwt_jwks_file=str(secret)),
        dict(idempotency_keys=-1),
        dict(idempotency_window=0),
    ):
        with pytest.raises(ConfigError):
            Settings.from_options(dict(**base, **bad)).resolved()


def test_flags_and_environment(tmp_path, monkeypatch):
    from threadweaver.cli import build_parser, settings_from

    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    args = build_parser().parse_args(
        [
            "serve",
            "--data-dir",
            str(tmp_path),
            "--auth",
            "jwt",
            "--jwt-hs256-secret-file",
            str(secret),
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
            "--idempotency-keys",
            "50",
            "--idempotency-window",
            "60",
        ]
    )
    s = settings_from(args)
    assert (s.auth.mode, s.auth.jwt_issuer, s.auth.jwt_audience) == ("jwt", ISSUER, AUDIENCE)
    assert (s.entities.idempotency_keys, s.entities.idempotency_window) == (50, 60.0)
    assert s.jwt_verifier().audience == AUDIENCE
    monkeypatch.setenv("THREADWEAVER_AUTH", "jwt")
    monkeypatch.setenv("THREADWEAVER_JWT_HS256_SECRET_FILE", str(secret))
    s = settings_from(build_parser().parse_args(["serve", "--data-dir", str(tmp_path)]))
    assert s.auth.mode == "jwt" and s.auth.jwt_hs256_secret_file == str(secret)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--auth", "basic"])


# --- the document ----------------------------------------------------------------------------
async def test_openapi_documents_an_optional_bearer_scheme(client):
    doc = await (await client.get("/v1/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert "--auth jwt" in scheme["description"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path.startswith(("/v1/threads", "/v1/accounts")):
                assert op["security"] == [{"bearerAuth": []}, {}], (method, path)
                assert {"401", "403"} <= set(op["responses"])
                assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
            else:
                assert "security" not in op, (method, path)
