"""Session ticket keys derived per server (wsgate.tls.tickets): two runtimes built
apart -- as two workers do -- resume each other's tickets; other servers, renewed
certificates and another master's secret give other keys."""

from __future__ import annotations

import shutil
import pytest

from unit.tls.test_server_contexts import SERVERS, listener
from wsgate.tls import native, tickets, tls_variables


def test_the_native_layer_is_there() -> None:
    assert native.available()        # else every worker keeps its own random keys


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_a_ticket_from_one_worker_resumes_on_another(load, shake, client_ctx, version):
    text = SERVERS % "" + f"ssl_protocols {version};"
    worker_a, worker_b = listener(load(text)), listener(load(text))   # two loads
    client = client_ctx()
    first = shake(worker_a.context, client, server_hostname="a.example")
    assert first.exchange() == b"ping"
    again = shake(worker_b.context, client, server_hostname="a.example",
                  session=first.client.session)
    assert again.client.session_reused
    assert tls_variables(again.server)["ssl_session_reused"] == "r"


def test_keys_follow_the_server_and_its_files(load, pki, tmp_path):
    cfg = load(SERVERS % "")
    a, b = cfg.http.servers
    prefix = str(pki.dir) + "/"
    assert len(tickets.ticket_keys(a, prefix)) == 80
    assert tickets.ticket_keys(a, prefix) == tickets.ticket_keys(load(SERVERS % "")
                                                                 .http.servers[0], prefix)
    assert tickets.ticket_keys(a, prefix) != tickets.ticket_keys(b, prefix)
    assert tickets.ticket_keys(a, prefix) != tickets.ticket_keys(a, prefix, b"x" * 32)
    # renewed certificate files (same names): new keys
    renewed = tmp_path / "conf"
    shutil.copytree(pki.dir, renewed)
    before = tickets.ticket_keys(a, str(renewed) + "/")
    (renewed / "a.crt").write_bytes((pki.dir / "b.crt").read_bytes())
    assert tickets.ticket_keys(a, str(renewed) + "/") != before


def test_tickets_off_sets_no_shared_keys(load, shake, client_ctx):
    text = SERVERS % "ssl_session_tickets off;" + "ssl_protocols TLSv1.3;"
    worker_a, worker_b = listener(load(text)), listener(load(text))
    client = client_ctx()
    first = shake(worker_a.context, client, server_hostname="a.example")
    first.exchange()
    again = shake(worker_b.context, client, server_hostname="a.example",
                  session=first.client.session)
    assert not again.client.session_reused
