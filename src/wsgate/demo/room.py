"""The demo's chat room: who is connected, what each message becomes, the counters
behind `/api/stats`, and the session events the live view prints.

No I/O here: a member is given as two send callables (text, binary) that return False
when a message was dropped, and time comes from injectable clocks, so the rules can be
read in one place:

- text "ping" is answered "pong" to its sender only (the page measures latency with it);
- any other text is broadcast to every member, sender included, as JSON
  `{"type": "chat", "from": id, "text": ..., "ts": epoch_ms, "seq": n}`;
- binary is echoed, unchanged, to its sender only;
- joining and leaving are announced to the others as "join"/"leave" JSON, and the
  newcomer gets a "welcome" with its own id.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["Room", "Member", "SessionOpened", "SessionClosed", "RoomEvent"]

SendText = Callable[[str], bool]
SendBinary = Callable[[bytes], bool]


@dataclass
class Member:
    """One WebSocket session in the room; counts are messages each way."""

    id: str
    addr: str
    send_text: SendText
    send_binary: SendBinary
    opened: float                      # monotonic
    messages_in: int = 0               # client -> server
    messages_out: int = 0              # server -> client


@dataclass(frozen=True)
class SessionOpened:
    id: str
    addr: str
    clients: int


@dataclass(frozen=True)
class SessionClosed:
    id: str
    addr: str
    duration: float
    messages_in: int
    messages_out: int
    close_code: int | None
    closed_by: str | None
    clients: int


RoomEvent = Union[SessionOpened, SessionClosed]


@dataclass
class Counters:
    sessions_total: int = 0
    messages_in: int = 0
    messages_out: int = 0
    http_requests: int = 0


@dataclass
class Room:
    """The one chat room of the demo backend."""

    on_event: Callable[[RoomEvent], None] | None = None
    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic
    members: dict[str, Member] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._started = self.mono()

    # -- membership -----------------------------------------------------------------------

    def join(self, addr: str, send_text: SendText, send_binary: SendBinary) -> Member:
        member = Member(f"c{next(self._ids)}", addr, send_text, send_binary, self.mono())
        self.members[member.id] = member
        self.counters.sessions_total += 1
        self._send(member, {"type": "welcome", "id": member.id, "clients": len(self.members)})
        self._announce(member, "join")
        self._emit(SessionOpened(member.id, addr, len(self.members)))
        return member

    def leave(self, member: Member, close_code: int | None, closed_by: str | None) -> None:
        if self.members.pop(member.id, None) is None:
            return
        self._announce(member, "leave")
        self._emit(SessionClosed(member.id, member.addr, self.mono() - member.opened,
                                 member.messages_in, member.messages_out, close_code,
                                 closed_by, len(self.members)))

    # -- messages -------------------------------------------------------------------------

    def receive(self, member: Member, message: str | bytes) -> None:
        member.messages_in += 1
        self.counters.messages_in += 1
        if isinstance(message, bytes):
            self._count(member, member.send_binary(message))
        elif message == "ping":
            self._count(member, member.send_text("pong"))
        else:
            self._broadcast({"type": "chat", "from": member.id, "text": message,
                             "ts": self._now_ms(), "seq": next(self._seq)})

    def stats(self) -> dict[str, Any]:
        """What `/api/stats` returns."""
        c = self.counters
        return {"uptime_s": round(self.mono() - self._started, 3), "clients": len(self.members),
                "sessions_total": c.sessions_total, "messages_in": c.messages_in,
                "messages_out": c.messages_out, "http_requests": c.http_requests}

    # -- helpers --------------------------------------------------------------------------

    def _announce(self, member: Member, kind: str) -> None:
        body = {"type": kind, "id": member.id, "clients": len(self.members), "ts": self._now_ms()}
        self._broadcast(body, skip=member)

    def _broadcast(self, body: dict[str, Any], skip: Member | None = None) -> None:
        text = json.dumps(body, separators=(",", ":"))
        for other in list(self.members.values()):
            if other is not skip:
                self._count(other, other.send_text(text))

    def _send(self, member: Member, body: dict[str, Any]) -> None:
        self._count(member, member.send_text(json.dumps(body, separators=(",", ":"))))

    def _count(self, member: Member, sent: bool) -> None:
        if sent:
            member.messages_out += 1
            self.counters.messages_out += 1

    def _emit(self, event: RoomEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _now_ms(self) -> int:
        return int(self.wall() * 1000)
