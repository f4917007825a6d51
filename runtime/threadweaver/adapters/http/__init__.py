"""The HTTP API (aiohttp): upstream thread-weaver's /v1 routes, probes, metrics, OpenAPI.

    app = create_app(commands=gateway, queries=read_model, readiness=checks,
                     settings=HttpSettings(), middlewares=[forwarding])

See `app.py` for the route table and middleware order, `errors.py` for status codes, and
docs/api.md for the wire format.
"""

from .app import HTTP_SETTINGS, OPENAPI_DOCUMENT, ROUTES, HttpSettings, Route, create_app
from .errors import ApiError

__all__ = [
    "HTTP_SETTINGS",
    "OPENAPI_DOCUMENT",
    "ROUTES",
    "ApiError",
    "HttpSettings",
    "Route",
    "create_app",
]
