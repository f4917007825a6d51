"""The HTTP API (aiohttp): upstream thread-weaver's /v1 routes, probes, metrics, OpenAPI, and in a
cluster the members' internal API.

    app = create_app(commands=gateway, queries=read_model, readiness=checks,
                     settings=HttpSettings(), middlewares=[auth_middleware(verifier)])
    add_internal_api(app, member, peer_token)  # cluster mode only

Modules: `settings.py` (HttpSettings, AuthSettings) and `routes.py` (the route table) are leaves
that the others import; `app.py` builds the app, `internal.py` the internal API's sub-app;
`errors.py` maps failures to status codes; docs/api.md describes the wire format.
"""

from .app import HTTP_SETTINGS, OPENAPI_DOCUMENT, create_app
from .errors import ApiError
from .internal import add_internal_api, internal_server_app
from .routes import INTERNAL_ROUTES, ROUTES, Route
from .settings import AuthSettings, HttpSettings

__all__ = [
    "HTTP_SETTINGS",
    "INTERNAL_ROUTES",
    "OPENAPI_DOCUMENT",
    "ROUTES",
    "ApiError",
    "AuthSettings",
    "HttpSettings",
    "Route",
    "add_internal_api",
    "create_app",
    "internal_server_app",
]
