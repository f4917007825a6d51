"""The ceiling of the stack: a bare aiohttp app on the same event loop (uvloop) as the runtime,
serving the same two command routes. It reads the body, parses it with orjson, checks it is an
object, and answers a fixed JSON body: HTTP parsing + JSON, and nothing of thread-weaver.

    python -m bench.bare_server --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from aiohttp import web

CREATED = orjson.dumps({"thread_id": "01H8XGJWBWBAQ4Z4G2V6K8M3PJ", "error_messages": []})
ADDED = orjson.dumps({"messageIds": ["01H8XGJWBWBAQ4Z4G2V6K8M3PJ"], "error_messages": []})


def _handler(answer: bytes):
    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if type(body) is not dict:
            raise web.HTTPBadRequest()
        return web.Response(body=answer, content_type="application/json")

    return handle


async def live(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/threads/create", _handler(CREATED))
    app.router.add_post("/v1/threads/{thread_id}/messages/add", _handler(ADDED))
    app.router.add_get("/live", live)
    return app


async def serve(host: str, port: int) -> None:
    import signal

    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    if args.host != "127.0.0.1":
        raise SystemExit("the bare baseline listens on 127.0.0.1 only")
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
