"""User-Agent classification for keepalive_disable (proxy/keepalive.py)."""

from __future__ import annotations

import pytest

from wsgate.proxy.keepalive import user_agent


@pytest.mark.parametrize("ua, msie6, safari", [
    ("MSIE 5.0", True, False),
    ("Mozilla/4.0 (compatible; MSIE 4.01; Windows 98)", True, False),
    ("MSIE 6.0; Windows NT 5.1", True, False),
    ("MSIE 6.0; Windows NT 5.1; SV1", False, False),
    ("MSIE 7.0", False, False),
    ("MSIE 5.0", True, False),
    ("MSIE 5", False, False),                       # too short to be classified
    ("Opera/9 MSIE 5.0", False, False),
    ("Mac OS X Safari/7534.48.3", False, True),
    ("Safari/7534.48.3", False, False),              # not on a Mac
    ("Mac OS X Chrome/1 Safari/2", False, False),
    ("Mac OS X Gecko/2 Safari/2", False, False),
    ("", False, False),
])
def test_user_agent(ua: str, msie6: bool, safari: bool) -> None:
    assert user_agent(ua) == (msie6, safari)
