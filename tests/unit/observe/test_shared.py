"""The shared counter region: per-worker slots, sums on read, slots changing hands."""

import os
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wsgate.observe.metrics import Metrics
from wsgate.observe.shared import KEY_MAX, SEP, Region
from wsgate.observe.status import ConnectionCounters, stub_status_body


def _value(m: Metrics, sample: str, **labels: str) -> float | None:
    _, body = m.render("text/plain")
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.name == sample and s.labels == labels:
                return s.value
    return None


def test_counters_on_two_slots_read_the_sum() -> None:
    region = Region(4, rows=8)
    one, two = ConnectionCounters(region.slot(0)), ConnectionCounters(region.slot(3))
    a = one.open()
    a.writing()
    b = two.open()
    b.reading()
    two.open()
    for c in (one, two):
        assert stub_status_body(c) == (b"Active connections: 3 \nserver accepts handled "
                                       b"requests\n 3 3 2 \nReading: 1 Writing: 1 "
                                       b"Waiting: 1 \n")
    a.close()
    assert (one.active, two.active, one.accepted) == (2, 2, 3)


def test_a_forked_child_writes_its_slot_and_the_parent_sees_it() -> None:
    region = Region(2, rows=8, shared=True)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            child = Metrics(slot=region.slot(1), process=False)
            child.connections.open().writing()
            child.tunnel_opened("s", "app")
            status = 0
        finally:
            os._exit(status)
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        pytest.fail("child did not finish")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    parent = Metrics(slot=region.slot(0), process=False)
    parent.tunnel_opened("s", "app")
    assert _value(parent, "wsgate_tunnels_active", server="s", upstream="app") == 2
    assert _value(parent, "wsgate_connections", state="writing") == 1
    assert parent.connections.requests == 1


def test_reset_gauges_keeps_cumulative_counters() -> None:
    region = Region(2, rows=8)
    dead = Metrics(slot=region.slot(1), process=False)
    for _ in range(3):
        dead.connections.open().reading()
        dead.tunnel_opened("s", "app")
    live = Metrics(slot=region.slot(0), process=False)
    live.tunnel_opened("s", "app")
    region.reset_gauges(1)
    assert (live.connections.accepted, live.connections.requests) == (3, 3)
    assert (live.connections.active, live.connections.reading) == (0, 0)
    assert _value(live, "wsgate_tunnels_active", server="s", upstream="app") == 1
    assert _value(live, "wsgate_tunnels_opened_total", server="s", upstream="app") == 4


def test_a_replacement_takes_over_its_predecessors_rows() -> None:
    region = Region(1, rows=4)
    Metrics(slot=region.slot(0), process=False).request_done("s", 200, "app")
    heir = Metrics(slot=region.slot(0), process=False)
    heir.request_done("s", 204, "app")
    assert _value(heir, "wsgate_http_requests_total", server="s", upstream="app",
                  status_class="2xx") == 2
    assert len(region.series()) == 1       # the same row, not a second one


def test_full_slot_and_long_keys_count_as_dropped() -> None:
    region = Region(1, rows=2)
    slot = region.slot(0)
    slot.add("a" + SEP + "x" * KEY_MAX, 1)
    for name in ("b", "c", "d"):
        slot.add(name, 1)
    assert region.dropped() == 2
    assert region.series() == {"b": 1.0, "c": 1.0}
    m = Metrics(slot=slot, process=False)
    assert _value(m, "wsgate_metrics_series_dropped_total") == 2


def test_histograms_are_summed_across_slots() -> None:
    region = Region(2, rows=64)
    for index, duration in ((0, 0.5), (1, 100.0), (1, 100000.0)):
        m = Metrics(slot=region.slot(index), process=False)
        m.tunnel_opened("s", "app")
        m.tunnel_closed("s", "app", close_code=1000, closed_by="client",
                        duration=duration, bytes_in=10, bytes_out=20)
    labels = dict(server="s", upstream="app")
    assert _value(m, "wsgate_tunnel_duration_seconds_count", **labels) == 3
    assert _value(m, "wsgate_tunnel_duration_seconds_bucket", le="1.0", **labels) == 1
    assert _value(m, "wsgate_tunnel_duration_seconds_bucket", le="120.0", **labels) == 2
    assert _value(m, "wsgate_tunnel_duration_seconds_sum", **labels) == 100100.5
    assert _value(m, "wsgate_tunnel_bytes_total", direction="out", **labels) == 60
    assert _value(m, "wsgate_tunnels_active", **labels) == 0


def test_slot_index_is_checked() -> None:
    with pytest.raises(IndexError):
        Region(2, rows=1).slot(2)
