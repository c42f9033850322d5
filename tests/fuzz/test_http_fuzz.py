"""Fuzzing the sans-IO HTTP parsers. Invariant: any bytes either parse (an event,
NEED_DATA) or raise RemoteProtocolError, nothing else; and framing round-trips
under any split."""

from hypothesis import given, settings, strategies as st

from wsgate.errors import RemoteProtocolError
from wsgate.http.events import NEED_DATA, Data, EndOfMessage, Request, Response
from wsgate.http.framing import ChunkedReader, ChunkedWriter, ContentLengthReader
from wsgate.http.parse import RequestHeadParser
from wsgate.http.response import ResponseHeadParser
from wsgate.limits import HeaderLimits

SMALL = HeaderLimits(buffer_size=64, large_num=2, large_size=128)
PIECES = [b"GET", b"POST", b" ", b"/", b"/a", b"%2e", b"%", b"..", b"?", b"#", b"http://",
          b"h", b"[::1]", b":80", b" HTTP/1.1", b" HTTP/1.0", b" HTTP/2.0", b"\r\n", b"\n",
          b"\r", b"Host: a", b"Host:", b"Content-Length: 5", b"Transfer-Encoding: chunked",
          b"Connection: close", b"Upgrade: websocket", b"X_A: 1", b":", b"\x00", b"\t",
          b"Expect: 100-continue", b"\x80", b"0\r\n\r\n"]
fragments = st.lists(st.sampled_from(PIECES) | st.binary(max_size=8), max_size=30).map(b"".join)
splits = st.lists(st.integers(min_value=1, max_value=16), min_size=1, max_size=20)


def _feed_in_pieces(parser, data: bytes, sizes: list[int]):
    pos, result = 0, NEED_DATA
    for size in sizes * (len(data) // max(1, sum(sizes)) + 1):
        if pos >= len(data) or result is not NEED_DATA:
            break
        result = parser.feed(data[pos:pos + size])
        pos += size
    return result


@settings(max_examples=300, deadline=None)
@given(fragments | st.binary(max_size=300), splits)
def test_request_parser_parses_or_raises_protocol_error(data, sizes):
    for limits in (SMALL, HeaderLimits()):
        try:
            whole = RequestHeadParser(limits).feed(data)
        except RemoteProtocolError:
            whole = "error"
        assert whole is NEED_DATA or whole == "error" or isinstance(whole, Request)
        try:
            split = _feed_in_pieces(RequestHeadParser(limits), data, sizes)
        except RemoteProtocolError:
            split = "error"
        if whole is not NEED_DATA:     # any split reaches the same verdict
            assert split == whole


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.lists(st.sampled_from([b"HTTP/1.1 ", b"200", b" OK", b"\r\n", b"\n",
                                           b"Content-Length: 2", b"X A: b", b"\x00",
                                           b"Transfer-Encoding: chunked", b"101"]),
                          max_size=15).map(b"".join)),
       st.booleans())
def test_response_parser_parses_or_raises_protocol_error(data, strict):
    try:
        result = ResponseHeadParser(max_size=128, strict=strict).feed(data)
    except RemoteProtocolError:
        return
    assert result is NEED_DATA or isinstance(result, Response)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.lists(st.sampled_from([b"5", b"0", b"a", b";x", b" ", b"\r\n", b"\n",
                                           b"\r", b"hello", b"X: y"]),
                          max_size=20).map(b"".join)))
def test_chunked_reader_events_or_protocol_error(data):
    reader = ChunkedReader(max_trailer_size=64)
    try:
        events, leftover = reader.feed(data) if data else ([], b"")
    except RemoteProtocolError:
        return
    assert all(isinstance(e, (Data, EndOfMessage)) for e in events)
    assert not leftover or reader.done


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), splits)
def test_chunked_round_trip_any_split(chunks, sizes):
    writer = ChunkedWriter()
    wire = b"".join(writer.write(c) for c in chunks) + writer.end() + b"NEXT"
    reader, body, leftover, pos, ended = ChunkedReader(), b"", b"", 0, False
    for size in sizes * (len(wire) + 1):
        if pos >= len(wire):
            break
        events, rest = reader.feed(wire[pos:pos + size])
        pos += size
        leftover += rest
        body += b"".join(e.data for e in events if isinstance(e, Data))
        ended = ended or any(isinstance(e, EndOfMessage) for e in events)
    assert (body, leftover, ended) == (b"".join(chunks), b"NEXT", True)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100), st.integers(min_value=0, max_value=100), splits)
def test_content_length_exact(data, length, sizes):
    reader, body, leftover, pos = ContentLengthReader(length), b"", b"", 0
    for size in sizes * (len(data) + 1):
        if pos >= len(data):
            break
        events, rest = reader.feed(data[pos:pos + size])
        pos += size
        leftover += rest
        body += b"".join(e.data for e in events if isinstance(e, Data))
    assert body == data[:length] and leftover == data[length:]
