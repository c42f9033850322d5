"""Reload under load, scaled down: 100 live WebSocket sessions, new handshakes
arriving continuously, 5 HUP reloads 0.5 s apart (tests/soak/reload_soak.py runs
the full 1,000-session, 20-reload measurement)."""

from __future__ import annotations

import pytest

from soak.reload_soak import run_soak


@pytest.mark.timeout(180)
def test_reloads_cut_nothing_and_pile_up_no_processes(tmp_path):
    report = run_soak(sessions=100, reloads=5, interval=0.5, workers=2, clients=2,
                      workdir=str(tmp_path))
    assert report.opened == 100
    assert report.messages > 100 and report.handshakes > 0
    assert (report.cut, report.refused, report.lost) == (0, 0, 0), report
    assert report.procs_before == report.procs_after == 3, report
    assert report.alerts == 0, report
