"""Generic value parsers for directive arguments (nginx's ngx_conf_set_*_slot).

Each parser takes the directive's arguments (name excluded) and its name, and
returns the typed value or raises SlotError. A SlotError's text is either a whole
message (``plain``: nginx logged it itself) or the tail nginx appends to
``"name" directive`` (a slot that returned a string such as "invalid value").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["SlotError", "flag", "size", "offset", "msec", "sec", "number", "string",
           "strings", "enum", "bitmask", "size_or_off", "parse_time", "parse_size",
           "Slot"]

Slot = Callable[[Sequence[str], str], Any]
_T = TypeVar("_T")


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


def _valid(value: _T | None) -> _T:
    """A parse_* result, or the slot's "invalid value" when it did not parse."""
    if value is None:
        raise SlotError("invalid value")
    return value


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
    return _valid(parse_size(args[0]))


def offset(args: Sequence[str], name: str) -> int:
    return _valid(parse_size(args[0], giga=True))


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
    return _valid(parse_time(args[0], is_sec=False))


def sec(args: Sequence[str], name: str) -> float:
    return _valid(parse_time(args[0], is_sec=True))


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


def bufs(args: Sequence[str], name: str) -> tuple[int, int]:
    """ngx_conf_set_bufs_slot: `NUMBER SIZE`, both non-zero ("invalid value")."""
    num, buf = args[0], parse_size(args[1])
    if not num.isdigit() or not num.isascii() or int(num) == 0 or not buf:
        raise SlotError("invalid value")
    return int(num), buf


def number_between(low: int, high: int) -> Slot:
    """A number slot with ngx_conf_check_num_bounds' post check."""
    def parse(args: Sequence[str], name: str) -> int:
        value = number(args, name)
        if not low <= value <= high:
            raise SlotError(f"value must be between {low} and {high}", plain=True)
        return value
    return parse


def size_at_least(low: int, message: str) -> Slot:
    """A size slot with a lower bound (the pool-size post handlers)."""
    def parse(args: Sequence[str], name: str) -> int:
        value = size(args, name)
        if value < low:
            raise SlotError(message, plain=True)
        return value
    return parse


def path(args: Sequence[str], name: str) -> tuple[str, ...]:
    """ngx_conf_set_path_slot: a directory and up to three hash levels (1 or 2)."""
    for level in args[1:]:
        if not level.isdigit() or not 1 <= int(level) <= 2:
            raise SlotError("invalid value")
    return tuple(args)


def off_or(inner: Slot) -> Slot:
    """`off`, or whatever `inner` accepts (directio, proxy_max_temp_file_size ...)."""
    def parse(args: Sequence[str], name: str) -> Any:
        return None if args[0] == "off" else inner(args, name)
    return parse


def aio(args: Sequence[str], name: str) -> str:
    """ngx_http_core_set_aio: on | off | threads[=pool] (only the default pool exists)."""
    value = args[0]
    if value == "on":   # Debian's nginx is built without file AIO
        raise SlotError('"aio on" is unsupported on this platform', plain=True)
    if value in ("off", "threads", "threads=default"):
        return value
    if value.startswith("threads="):
        raise SlotError(f'unknown thread pool "{value[8:]}"', plain=True)
    raise SlotError("invalid value")


def disable_symlinks(args: Sequence[str], name: str) -> tuple[str, ...]:
    """ngx_http_disable_symlinks: off | on | if_not_owner, then `from=PART`."""
    if args[0] not in ("off", "on", "if_not_owner"):
        raise SlotError(f'invalid parameter "{args[0]}"', plain=True)
    for arg in args[1:]:
        if not arg.startswith("from="):
            raise SlotError(f'invalid parameter "{arg}"', plain=True)
        if args[0] == "off":
            raise SlotError('"from=" cannot be used with "off" parameter', plain=True)
    return tuple(args)


def open_file_cache(args: Sequence[str], name: str) -> tuple[str, ...]:
    """ngx_http_core_open_file_cache: off | max=N [inactive=time]."""
    if len(args) == 1 and args[0] == "off":
        return ("off",)
    has_max = False
    for arg in args:
        key, eq, val = arg.partition("=")
        ok = (key == "max" and val.isdigit() and int(val) > 0) or (
            key == "inactive" and parse_time(val, is_sec=True) is not None)
        if not eq or not ok:
            raise SlotError(f'invalid "{name}" parameter "{arg}"', plain=True)
        has_max = has_max or key == "max"
    if not has_max:
        raise SlotError(f'"{name}" must have the "max" parameter', plain=True)
    return tuple(args)


def signed_number(args: Sequence[str], name: str) -> int:
    """worker_priority: an optional minus sign, then digits ("invalid number")."""
    text = args[0][1:] if args[0].startswith("-") else args[0]
    if not text.isdigit() or not text.isascii():
        raise SlotError("invalid number")
    return int(args[0])


def quoted_number(args: Sequence[str], name: str) -> int:
    """worker_connections' handler: `invalid number "x"` (it names the value)."""
    if not args[0].isdigit() or not args[0].isascii():
        raise SlotError(f'invalid number "{args[0]}"', plain=True)
    return int(args[0])


def worker_processes(args: Sequence[str], name: str) -> int | str:
    """ngx_set_worker_processes: `auto` or a number, else "invalid value"."""
    if args[0] == "auto":
        return "auto"
    if not args[0].isdigit() or not args[0].isascii():
        raise SlotError("invalid value")
    return int(args[0])


def cpu_affinity(args: Sequence[str], name: str) -> tuple[str, ...]:
    """ngx_set_cpu_affinity: [auto] then masks of 0 and 1 only."""
    for mask in args[1:] if args[0] == "auto" else args:
        bad = [c for c in mask if c not in "01"]
        if bad:
            raise SlotError(f'invalid character "{bad[0]}" in "{name}"', plain=True)
    return tuple(args)


def thread_pool(args: Sequence[str], name: str) -> tuple[str, ...]:
    """ngx_thread_pool: NAME threads=N [max_queue=N]."""
    threads = False
    for arg in args[1:]:
        key, eq, val = arg.partition("=")
        if eq and key in ("threads", "max_queue") and val.isdigit():
            threads = threads or key == "threads"
            continue
        raise SlotError(f'invalid parameter "{arg}"', plain=True)
    if not threads:
        raise SlotError(f'"{name}" must have "threads" parameter', plain=True)
    return tuple(args)
