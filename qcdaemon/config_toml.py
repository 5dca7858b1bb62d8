"""Building the configuration's frozen dataclasses from TOML tables: each key checked against its
field's type (lists become tuples), unknown and missing keys named with their dotted path."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from qcdaemon.errors import ConfigError

__all__ = ["build", "coerce", "tables"]


def coerce(key: str, value: Any, ftype: Any) -> Any:
    """Check one value against the dataclass field type, converting lists to tuples."""
    t = ftype if isinstance(ftype, str) else getattr(ftype, "__name__", str(ftype))
    if t.startswith("tuple[str"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if t == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return value
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if t == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported value {value!r}")  # pragma: no cover


def build(cls: type, table: Any, prefix: str, subtables: Mapping[tuple[type, str], type] | None = None) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}"
        f = fields.get(key)
        if f is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{name}: unknown key (known keys: {known})")
        sub = (subtables or {}).get((cls, key))
        kwargs[key] = build(sub, value, name, subtables) if sub else coerce(name, value, f.type)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}.{missing[0]}: required key missing")
    return cls(**kwargs)


def tables(value: Any, key: str) -> list[Any]:
    """The tables of an ``[[key]]`` array (one ``[key]`` table counts as one)."""
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected [[{key}]] tables")
    return value
