"""`websocket on;`: the WebSocket proxying boilerplate, expanded at merge time.

The line stands for what every nginx WebSocket guide has users write:

    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;

with the map's empty-Upgrade value chosen as nginx's docs advise: `''` (no
Connection header, so the upstream connection can be kept) when the proxied
`upstream` block has `keepalive`, `close` otherwise.

Precedence: an explicit `proxy_http_version` at the level of the `websocket`
directive or below wins over it; explicit `proxy_set_header Upgrade|Connection`
lines in the effective array win over the generated ones. The expansion does not
select the frame-aware tunnel (wstunnel.py): `websocket on` alone keeps nginx's
byte tunnel.
"""

from __future__ import annotations

from typing import Any

from wsgate.config import templates
from wsgate.config.build import Builder, Level
from wsgate.config.model import Header

__all__ = ["ConnectionUpgrade", "expand_websocket"]


class ConnectionUpgrade:
    """The `$connection_upgrade` map as a header value: "upgrade" when the client
    sent a non-empty Upgrade, else `otherwise` ("" sends no header)."""

    __slots__ = ("upgrade", "otherwise", "source", "is_static", "variables")

    def __init__(self, upgrade: Any, otherwise: str) -> None:
        self.upgrade = upgrade            # the compiled "$http_upgrade" template
        self.otherwise = otherwise
        self.source = "$connection_upgrade"
        self.is_static = False
        self.variables = ("http_upgrade",)

    def render(self, ctx: Any) -> str:
        return "upgrade" if self.upgrade.render(ctx) else self.otherwise


def expand_websocket(b: Builder, chain: list[Level], values: dict[str, Any]) -> None:
    """Rewrite a location's merged `values` in place when `websocket` is on."""
    if not values.get("websocket"):
        return
    depth = _depth_of(chain, "websocket")
    entry = chain[depth].values["websocket"]
    if not any("proxy_http_version" in level.values for level in chain[depth:]):
        values["proxy_http_version"] = "1.1"
    headers = tuple(values.get("proxy_set_header") or ())
    names = {h.name.lower() for h in headers}
    extra = []
    if "upgrade" not in names:
        extra.append(Header("Upgrade", _http_upgrade(b), file=entry.file, line=entry.line))
    if "connection" not in names:
        otherwise = "" if _keepalive_upstream(b, values.get("proxy_pass")) else "close"
        value = ConnectionUpgrade(_http_upgrade(b), otherwise)
        extra.append(Header("Connection", value, file=entry.file, line=entry.line))
    values["proxy_set_header"] = headers + tuple(extra)


def _depth_of(chain: list[Level], name: str) -> int:
    for depth in range(len(chain) - 1, -1, -1):
        if name in chain[depth].values:
            return depth
    return 0


def _http_upgrade(b: Builder) -> Any:
    return templates.compile("$http_upgrade", b.table)


def _keepalive_upstream(b: Builder, proxy_pass: Any) -> bool:
    if proxy_pass is None or proxy_pass.template is not None:
        return False
    name = proxy_pass.upstream or proxy_pass.host
    ups = b.upstreams.get(name) if name else None
    return ups is not None and bool(ups.values.get("keepalive", None)
                                    and ups.values["keepalive"].value)
