"""`wsgate serve --to` parsing and the TLS lines of the generated config (no sockets)."""

from __future__ import annotations

import pytest

from wsgate.cli.serve import QuickOptions, Target, build_config_text, parse_target


@pytest.mark.parametrize("text, target", [
    ("127.0.0.1:3000", Target("127.0.0.1:3000", "127.0.0.1", False)),
    ("backend", Target("backend", "backend", False)),            # nginx's port 80
    ("unix:/run/app.sock", Target("unix:/run/app.sock", None, False)),
    ("http://app:8080/", Target("app:8080", "app", False)),
    ("ws://app", Target("app:80", "app", False)),
    ("https://app", Target("app:443", "app", True)),
    ("WSS://app:8443", Target("app:8443", "app", True)),
    ("https://[::1]:8443", Target("[::1]:8443", "::1", True)),
    ("wss://[::1]", Target("[::1]:443", "::1", True)),
    ("https://unix:/run/tls.sock", Target("unix:/run/tls.sock", None, True)),
])
def test_parse_target(text: str, target: Target) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["gopher://x:1", "https://x:1/api", "https://", "http://x?a"])
def test_bad_targets(text: str) -> None:
    with pytest.raises(ValueError, match="invalid --to"):
        parse_target(text)


def test_plain_quick_mode_has_no_tls_lines() -> None:
    text = build_config_text(QuickOptions(["8080"], ["127.0.0.1:3000"]))
    assert "ssl" not in text and "proxy_pass http://wsgate_backend;" in text


def test_the_key_defaults_to_the_certificate_file() -> None:
    text = build_config_text(QuickOptions(["8443"], ["127.0.0.1:3000"], tls_cert="/c.pem"))
    assert "listen 8443 ssl;" in text
    assert "ssl_certificate /c.pem;" in text and "ssl_certificate_key /c.pem;" in text


def test_tls_name_choice() -> None:
    def opts(*to: str, **kw: str) -> str:
        return build_config_text(QuickOptions(["8080"], list(to), **kw))
    assert "proxy_ssl_name a.test;" in opts("https://a.test:1", "https://a.test:2")
    assert "proxy_ssl_name b.test;" in opts("https://10.0.0.1", "https://10.0.0.2",
                                            tls_upstream_name="b.test")
    several = opts("https://10.0.0.1", "https://10.0.0.2")
    assert "proxy_ssl_name" not in several and "proxy_ssl_verify off;" in several
    with pytest.raises(ValueError, match="--tls-upstream-name"):
        opts("https://10.0.0.1", "https://10.0.0.2", tls_verify_upstream="/ca.crt")
