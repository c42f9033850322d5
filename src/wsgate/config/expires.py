"""The `expires` directive's value, as ngx_http_parse_expires reads it.

Shared by the config handler (static values, checked at load with nginx's messages)
and the response filter (values with variables, parsed per request). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wsgate.config.slots import parse_time

__all__ = ["Expires", "parse_expires", "ExpiresError"]

DAY = 24 * 60 * 60


class ExpiresError(ValueError):
    """nginx's message for a bad `expires` value."""


@dataclass(frozen=True, slots=True)
class Expires:
    """kind: off | epoch | max | access | modified | daily; `seconds` may be < 0.

    `template` set: the value has variables and is parsed per request
    (`modified` then says whether the directive had the "modified" word)."""

    kind: str
    seconds: float = 0.0
    template: Any = None
    modified: bool = False


def parse_expires(value: str, modified: bool = False) -> Expires:
    """One value (after an optional "modified" word); ExpiresError if invalid."""
    if value in ("epoch", "max", "off") and not modified:
        return Expires(value)
    kind = "modified" if modified else "access"
    minus = False
    if value.startswith("@"):
        if modified:
            raise ExpiresError("daily time cannot be used with \"modified\" parameter")
        kind, value = "daily", value[1:]
    elif value.startswith("-"):
        minus, value = True, value[1:]
    seconds = parse_time(value, is_sec=True)
    if seconds is None:
        raise ExpiresError("invalid value")
    if kind == "daily":
        if seconds > DAY:
            raise ExpiresError("daily time value must be less than 24 hours")
        return Expires(kind, seconds)
    return Expires(kind, -seconds if minus else seconds)


def parse_args(args: tuple[str, ...]) -> tuple[bool, str]:
    """(modified, value) of the directive's 1 or 2 words; ExpiresError if invalid."""
    if len(args) == 2:
        if args[0] != "modified":
            raise ExpiresError("invalid value")
        return True, args[1]
    return False, args[0]
