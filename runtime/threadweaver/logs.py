"""Logging set-up: text for people, JSON lines for log collectors (the image's default).

With tracing on (`--otel-endpoint`), a JSON line written while a span is current carries its
`trace_id` and `span_id` (application/tracing.py), so that a log line leads to its trace."""

from __future__ import annotations

import logging
import sys

import orjson

from .application import tracing


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ids = tracing.tracer().current_ids()
        if ids is not None:
            data["trace_id"], data["span_id"] = ids
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiobotocore", "botocore", "aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
