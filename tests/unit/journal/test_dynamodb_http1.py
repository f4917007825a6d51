"""The journal's HTTP/1.1 client (dynamodb/http1.py) against loopback servers: keep-alive reuse,
chunked answers, `Connection: close`, idle connections dropped before reuse, a server that never
answers, a refused port, and TLS with certificate verification (a certificate made for the
test, trusted by the client's context, and refused by a default one)."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from threadweaver.adapters.journal.dynamodb.http1 import HttpFailure, Origin


def request(body: bytes = b"{}", host: str = "127.0.0.1") -> bytes:
    return (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.0\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def serve(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> Any:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, list[str]]]:
    """POST / echoes the body; ?chunked / a `Close` header change how it answers."""
    peers: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        assert request.transport is not None
        peers.append(str(request.transport.get_extra_info("peername")))
        if body == b"chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b"one,", b"two,", b"three"):
                await response.write(part)
            await response.write_eof()
            return response
        if body == b"close":
            return web.Response(body=b"bye", headers={"Connection": "close"})
        return web.Response(body=b"echo:" + body, headers={"X-Amz-Crc32": "1"})

    app = web.Application()
    app.router.add_post("/", handle)
    runner, port = await serve(app)
    yield port, peers
    await runner.cleanup()


async def test_answers_and_keep_alive(echo):
    port, peers = echo
    origin = Origin("127.0.0.1", port, max_connections=4)
    try:
        for i in range(5):
            response = await origin.post(request(f"n{i}".encode()))
            assert (response.status, response.body) == (200, f"echo:n{i}".encode())
            assert response.headers["x-amz-crc32"] == "1"
        assert origin.opened == 1 and len(set(peers)) == 1  # one connection, reused
        got = await asyncio.gather(*(origin.post(request(b"x")) for _ in range(10)))
        assert {r.body for r in got} == {b"echo:x"}
        assert origin.opened <= 4  # the pool's bound
    finally:
        await origin.close()


async def test_chunked_answers_and_connection_close(echo):
    port, _ = echo
    origin = Origin("127.0.0.1", port)
    try:
        assert (await origin.post(request(b"chunked"))).body == b"one,two,three"
        assert (await origin.post(request(b"close"))).body == b"bye"
        assert (await origin.post(request(b"after"))).body == b"echo:after"
        assert origin.opened == 2  # the closed connection was not reused
    finally:
        await origin.close()


async def test_idle_connections_are_dropped_before_reuse(echo):
    port, _ = echo
    origin = Origin("127.0.0.1", port, idle_timeout=0.0)
    try:
        await origin.post(request(b"a"))
        await origin.post(request(b"b"))
        assert origin.opened == 2
    finally:
        await origin.close()


async def test_no_answer_in_time_fails_and_the_connection_is_not_reused():
    """A server that answers the first request of a connection never, the next ones at once."""
    connections: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        if len(connections) > 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    origin = Origin("127.0.0.1", server.sockets[0].getsockname()[1], read_timeout=0.05)
    try:
        with pytest.raises(HttpFailure, match="no answer in time"):
            await origin.post(request(b"{}"))
        assert (await origin.post(request(b"{}"))).body == b"ok"
        assert origin.opened == 2
    finally:
        await origin.close()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_refused_port_fails():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    origin = Origin("127.0.0.1", port)
    with pytest.raises(HttpFailure, match="cannot connect"):
        await origin.post(request())
    await origin.close()


async def test_a_server_closing_mid_answer_fails():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    origin = Origin("127.0.0.1", port)
    try:
        with pytest.raises(HttpFailure, match="closed"):
            await origin.post(request())
    finally:
        await origin.close()
        server.close()
        await server.wait_closed()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_with_certificate_verification(tmp_path):
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=b"secure:" + await request.read())

    app = web.Application()
    app.router.add_post("/", handle)
    runner, port = await serve(app, server_context)
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        origin = Origin("localhost", port, tls=trusted)
        try:
            response = await origin.post(request(b"hi", host=f"localhost:{port}"))
            assert response.body == b"secure:hi"
        finally:
            await origin.close()
        untrusted = Origin("localhost", port, tls=ssl.create_default_context())
        with pytest.raises(HttpFailure, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await untrusted.post(request(b"hi", host=f"localhost:{port}"))
        await untrusted.close()
    finally:
        await runner.cleanup()
