"""Body framing: chunked (nginx's ngx_http_parse_chunked rules), content-length,
close-delimited, and the chunked writer; every split of valid input gives the
same body and leftover."""

import pytest

from wsgate.errors import RemoteProtocolError
from wsgate.http.events import Data, EndOfMessage
from wsgate.http.framing import (ChunkedReader, ChunkedWriter, CloseDelimitedReader,
                                 ContentLengthReader, body_reader)


def run(reader, data: bytes, step: int | None = None):
    """Feed data (whole or in `step`-byte pieces); return (body, trailers, leftover)."""
    pieces = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    body, trailers, leftover = b"", None, b""
    for piece in pieces:
        if not piece:          # b"" would mean EOF
            continue
        events, rest = reader.feed(piece)
        leftover += rest
        for ev in events:
            if isinstance(ev, Data):
                body += ev.data
            else:
                assert isinstance(ev, EndOfMessage)
                trailers = ev.trailers
    return body, trailers, leftover


CHUNKED_OK = [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello", ()),
    (b"5\nhello\n0\n\n", b"hello", ()),
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", ()),
    (b"a;ext=1\r\n0123456789\r\n0;last\r\n\r\n", b"0123456789", ()),
    (b"3 \r\nabc\r\n0\t\r\n\r\n", b"abc", ()),
    (b"003\r\nabc\r\n00\r\n\r\n", b"abc", ()),
    (b"2\r\nab\r\n1\r\nc\r\n0\r\nX-T: 1\r\nY: two \r\n\r\n", b"abc",
     ((b"X-T", b"1"), (b"Y", b"two"))),
    (b"0\r\n\r\n", b"", ()),
]


@pytest.mark.parametrize("data,body,trailers", CHUNKED_OK)
def test_chunked_valid(data, body, trailers):
    assert run(ChunkedReader(), data + b"NEXT") == (body, trailers, b"NEXT")


@pytest.mark.parametrize("data,body,trailers", CHUNKED_OK)
def test_chunked_every_split(data, body, trailers):
    for cut in range(len(data) + 1):
        reader = ChunkedReader()
        got = run(reader, data[:cut])
        rest = run(reader, data[cut:] + b"NEXT") if data[cut:] else run(reader, b"NEXT")
        assert got[0] + rest[0] == body
        assert (got[1] if got[1] is not None else rest[1]) == trailers
        assert got[2] + rest[2] == b"NEXT"


@pytest.mark.parametrize("data,body,trailers", CHUNKED_OK)
def test_chunked_byte_by_byte(data, body, trailers):
    assert run(ChunkedReader(), data, step=1) == (body, trailers, b"")


@pytest.mark.parametrize("data", [
    b"x\r\n", b"\r\n", b"-1\r\n", b"5\rhello", b"5\r\nhelloX", b"5\r\nhello\rX",
    b"1\r\na\r\n0\r\r", b"0\r\n\rX", b"0\r\nX-T: 1\rX", b"8000000000000000\r\n",
    b"0\r\n\r\x00", b"1\r\na\r\r",
])
def test_chunked_invalid(data):
    with pytest.raises(RemoteProtocolError) as err:
        run(ChunkedReader(), data)
    assert (err.value.status_hint, err.value.message) == (400, "client sent invalid chunked body")


def test_chunked_upstream_wording():
    with pytest.raises(RemoteProtocolError) as err:
        run(ChunkedReader(role="upstream"), b"zz")
    assert (err.value.status_hint, err.value.message) == (
        502, "upstream sent invalid chunked response")


def test_chunk_size_limit_is_off_t():
    reader = ChunkedReader()
    events, _ = reader.feed(b"7fffffffffffffff\r\nab")
    assert events == [Data(b"ab")]


