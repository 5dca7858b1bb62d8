"""One view of a request body, whether it came as JSON, urlencoded or multipart form.

In forms a list is a repeated key (``run_keys=rf1&run_keys=rf2``); in JSON it is a list.  Both
give the same values here, and a value of the wrong type is a 400 naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from ..errors import BadRequest

_FALSE = {"false", "0", "no", "off", ""}
_TRUE = {"true", "1", "yes", "on"}
_NULL = {"null", "none", ""}


class Body:
    def __init__(self, data: dict[str, Any] | MultiDictProxy[Any] | MultiDict[Any], *, form: bool) -> None:
        self._data = data
        self.form = form

    @classmethod
    async def read(cls, request: web.Request) -> "Body":
        ctype = request.content_type
        if ctype == "application/json" or (ctype not in _FORM_TYPES and request.can_read_body and ctype != "multipart/form-data"):
            raw = await request.read()
            if not raw.strip():
                return cls({}, form=False)
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise BadRequest("the request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise BadRequest("the JSON body must be an object")
            return cls(data, form=False)
        if ctype in _FORM_TYPES:
            return cls(await request.post(), form=True)
        return cls({}, form=False)

    def __contains__(self, name: str) -> bool:
        return name in self._data

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
        return value

    def list(self, name: str, *, required: bool = False) -> list[Any] | None:
        if name not in self._data:
            if required:
                raise BadRequest(f"{name}: this field is required")
            return None
        if self.form:
            values = [v for v in self._data.getall(name) if isinstance(v, str)]  # type: ignore[union-attr]
            if len(values) == 1 and values[0].startswith("["):
                try:
                    parsed = json.loads(values[0])
                    if isinstance(parsed, list):
                        values = parsed
                except ValueError:
                    pass
            return [v for v in values if not (isinstance(v, str) and v == "")]
        value = self._data[name]
        if value is None:
            if required:
                raise BadRequest(f"{name}: this field is required")
            return None
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise BadRequest(f"{name}: expected a list of strings")
        return value

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
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            n = int(value.strip())
        else:
            raise BadRequest(f"{name}: expected an integer or null, got {value!r}")
        if n < 0:
            raise BadRequest(f"{name}: must not be negative")
        return n

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
