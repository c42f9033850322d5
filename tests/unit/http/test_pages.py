"""Error pages and status lines, byte for byte against responses recorded from
real nginx 1.22.1 (`return NNN;`, nginx_error_pages.json), with the token swapped."""

import json
import pathlib

import pytest

from wsgate.http.pages import (error_page, error_response, keeps_alive, status_line,
                               server_token)
from wsgate.version import __version__

RECORDED = {int(k): v.encode("latin-1") for k, v in json.loads(
    (pathlib.Path(__file__).parent / "nginx_error_pages.json").read_text()).items()}
DATE = b"Sun, 22 Nov 2026 04:32:48 GMT"


def _as_wsgate(raw: bytes) -> bytes:
    return raw.replace(b"nginx/1.22.1", f"wsgate/{__version__}".encode())


def _split(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    return lines, body


@pytest.mark.parametrize("status", sorted(s for s, raw in RECORDED.items() if raw))
def test_response_matches_nginx(status):
    lines, body = _split(_as_wsgate(RECORDED[status]))
    location = b"" if status in (301, 302, 303, 307, 308) else None
    ours = error_response(status, keep_alive=True, date=DATE, location=location)
    our_lines, our_body = _split(ours)
    assert our_body == body
    # Date differs by time of recording; everything else byte-identical
    assert [ln for ln in our_lines if not ln.startswith(b"Date:")] == \
        [ln for ln in lines if not ln.startswith(b"Date:")]


@pytest.mark.parametrize("status", [400, 413, 414, 500, 501, 495, 496, 497])
def test_statuses_that_close(status):
    assert not keeps_alive(status, True)
    assert b"Connection: close\r\n" in error_response(status, keep_alive=True)


def test_408_has_a_page_but_nginx_closes_silently_on_return():
    # `return 408` closes without a response; the page exists for error_page use
    assert RECORDED[408] == b""
    assert error_page(408).startswith(b"<html>\r\n<head><title>408 Request Time-out")


def test_494_is_sent_as_400():
    assert status_line(494) == b"HTTP/1.1 400 Bad Request\r\n"
    assert b"<center>Request Header Or Cookie Too Large</center>" in error_page(494)


def test_server_tokens_off():
    page = error_page(404, server_tokens=False)
    assert page.endswith(b"<hr><center>wsgate</center>\r\n</body>\r\n</html>\r\n")
    assert server_token(False) == "wsgate"
    nginx_off = _split(RECORDED_OFF)[1].replace(b"nginx", b"wsgate")
    assert page == nginx_off


RECORDED_OFF = (b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\n\r\n<html>\r\n<head><title>404 Not"
                b" Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>"
                b"\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


def test_head_and_http09():
    head = error_response(404, keep_alive=True, head=True, date=DATE)
    assert head.endswith(b"\r\n\r\n") and b"<html>" not in head
    assert b"Content-Length: %d" % (153 - len("nginx/1.22.1") + len(server_token())) in head
    assert error_response(400, http09=True) == error_page(400)


def test_unknown_status_line():
    assert status_line(299) == b"HTTP/1.1 299 \r\n"
