"""One view of a request body, whether it came as JSON, urlencoded or multipart form.

In forms a list is a repeated key (``run_keys=rf1&run_keys=rf2``); in JSON it is a list.  Both
give the same values here, and a value of the wrong type is a 400 naming the field.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, overload

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from qcdaemon.errors import BadRequest
from qcdaemon.log import add_secret
from qcdaemon.server.keys import FORM_CSRF

_FALSE = {"false", "0", "no", "off", ""}
_TRUE = {"true", "1", "yes", "on"}
_NULL = {"null", "none", ""}


class Body:
    def __init__(self, data: dict[str, Any] | MultiDictProxy[Any] | MultiDict[Any], *, form: bool) -> None:
        self._data = data
        self.form = form

    @classmethod
    async def read(cls, request: web.Request) -> Body:
        ctype = request.content_type
        if ctype == "application/json" or (ctype not in _FORM_TYPES and request.can_read_body and ctype != "multipart/form-data"):
            raw = await request.read()
            if not raw.strip():
                return cls({}, form=False)
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise BadRequest("the request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise BadRequest("the JSON body must be an object")
            _declare_secrets(data.items())
            return cls(data, form=False)
        if ctype in _FORM_TYPES:
            return cls(await read_form(request), form=True)
        return cls({}, form=False)

    def __contains__(self, name: str) -> bool:
        return name in self._data

    @overload
    def text(self, name: str, *, required: Literal[True]) -> str: ...

    @overload
    def text(self, name: str, *, required: bool = False) -> str | None: ...

    def text(self, name: str, *, required: bool = False) -> str | None:
        if name not in self._data:
            if required:
                raise BadRequest(f"{name}: this field is required")
            return None
        value = self._data.getall(name)[-1] if self.form else self._data[name]  # type: ignore[union-attr]
        if value is None and not required:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise BadRequest(f"{name}: expected a string")
        if required and not value.strip():
            raise BadRequest(f"{name}: this field is required")
        return _valid_text(name, value)

    def list(self, name: str, *, required: bool = False) -> list[Any] | None:
        if name not in self._data:
            if required:
                raise BadRequest(f"{name}: this field is required")
            return None
        if self.form:
            values: Any = [v for v in self._data.getall(name) if isinstance(v, str)]  # type: ignore[union-attr]
            if len(values) == 1 and values[0].startswith("["):
                try:
                    parsed = json.loads(values[0])
                    if isinstance(parsed, list):
                        values = parsed  # validated below like a JSON list
                except (ValueError, RecursionError):
                    pass
            values = [v for v in values if not (isinstance(v, str) and v == "")]
        else:
            values = self._data[name]
            if values is None:
                if required:
                    raise BadRequest(f"{name}: this field is required")
                return None
            if isinstance(values, (str, int)) and not isinstance(values, bool):
                values = [values]
        if not isinstance(values, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            raise BadRequest(f"{name}: expected a list of strings")
        return [_valid_text(name, v) if isinstance(v, str) else v for v in values]

    def json(self, name: str) -> Any:
        """A field as JSON (objects, lists, numbers, null); in a form, the text parsed as JSON.
        Absent: None."""
        if name not in self._data:
            return None
        if not self.form:
            return self._data[name]
        text = self._data.getall(name)[-1]  # type: ignore[union-attr]
        try:
            return json.loads(text) if isinstance(text, str) else None
        except (ValueError, RecursionError):
            raise BadRequest(f"{name}: expected JSON") from None

    def int_or_none(self, name: str) -> int | None:
        if name not in self._data:
            return None
        value = self._data.getall(name)[-1] if self.form else self._data[name]  # type: ignore[union-attr]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULL):
            return None
        if isinstance(value, bool):
            raise BadRequest(f"{name}: expected an integer or null")
        if isinstance(value, int):
            n = value
        elif isinstance(value, float) and value.is_integer():
            n = int(value)
        elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):
            n = int(value.strip())
        else:
            raise BadRequest(f"{name}: expected an integer or null, got {value!r}")
        if n < 0:
            raise BadRequest(f"{name}: must not be negative")
        return min(n, MAX_INT)

    def flag(self, name: str, default: bool = False) -> bool:
        if name not in self._data:
            return default
        value = self._data.getall(name)[-1] if self.form else self._data[name]  # type: ignore[union-attr]
        if isinstance(value, bool):
            return value
        if value is None:
            return default
        if isinstance(value, int):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise BadRequest(f"{name}: expected true or false")


_FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}

#: Integers from clients are capped here (larger counts mean "all"; the database needs int64).
MAX_INT = 2**62


def _valid_text(name: str, value: str) -> str:
    """A string that can be stored and compared: lone surrogates (from JSON escapes or undecodable
    form bytes) are refused, as the database cannot take them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{name}: not valid UTF-8 text") from None
    return value


_SECRET_FIELDS = ("password", "token", "secret", "csrf")


def _declare_secrets(items: Any) -> None:
    """Submitted passwords and tokens are never logged (see :func:`qcdaemon.log.add_secret`)."""
    add_secret(*(v for k, v in items if isinstance(k, str) and any(p in k.lower() for p in _SECRET_FIELDS)))


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """``request.post()``, with a body that cannot be parsed answered as a 400 (never a 500)."""
    try:
        form = await request.post()
    except web.HTTPException:
        raise
    except Exception as exc:  # aiohttp raises ValueError, LookupError, UnicodeDecodeError... on bad input
        raise BadRequest(f"the form body could not be read ({type(exc).__name__})") from None
    _declare_secrets(form.items())
    return form


async def read_body(request: web.Request) -> Body:
    """The request's body, with a form's ``csrfmiddlewaretoken`` kept for the CSRF check of
    :func:`qcdaemon.server.middleware.require_user` (every JSON route reads its body this way)."""
    body = await Body.read(request)
    request[FORM_CSRF] = body.text("csrfmiddlewaretoken") if body.form else None
    return body


def scope(body: Body) -> tuple[str, str]:
    """The ``project`` and ``pipeline`` every pipeline-scoped route requires."""
    return body.text("project", required=True), body.text("pipeline", required=True)
