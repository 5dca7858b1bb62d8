"""JSON responses: ``application/json; charset=utf-8``, datetimes as ISO strings, no NaN."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from aiohttp import web


def _default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def dumps(data: Any) -> str:
    try:
        return json.dumps(data, default=_default, allow_nan=False)
    except ValueError:
        return json.dumps(_clean(data), default=_default, allow_nan=False)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", charset="utf-8")


def json_bytes_response(body: bytes, status: int = 200) -> web.Response:
    """An answer the store already serialised (off the event loop)."""
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")
