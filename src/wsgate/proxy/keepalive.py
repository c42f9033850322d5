"""Per-location keep-alive decisions (ngx_http_update_location_config): a request's
final location may end keep-alive by keepalive_timeout 0, keepalive_requests,
keepalive_time (the connection's age) or keepalive_disable (msie6 for POST,
safari), with the User-Agent classified as ngx_http_process_user_agent does.
"""

from __future__ import annotations

import time

from wsgate.proxy.context import ConnInfo, Exchange

__all__ = ["location_keeps_alive", "user_agent"]


def location_keeps_alive(ex: Exchange, conn: ConnInfo) -> bool:
    """ngx_http_update_location_config: the location may end keep-alive
    (keepalive_timeout 0, keepalive_requests, keepalive_time, keepalive_disable)."""
    loc = ex.location
    if loc.keepalive_timeout[0] <= 0 or conn.requests >= loc.keepalive_requests:
        return False
    if time.time() - conn.started > loc.keepalive_time:
        return False
    disabled = loc.keepalive_disable
    if "none" in disabled:
        return True
    # the User-Agent is looked at only when a setting needs it (the default,
    # msie6, only for POST)
    msie6 = "msie6" in disabled and ex.request.method == b"POST"
    if not (msie6 or "safari" in disabled):
        return True
    agent = user_agent(_header(ex, "user-agent") or "")
    if msie6 and agent[0]:
        return False
    return not ("safari" in disabled and agent[1])


def user_agent(ua: str) -> tuple[bool, bool]:
    """(msie6, safari) as ngx_http_process_user_agent classifies the agent."""
    msie6 = False
    at = ua.find("MSIE ")
    msie = at >= 0 and at + 7 < len(ua)
    if msie and ua[at + 6] == ".":
        digit = ua[at + 5]
        msie6 = digit in "45" or digit == "6" and "SV1" not in ua[at + 8:]
    if "Opera" in ua:
        return False, False
    safari = not msie and "Gecko/" not in ua and "Chrome/" not in ua \
        and "Safari/" in ua and "Mac OS X" in ua
    return msie6, safari


def _header(ex: Exchange, lname: str) -> str | None:
    return next((v for n, v in ex.vars.headers if n.lower() == lname), None)
