"""Generic value parsers for directive arguments (nginx's ngx_conf_set_*_slot).

Each parser takes the directive's arguments (name excluded) and its name, and
returns the typed value or raises SlotError. A SlotError's text is either a whole
message (``plain``: nginx logged it itself) or the tail nginx appends to
``"name" directive`` (a slot that returned a string such as "invalid value").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SlotError", "flag", "size", "offset", "msec", "sec", "number", "string",
           "strings", "enum", "bitmask", "size_or_off", "parse_time", "parse_size",
           "Slot"]

Slot = Callable[[Sequence[str], str], Any]


class SlotError(Exception):
    """A bad value. `plain` means the text is the complete nginx message."""

    def __init__(self, text: str, plain: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.plain = plain

    def message(self, name: str) -> str:
        return self.text if self.plain else f'"{name}" directive {self.text}'


def flag(args: Sequence[str], name: str) -> bool:
    value = args[0].lower()
    if value in ("on", "off"):
        return value == "on"
    raise SlotError(f'invalid value "{args[0]}" in "{name}" directive, '
                    'it must be "on" or "off"', plain=True)


def parse_size(text: str, *, giga: bool = False) -> int | None:
    """ngx_parse_size (k, m) / ngx_parse_offset (k, m, g); None when invalid."""
    units = {"k": 1 << 10, "m": 1 << 20}
    if giga:
        units["g"] = 1 << 30
    scale = 1
    if text and text[-1].lower() in units:
        scale, text = units[text[-1].lower()], text[:-1]
    if not text.isdigit() or not text.isascii():
        return None
    return int(text) * scale


def size(args: Sequence[str], name: str) -> int:
    value = parse_size(args[0])
    if value is None:
        raise SlotError("invalid value")
    return value


def offset(args: Sequence[str], name: str) -> int:
    value = parse_size(args[0], giga=True)
    if value is None:
        raise SlotError("invalid value")
    return value


_TIME_UNITS = [("y", 365 * 86400.0), ("M", 30 * 86400.0), ("w", 7 * 86400.0),
               ("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001)]
_TIME = re.compile(r"(\d+)(ms|[yMwdhms]?)")


def parse_time(text: str, *, is_sec: bool) -> float | None:
    """ngx_parse_time: "1h30m", "500ms", "60" -> seconds; units in order, once each."""
    order = [u for u, _ in _TIME_UNITS]
    scale = dict(_TIME_UNITS)
    pos, last, total = 0, -1, 0.0
    if not text:
        return None
    while pos < len(text):
        m = _TIME.match(text, pos)
        if not m:
            return None
        unit = m.group(2) or "s"
        step = order.index(unit)
        if step <= last or (unit == "ms" and is_sec):
            return None
        if not m.group(2) and m.end() != len(text):
            return None
        total += int(m.group(1)) * scale[unit]
        last, pos = step, m.end()
    return total


def msec(args: Sequence[str], name: str) -> float:
    value = parse_time(args[0], is_sec=False)
    if value is None:
        raise SlotError("invalid value")
    return value


def sec(args: Sequence[str], name: str) -> float:
    value = parse_time(args[0], is_sec=True)
    if value is None:
        raise SlotError("invalid value")
    return value


def number(args: Sequence[str], name: str) -> int:
    if not args[0].isdigit() or not args[0].isascii():
        raise SlotError("invalid number")
    return int(args[0])


def string(args: Sequence[str], name: str) -> str:
    return args[0]


def strings(args: Sequence[str], name: str) -> tuple[str, ...]:
    return tuple(args)


def enum(*values: str) -> Slot:
    def parse(args: Sequence[str], name: str) -> str:
        for v in values:
            if v.lower() == args[0].lower():
                return v
        raise SlotError(f'invalid value "{args[0]}"', plain=True)
    return parse


def bitmask(*values: str) -> Slot:
    """Tokens from a fixed set (proxy_next_upstream ...) -> frozenset of tokens."""
    def parse(args: Sequence[str], name: str) -> frozenset[str]:
        out: set[str] = set()
        for arg in args:
            match = [v for v in values if v.lower() == arg.lower()]
            if not match:
                raise SlotError(f'invalid value "{arg}"', plain=True)
            out.add(match[0])
        return frozenset(out)
    return parse


def size_or_off(args: Sequence[str], name: str) -> int | None:
    if args[0] == "off":
        return None
    return size(args, name)


def number_or_auto(args: Sequence[str], name: str) -> int | str:
    if args[0] == "auto":
        return "auto"
    return number(args, name)
