"""The counters every worker adds to and any worker sums: nginx's shared-memory stats.

nginx keeps `ngx_stat_accepted` & co. as atomics in one shared zone, so any
worker's stub_status shows the whole server. wsgate's equivalent is one `Region`:
an anonymous MAP_SHARED mapping that the master creates before it forks, cut into
fixed-size slots, one per worker. A worker writes only its own slot (plain int64 and
float64 stores, single writer, so no locks); a reader sums every slot. A reader may
see a sum that is a few operations stale, as nginx's readers may.

Slot layout (native byte order, 8-byte aligned):

    header  16 x int64   accepted handled requests reading writing waiting
                         rows dropped pid (the rest reserved)
    rows    ROWS x 256 bytes, each:
              int64    flags (1 = gauge: zeroed when the slot changes hands)
              float64  value
              240 B    key: u16 length + utf-8 "family\\x1flabel\\x1flabel..."

A labelled series (`wsgate_tunnels_active{server,upstream}`) is one row per slot;
the reader adds rows with equal keys across slots. A row is appended by writing its
key and value first and bumping `rows` last, so a reader never sees a half-made row
(x86 stores are ordered; CPython does each store as one machine write). A key that
does not fit, or a slot whose rows are all used, counts in `dropped` instead.

Slots change hands, never disappear: a worker that died is replaced in its slot
(the master calls `reset_gauges` first: the dead worker's connections are gone, its
cumulative counters stay, as nginx's stay). `master_process off` and the library
API use `Region.private()`: the same code over a one-slot bytearray.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Iterator

__all__ = ["Region", "Slot", "FIELDS", "GAUGE_FIELDS", "ROWS", "KEY_MAX", "SEP"]

#: Header fields, by index into `Slot.ints`.
ACCEPTED, HANDLED, REQUESTS, READING, WRITING, WAITING, NROWS, DROPPED, PID = range(9)
FIELDS = ("accepted", "handled", "requests", "reading", "writing", "waiting")
GAUGE_FIELDS = (READING, WRITING, WAITING)

_HEADER_INTS = 16
_HEADER = _HEADER_INTS * 8
_ROW = 256
_ROW_WORDS = _ROW // 8
_KEY_OFFSET = 16
KEY_MAX = _ROW - _KEY_OFFSET - 2     # utf-8 bytes a key may have
ROWS = 1024                          # labelled series per worker
SEP = "\x1f"                         # between the family and the label values
_LEN = struct.Struct("=H")


def slot_size(rows: int) -> int:
    return _HEADER + rows * _ROW


class Region:
    """`slots` fixed-size slots over one buffer (shared mmap or private bytearray)."""

    def __init__(self, slots: int, rows: int = ROWS, *, shared: bool = False) -> None:
        self.slots = slots
        self.rows = rows
        size = slots * slot_size(rows)
        # mmap(-1, n) is MAP_SHARED|MAP_ANONYMOUS: forked children see our writes.
        self._buf: mmap.mmap | bytearray = mmap.mmap(-1, size) if shared \
            else bytearray(size)
        self.shared = shared
        self._view = memoryview(self._buf)
        self._ints = [self._header(i) for i in range(slots)]

    @classmethod
    def private(cls, rows: int = ROWS) -> Region:
        """One slot in this process's own memory."""
        return cls(1, rows)

    def _header(self, index: int) -> memoryview:
        base = index * slot_size(self.rows)
        return self._view[base:base + _HEADER].cast("q")

    def slot(self, index: int) -> Slot:
        """The writer's handle on slot `index` (0 <= index < slots)."""
        if not 0 <= index < self.slots:
            raise IndexError(f"slot {index} outside 0..{self.slots - 1}")
        return Slot(self, index)

    # -- the master's side ----------------------------------------------------------

    def reset_gauges(self, index: int) -> None:
        """The slot's writer is gone: what it held open is closed now; cumulative
        counters (accepted, tunnels opened, bytes ...) are kept."""
        ints = self._ints[index]
        for field in GAUGE_FIELDS:
            ints[field] = 0
        meta, values = self._rows(index)
        for row in range(min(ints[NROWS], self.rows)):
            if meta[row * _ROW_WORDS] & 1:
                values[row * _ROW_WORDS + 1] = 0.0

    # -- the readers' side ----------------------------------------------------------

    def conn_totals(self) -> tuple[int, ...]:
        """(accepted, handled, requests, reading, writing, waiting) over all slots."""
        sums = [0] * len(FIELDS)
        for ints in self._ints:
            for field in range(len(FIELDS)):
                sums[field] += ints[field]
        return tuple(sums)

    def dropped(self) -> int:
        return sum(ints[DROPPED] for ints in self._ints)

    def series(self) -> dict[str, float]:
        """Every labelled row, key -> value summed over all slots."""
        out: dict[str, float] = {}
        for index in range(self.slots):
            for key, _gauge, value in self._iter_rows(index):
                out[key] = out.get(key, 0.0) + value
        return out

    def _rows(self, index: int) -> tuple[memoryview[int], memoryview[float]]:
        base = index * slot_size(self.rows) + _HEADER
        area = self._view[base:base + self.rows * _ROW]
        return area.cast("q"), area.cast("d")

    def _iter_rows(self, index: int) -> Iterator[tuple[str, bool, float]]:
        count = min(self._ints[index][NROWS], self.rows)
        if count <= 0:
            return
        meta, values = self._rows(index)
        base = index * slot_size(self.rows) + _HEADER
        for row in range(count):
            start = base + row * _ROW + _KEY_OFFSET
            (length,) = _LEN.unpack_from(self._view, start)
            key = bytes(self._view[start + 2:start + 2 + length]).decode("utf-8", "replace")
            yield key, bool(meta[row * _ROW_WORDS] & 1), values[row * _ROW_WORDS + 1]


class Slot:
    """One worker's slot: its header counters and its labelled rows."""

    def __init__(self, region: Region, index: int) -> None:
        self.region = region
        self.index = index
        self.ints = region._ints[index]          # hot path: ints[READING] += 1
        self._meta, self._values = region._rows(index)
        self._base = index * slot_size(region.rows) + _HEADER
        # A slot taken over from a dead worker already has rows: find them again.
        self._index = {key: row for row, (key, _g, _v)
                       in enumerate(region._iter_rows(index))}

    def claim(self) -> None:
        """Mark the slot as this process's (the pid is for debugging only)."""
        self.ints[PID] = os.getpid()

    def add(self, key: str, delta: float, gauge: bool = False) -> None:
        """Add `delta` to the row named `key`, appending the row the first time."""
        row = self._index.get(key)
        if row is None:
            row = self._append(key, gauge)
            if row is None:
                return
        self._values[row * _ROW_WORDS + 1] += delta

    def _append(self, key: str, gauge: bool) -> int | None:
        raw = key.encode("utf-8")
        row = self.ints[NROWS]
        if len(raw) > KEY_MAX or row >= self.region.rows:
            self.ints[DROPPED] += 1
            return None
        start = self._base + row * _ROW
        view = self.region._view
        _LEN.pack_into(view, start + _KEY_OFFSET, len(raw))
        view[start + _KEY_OFFSET + 2:start + _KEY_OFFSET + 2 + len(raw)] = raw
        self._meta[row * _ROW_WORDS] = 1 if gauge else 0
        self._values[row * _ROW_WORDS + 1] = 0.0
        self.ints[NROWS] = row + 1               # last: the row is complete now
        self._index[key] = row
        return row
