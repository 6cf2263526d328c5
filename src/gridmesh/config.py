"""User input -> validated models, with errors a user can act on.

Scenario files, node configuration and planner inputs are all TOML validated
by pydantic models. This module turns every failure along the way (an
unreadable file, bad TOML, a value pydantic refuses) into one ``ConfigError``
naming the source, the field and what is expected, which the CLI prints as
one paragraph before exiting with status 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gridmesh.errors import ConfigError

__all__ = ["config_error", "load_toml", "parse_toml", "validate_model"]

_Model = TypeVar("_Model", bound=BaseModel)

# A field's unit, from the suffix of its name, for messages like "at most 64 (bytes)".
_UNITS = (
    ("_mbps", " (Mbps)"),
    ("_bytes", " (bytes)"),
    ("_km2", " (km2)"),
    ("_m", " (m)"),
    ("_s", " (seconds)"),
)


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; raises ``ConfigError`` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "(file)", "a readable TOML file", got=exc.strerror) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "(file)", "UTF-8 text") from None
    return parse_toml(text, source=str(path))


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", f"valid TOML ({exc})") from None


def validate_model(model: type[_Model], raw: object, *, source: str, docs: str) -> _Model:
    """``model`` validated from ``raw``; ``docs`` is where a user finds the fields."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise config_error(source, exc, docs=docs) from None


def config_error(
    source: str,
    exc: ValidationError,
    *,
    docs: str,
    field: str | None = None,
    got: object = None,
    unit: str | None = None,
) -> ConfigError:
    """The first problem pydantic found, as one ``ConfigError`` a user can act on.

    ``field`` names a command-line flag the value came from; ``unit`` overrides
    the unit guessed from the field name.
    """
    first = exc.errors(include_url=False)[0]
    location = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    ).lstrip(".")
    if unit is None:
        last = str(first["loc"][-1]) if first["loc"] else ""
        unit = next((text for suffix, text in _UNITS if last.endswith(suffix)), "")
    context = {key: _plain(value) for key, value in first.get("ctx", {}).items()}
    expected = {
        "greater_than": f"a number greater than {context.get('gt')}{unit}",
        "greater_than_equal": f"a number of at least {context.get('ge')}{unit}",
        "less_than": f"a number less than {context.get('lt')}{unit}",
        "less_than_equal": f"a number of at most {context.get('le')}{unit}",
        "extra_forbidden": f"no such field (check the spelling; see {docs})",
        "missing": "a value (this field is required)",
    }.get(first["type"], first["msg"].removeprefix("Value error, "))
    more = exc.error_count() - 1
    if more:
        expected += f" (and {more} more problem{'s' if more > 1 else ''})"
    if got is None and first["type"] not in {"missing", "model_type"}:
        got = first.get("input")
        if isinstance(got, dict | list):
            got = None
    name = location or "(top level)"
    if field is not None:
        name = f"{field} {location}" if location else field
    return ConfigError(source, name, expected, got=got)


def _plain(limit: object) -> object:
    """A limit as a user would write it: 0.0 -> 0, 10000000 -> 10,000,000."""
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)
    return f"{limit:,}" if isinstance(limit, int) else limit
