"""CORS for any origin, as upstream's akka-http-cors `cors()` wrapper (without credentials: with
`--auth jwt` they are bearer tokens, not cookies). Preflight `OPTIONS` on any served path answers
204; other responses to a request with an `Origin` get `Access-Control-Allow-Origin: *`."""

from __future__ import annotations

from aiohttp import web

MAX_AGE = "1800"  # akka-http-cors' default max-age, seconds
ALLOW_ORIGIN = "Access-Control-Allow-Origin"
EXPOSE = "Retry-After, WWW-Authenticate"


def _preflight(request: web.Request, allowed: set[str]) -> web.Response:
    methods = ", ".join(sorted(allowed | {"OPTIONS"}))
    headers = {
        "Allow": methods,
        ALLOW_ORIGIN: "*",
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers")
        or "Content-Type",
        "Access-Control-Max-Age": MAX_AGE,
    }
    return web.Response(status=204, headers=headers)


def preflight(request: web.Request) -> web.Response | None:
    """The answer to a CORS preflight (`OPTIONS` on a path served with other methods)."""
    if request.method == "OPTIONS":
        exc = request.match_info.http_exception
        if isinstance(exc, web.HTTPMethodNotAllowed):
            return _preflight(request, set(exc.allowed_methods))
    return None


def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    if "Origin" in request.headers:
        response.headers[ALLOW_ORIGIN] = "*"
        response.headers["Access-Control-Expose-Headers"] = EXPOSE
