"""JSON on the wire (orjson both ways): responses, and reading a request's JSON object body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import hdrs, web

from .errors import ApiError

JSON = "application/json"
_ACCEPTED_CHARSETS = frozenset({"utf-8", "utf8"})
_content_type_cache: dict[str, bool] = {JSON: True}


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type=JSON)


def is_json_content_type(value: str) -> bool:
    """`application/json`, optionally with a UTF-8 charset (any case, quoted or not)."""
    known = _content_type_cache.get(value)
    if known is not None:
        return known
    mime, _, params = value.partition(";")
    ok = mime.strip().lower() == JSON
    if ok and params:
        for param in params.split(";"):
            name, _, val = param.partition("=")
            if name.strip().lower() == "charset":
                ok = ok and val.strip().strip('"').lower() in _ACCEPTED_CHARSETS
    if len(_content_type_cache) < 64:  # a handful of spellings: bound the cache
        _content_type_cache[value] = ok
    return ok


async def read_json_object(request: web.Request, max_body_bytes: int) -> dict[str, Any]:
    """The request's body as a JSON object, or ApiError 415/413/400.

    A missing Content-Type is taken as application/json (the body must then parse as JSON).
    The size limit is checked on Content-Length first; chunked bodies are cut off by aiohttp's
    `client_max_size` (set to the same limit), which raises HTTPRequestEntityTooLarge.
    """
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if content_type is not None and not is_json_content_type(content_type):
        raise ApiError(415, [f"Content-Type must be {JSON} (got {content_type[:100]!r})"])
    length = request.content_length
    if length is not None and length > max_body_bytes:
        raise ApiError(413, [body_too_large(max_body_bytes)])
    raw = await request.read()
    if not raw:
        raise ApiError(400, ["The request body is empty: a JSON object is expected."])
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, [f"The request content was malformed: {exc}"]) from None
    if type(body) is not dict:
        raise ApiError(400, ["The request body must be a JSON object."])
    return body


def body_too_large(max_body_bytes: int) -> str:
    return f"The request content was too large: at most {max_body_bytes} bytes are allowed."
