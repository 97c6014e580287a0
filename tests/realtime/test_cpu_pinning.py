"""stream --pin-cpus: the plan of CPUs per stage, the `stage --cpus` option and the session's
own process (realtime.cpu_pinning)."""

from __future__ import annotations

import os
import threading

import pytest

from realtime import cpu_pinning
from realtime.cli import main
from realtime.config import StreamConfig
from realtime.cpu_pinning import cpu_plan, describe, parse_cpus, pinned_session, stage_cpus
from rt_base.errors import ConfigError

CAN_PIN = cpu_pinning.available_cpus() is not None and len(cpu_pinning.available_cpus()) >= 2
needs_two_cpus = pytest.mark.skipif(not CAN_PIN, reason="needs sched_setaffinity and 2 CPUs")


@pytest.mark.parametrize("cpus", [None, [], [3]])
def test_under_two_cpus_there_is_no_plan(cpus):
    assert cpu_plan(cpus) is None
    assert stage_cpus("fused", None) is None
    assert "none" in describe(None)


def test_two_cpus_give_the_critical_stages_the_last_one():
    plan = cpu_plan([1, 0, 1])  # unsorted, repeated: the set counts
    assert plan == {"critical": [1], "source": [0], "shared": [0]}
    for name in ("fused", "preprocess", "estimate", "decode"):
        assert stage_cpus(name, plan) == [1]
    for name in ("source", "recorder", "reconstruct"):
        assert stage_cpus(name, plan) == [0]
    assert describe(plan) == (
        "CPU pinning: the stages on the way to the top-k on CPU 1, every other process of the "
        "session on CPU 0"
    )


def test_three_cpus_share_two_and_four_give_the_source_its_own():
    assert cpu_plan([0, 1, 2]) == {"critical": [2], "source": [0, 1], "shared": [0, 1]}
    plan = cpu_plan(range(8))
    assert plan == {"critical": [7], "source": [6], "shared": [0, 1, 2, 3, 4, 5]}
    assert stage_cpus("source", plan) == [6] and stage_cpus("recorder", plan) == [0, 1, 2, 3, 4, 5]
    assert "the source on CPU 6" in describe(plan) and "CPU 0,1,2,3,4,5" in describe(plan)
    # the source in the fused process (--fuse-source): on the critical CPU, none of its own
    inside = cpu_plan(range(8), source_apart=False)
    assert inside == {"critical": [7], "source": list(range(7)), "shared": list(range(7))}
    assert "source" not in describe(inside)


@pytest.mark.parametrize("text", ["", "a", "1;2", "-1", "0,,1", "1.5"])
def test_a_bad_cpu_list_is_refused_by_name(text):
    with pytest.raises(ConfigError, match="'cpus' must be CPU numbers"):
        parse_cpus(text)


def test_a_cpu_the_machine_has_not_is_refused(monkeypatch):
    assert parse_cpus("1,0,1") == [0, 1]
    n = os.cpu_count()
    with pytest.raises(ConfigError, match=f"CPU {n + 3} does not exist here"):
        parse_cpus(f"0,{n + 3}")
    monkeypatch.setattr(cpu_pinning, "available_cpus", lambda: None)
    with pytest.raises(ConfigError, match="cannot pin"):
        parse_cpus("0")


@needs_two_cpus
def test_a_stage_process_may_leave_the_shared_cpus_for_its_own():
    """The session's process is on the shared CPUs; a stage it starts moves to the critical one."""
    before = os.sched_getaffinity(0)
    plan = cpu_plan(before)
    try:
        cpu_pinning.pin(plan["shared"])
        cpus = parse_cpus(cpu_pinning.format_cpus(plan["critical"]))  # not in the present set
        cpu_pinning.pin(cpus)
        assert os.sched_getaffinity(0) == set(plan["critical"])
    finally:
        os.sched_setaffinity(0, before)


def test_stage_refuses_bad_cpus_before_it_starts():
    assert main(["stage", "recorder", "--cpus", "x"]) != 0


def test_pin_cpus_must_be_a_bool():
    assert StreamConfig().pin_cpus is True
    with pytest.raises(ConfigError, match="'pin_cpus' must be true or false, got 'no'"):
        StreamConfig(pin_cpus="no")


@needs_two_cpus
def test_a_pinned_session_moves_every_thread_and_gives_the_cpus_back():
    before = os.sched_getaffinity(0)
    started, stop, seen = threading.Event(), threading.Event(), {}

    def worker():  # a thread that exists before the session pins (a hub, zmq's I/O threads)
        seen["tid"] = threading.get_native_id()
        started.set()
        stop.wait(10)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    started.wait(5)
    lines: list[str] = []
    try:
        with pinned_session(True, lines.append) as plan:
            assert os.sched_getaffinity(0) == set(plan["shared"])
            assert os.sched_getaffinity(seen["tid"]) == set(plan["shared"])
            assert sorted(before)[-1] not in plan["shared"]  # the critical CPU is left free
        assert lines == [describe(plan)]
        assert os.sched_getaffinity(0) == before and os.sched_getaffinity(seen["tid"]) == before
        with pinned_session(False, lines.append) as none:
            assert none is None and os.sched_getaffinity(0) == before
        assert len(lines) == 1  # off: not a word
    finally:
        stop.set()
        os.sched_setaffinity(0, before)
