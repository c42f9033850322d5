"""timers.Deadline: one lazily moved loop timer for a connection's waits. Its
callback must run when (and only when) the current wait outlives its timeout,
however the waits before it moved the timer. A real uvloop loop, short timeouts."""

import asyncio

import uvloop

from wsgate.proxy.timers import Deadline


def _run(body):
    return uvloop.run(body())


def test_fires_after_the_timeout_of_the_current_wait():
    async def body():
        loop = asyncio.get_running_loop()
        fired = []
        d = Deadline(loop, lambda: fired.append(loop.time()))
        start = loop.time()
        d.set(0.05)
        await asyncio.sleep(0.12)
        return fired, start
    fired, start = _run(body)
    assert len(fired) == 1 and fired[0] - start >= 0.049


def test_cleared_wait_never_fires_and_a_later_wait_is_timed_from_its_own_start():
    async def body():
        loop = asyncio.get_running_loop()
        fired = []
        d = Deadline(loop, lambda: fired.append(loop.time()))
        d.set(0.05)
        await asyncio.sleep(0.03)
        d.clear()                         # the wait ended in time
        await asyncio.sleep(0.04)         # the armed timer passes: nothing runs
        assert fired == []
        second = loop.time()
        d.set(0.05)                       # a new wait: 50 ms from now, not earlier
        await asyncio.sleep(0.12)
        return fired, second
    fired, second = _run(body)
    assert len(fired) == 1 and fired[0] - second >= 0.049


def test_a_longer_wait_rearms_for_the_rest_and_a_shorter_one_moves_the_timer_up():
    async def body():
        loop = asyncio.get_running_loop()
        fired = []
        d = Deadline(loop, lambda: fired.append(loop.time()))
        d.set(0.03)
        d.clear()
        t1 = loop.time()
        d.set(0.1)                        # armed for 30 ms: must re-arm, not fire
        await asyncio.sleep(0.06)
        assert fired == []
        d.clear()
        d.set(1.0)
        t2 = loop.time()
        d.clear()
        d.set(0.02)                       # shorter than the armed 1 s: moved up
        await asyncio.sleep(0.08)
        d.cancel()
        return fired, t1, t2
    fired, t1, t2 = _run(body)
    assert len(fired) == 1 and 0.019 <= fired[0] - t2 < 0.5


def test_cancel_releases_the_timer():
    async def body():
        loop = asyncio.get_running_loop()
        fired = []
        d = Deadline(loop, lambda: fired.append(1))
        d.set(0.02)
        d.cancel()
        assert d.handle is None
        await asyncio.sleep(0.05)
        return fired
    assert _run(body) == []
