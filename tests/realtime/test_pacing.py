"""The replay pacer: pause, resume, speed changes and stopping, without sockets."""

from __future__ import annotations

import threading
import time

import pytest

from realtime.pacing import Pacer
from rt_base.errors import ConfigError


def test_pacer_pause_and_resume_continue_without_a_jump():
    pacer = Pacer(10.0)  # 1 s of data = 0.1 s
    pacer.restart()
    assert pacer.wait_until(0.5)  # due 0.05 s after the start
    pacer.pause()
    frozen = pacer.position()
    time.sleep(0.2)
    assert pacer.position() == frozen  # the data clock stands still while paused
    resumed = time.monotonic()
    pacer.resume()
    assert pacer.wait_until(frozen + 1.0)  # one data second after the pause point
    waited = time.monotonic() - resumed
    assert 0.08 <= waited < 0.2  # 0.1 s: neither a catch-up burst nor the paused time added


def test_pacer_wait_blocks_while_paused_even_at_full_speed():
    pacer = Pacer(0.0)
    pacer.pause()
    done = threading.Event()
    threading.Thread(target=lambda: (pacer.wait_until(1.0), done.set()), daemon=True).start()
    assert not done.wait(0.2)
    pacer.resume()
    assert done.wait(2)


def test_pacer_speed_change_re_anchors_at_the_current_position():
    pacer = Pacer(10.0)
    pacer.restart()
    assert pacer.wait_until(1.0)
    before = pacer.position()
    pacer.set_speed(2.0)
    assert abs(pacer.position() - before) < 0.1  # no jump in data time
    start = time.monotonic()
    assert pacer.wait_until(before + 0.3)  # 0.3 data s at 2x = 0.15 s
    assert 0.1 <= time.monotonic() - start < 0.3
    with pytest.raises(ConfigError, match="'speed' must be a non-negative number"):
        pacer.set_speed(-1)


def test_pacer_from_full_speed_to_paced_starts_from_the_last_event():
    pacer = Pacer(0.0)
    for t in (0.0, 5.0, 10.0):
        assert pacer.wait_until(t)
    pacer.set_speed(10.0)
    start = time.monotonic()
    assert pacer.wait_until(11.0)  # 1 data s after the last event, at 10x
    assert 0.07 <= time.monotonic() - start < 0.25


def test_pacer_halt_and_stop_end_waiting():
    stop = threading.Event()
    pacer = Pacer(1.0, stop)
    pacer.restart()
    threading.Timer(0.05, pacer.halt).start()
    assert pacer.wait_until(100.0) is False
    assert pacer.halted
    pacer2 = Pacer(1.0, stop)
    stop.set()
    assert pacer2.wait_until(100.0) is False


# -- the source's control channel ------------------------------------------------------------