def test_chunk_ext_limit_is_opt_in():
    run(ChunkedReader(), b"1;" + b"e" * 10000 + b"\r\na\r\n0\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        run(ChunkedReader(max_chunk_ext=16), b"1;" + b"e" * 17 + b"\r\n")


def test_trailers_are_bounded():
    with pytest.raises(RemoteProtocolError):
        run(ChunkedReader(max_trailer_size=10), b"0\r\nX: " + b"v" * 20 + b"\r\n\r\n")


def test_premature_eof():
    reader = ChunkedReader()
    reader.feed(b"5\r\nhe")
    with pytest.raises(RemoteProtocolError) as err:
        reader.feed(b"")
    assert err.value.message == "client prematurely closed connection"


def test_data_is_not_accumulated():
    reader = ChunkedReader()
    events, _ = reader.feed(b"10\r\n" + b"a" * 8)
    assert events == [Data(b"a" * 8)]
    events, _ = reader.feed(b"b" * 8)
    assert events == [Data(b"b" * 8)]


def test_content_length_reader():
    reader = ContentLengthReader(5)
    assert reader.feed(b"he") == ([Data(b"he")], b"")
    assert reader.feed(b"lloGET") == ([Data(b"llo"), EndOfMessage()], b"GET")
    assert reader.feed(b"more") == ([], b"more")


def test_content_length_zero_and_eof():
    assert ContentLengthReader(0).feed(b"") == ([EndOfMessage()], b"")
    reader = ContentLengthReader(3, role="upstream")
    reader.feed(b"a")
    with pytest.raises(RemoteProtocolError) as err:
        reader.feed(b"")
    assert err.value.status_hint == 502


def test_close_delimited_reader():
    reader = CloseDelimitedReader()
    assert reader.feed(b"abc") == ([Data(b"abc")], b"")
    assert reader.feed(b"") == ([EndOfMessage()], b"")


def test_chunked_writer_roundtrip():
    writer = ChunkedWriter()
    wire = writer.write(b"hello") + writer.write(b"") + writer.write(b"x" * 300) + \
        writer.end(((b"X-T", b"1"),))
    assert wire.startswith(b"5\r\nhello\r\n12c\r\n")
    assert run(ChunkedReader(), wire) == (b"hello" + b"x" * 300, ((b"X-T", b"1"),), b"")
    with pytest.raises(ValueError):
        writer.write(b"late")


def test_body_reader_choice():
    assert body_reader(None, False) is None
    assert isinstance(body_reader(3, False), ContentLengthReader)
    assert isinstance(body_reader(None, True), ChunkedReader)


# Chunked request bodies sent through real nginx 1.22.1 (proxy_pass, buffered):
# True = nginx accepted the body (200), False = nginx answered 400.
NGINX_CHUNKED = [
    (b"5\r\nhello\r\n0\r\n\r\n", True), (b"5\nhello\n0\n\n", True),
    (b"a;ext=1\r\n0123456789\r\n0;last\r\n\r\n", True), (b"3 \r\nabc\r\n0\t\r\n\r\n", True),
    (b"003\r\nabc\r\n00\r\n\r\n", True),
    (b"2\r\nab\r\n1\r\nc\r\n0\r\nX-T: 1\r\nY: two \r\n\r\n", True),
    (b"5 x\r\nhello\r\n0\r\n\r\n", True), (b"5;\x00\r\nhello\r\n0\r\n\r\n", True),
    (b"0\r\nno colon line\r\n\r\n", True),
    (b"x\r\n", False), (b"-1\r\n", False), (b"5\rhello", False), (b"5\r\nhelloX", False),
    (b"5\r\nhello\rX", False), (b"1\r\na\r\n0\r\r", False), (b"0\r\n\rX", False),
    (b"0\r\nX-T: 1\rX", False), (b"8000000000000000\r\n", False),
    (b"\r\n5\r\nhello\r\n0\r\n\r\n", False), (b"5\r\nhello\r\n\r\n0\r\n\r\n", False),
    (b" 5\r\nhello\r\n0\r\n\r\n", False),
]


@pytest.mark.parametrize("data,accepted", NGINX_CHUNKED)
def test_chunked_matches_nginx(data, accepted):
    reader = ChunkedReader()
    if accepted:
        run(reader, data)
        assert reader.done
    else:
        with pytest.raises(RemoteProtocolError):
            run(reader, data)
