"""stub_status: nginx 1.22's exact text and its connection-state arithmetic.

The expected bodies were captured from real nginx 1.22.1 (`location = /basic_status
{ stub_status; }`) over loopback, byte for byte, trailing spaces included.
"""

import re

from hypothesis import given, strategies as st

from wsgate.observe.status import (
    ConnectionCounters, ConnState, handle_stub_status, stub_status_body)

# One GET for the page itself on a fresh nginx.
NGINX_FIRST = (b"Active connections: 1 \nserver accepts handled requests\n 1 1 1 \n"
               b"Reading: 0 Writing: 1 Waiting: 0 \n")
# After: 2 earlier closed GETs, an open WebSocket tunnel, an idle keep-alive
# connection that served one request, a connection with half a request head, a
# connection that sent nothing, and the stub_status request itself.
NGINX_BUSY = (b"Active connections: 5 \nserver accepts handled requests\n 7 7 6 \n"
              b"Reading: 1 Writing: 2 Waiting: 2 \n")
# The same, after the tunnel closed and one more stub_status request.
NGINX_AFTER_TUNNEL = (b"Active connections: 4 \nserver accepts handled requests\n"
                      b" 8 8 7 \nReading: 1 Writing: 1 Waiting: 2 \n")


def _serve_one(c: ConnectionCounters) -> None:
    """A connection that sends one request, gets its answer, and closes."""
    st = c.open()
    st.reading()
    st.writing()
    st.close()


def test_first_request_matches_nginx_bytes() -> None:
    c = ConnectionCounters()
    st = c.open()
    st.reading()
    st.writing()
    assert stub_status_body(c) == NGINX_FIRST
    assert len(NGINX_FIRST) == 97  # nginx's Content-Length for this page


def test_busy_sequence_matches_nginx_numbers_and_bytes() -> None:
    c = ConnectionCounters()
    _serve_one(c)
    _serve_one(c)
    ws = c.open()
    ws.reading()
    ws.writing()        # 101: the tunnel stays "writing" for its whole life
    ka = c.open()
    ka.writing()        # whole head in one read: WAITING -> WRITING counts a request
    ka.waiting()        # answered, kept alive
    rd = c.open()
    rd.reading()        # half a head
    c.open()            # connected, nothing sent
    page = c.open()
    page.reading()
    page.writing()
    assert stub_status_body(c) == NGINX_BUSY
    ws.close()
    page.close()
    again = c.open()
    again.reading()
    again.writing()
    assert stub_status_body(c) == NGINX_AFTER_TUNNEL


def test_transitions_are_idempotent() -> None:
    c = ConnectionCounters()
    st = c.open()
    st.reading()
    st.reading()
    st.writing()
    st.writing()
    st.close()
    st.close()
    st.waiting()
    assert st.state is ConnState.CLOSED
    assert (c.active, c.reading, c.writing, c.waiting) == (0, 0, 0, 0)
    assert (c.accepted, c.handled, c.requests) == (1, 1, 1)


def test_keepalive_requests_count_each_request() -> None:
    c = ConnectionCounters()
    st = c.open()
    for _ in range(3):
        st.reading()
        st.writing()
        st.waiting()
    assert (c.requests, c.waiting, c.active) == (3, 1, 1)


def test_close_from_each_state() -> None:
    c = ConnectionCounters()
    for advance in ((), ("reading",), ("reading", "writing"), ("writing", "waiting")):
        st = c.open()
        for step in advance:
            getattr(st, step)()
        st.close()
    assert (c.active, c.reading, c.writing, c.waiting) == (0, 0, 0, 0)
    assert c.accepted == c.handled == 4


def test_unhandled_connection_counts_accepted_only() -> None:
    c = ConnectionCounters()
    st = c.open(handled=False)
    st.reading()
    st.close()
    assert (c.accepted, c.handled, c.requests, c.active) == (1, 0, 0, 0)
    assert b" 1 0 0 \n" in stub_status_body(c)


def test_handler_get_head_and_other_methods() -> None:
    c = ConnectionCounters()
    c.open().writing()
    status, headers, body = handle_stub_status(c, "GET")
    assert (status, headers, body) == (200, [("Content-Type", "text/plain")], NGINX_FIRST)
    assert handle_stub_status(c, "HEAD")[2] == NGINX_FIRST  # for Content-Length
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        assert handle_stub_status(c, method) == (405, [], b"")


# -- any sequence of transitions keeps the counters consistent -------------------------


_STEPS = st.lists(st.tuples(st.integers(0, 4),
                            st.sampled_from(["open", "reading", "writing", "waiting",
                                             "close"])), max_size=60)


@given(_STEPS)
def test_counters_match_a_model_for_any_sequence(steps: list[tuple[int, str]]) -> None:
    c = ConnectionCounters()
    conns: list = []
    model_requests = 0
    for index, step in steps:
        if step == "open" or not conns:
            conns.append(c.open())
            continue
        conn = conns[index % len(conns)]
        before = conn.state
        getattr(conn, step)()
        if step in ("reading", "writing") and before is ConnState.WAITING:
            model_requests += 1
    states = [s.state for s in conns]
    assert c.reading == states.count(ConnState.READING)
    assert c.writing == states.count(ConnState.WRITING)
    assert c.waiting == states.count(ConnState.WAITING)
    assert c.active == len(conns) - states.count(ConnState.CLOSED)
    assert c.accepted == c.handled == len(conns)
    assert c.requests == model_requests
    assert _body_numbers(stub_status_body(c)) == (
        c.active, c.accepted, c.handled, c.requests, c.reading, c.writing, c.waiting)


def _body_numbers(body: bytes) -> tuple[int, ...]:
    m = re.fullmatch(rb"Active connections: (\d+) \nserver accepts handled requests\n"
                     rb" (\d+) (\d+) (\d+) \nReading: (\d+) Writing: (\d+) "
                     rb"Waiting: (\d+) \n", body)
    assert m
    return tuple(int(x) for x in m.groups())
