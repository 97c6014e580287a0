"""Which CPUs each stage process of a session may run on (``stream --pin-cpus``).

On a few cores, a volume's way to its top-k is slowed less by its own work than by waiting for
a core that another process holds: the recorder writing the last TR, the source recording the
volume it just sent, the session's own process forwarding telemetry.  Pinning keeps the stage
that does that work (``fused``, or split: preprocess, estimate and decode, which run one after
another) alone on a CPU of its own, and every other process of the session off it:

* 2 or 3 CPUs: the last for the critical stage, the rest shared by everything else;
* 4 or more: the source, when it runs in a process of its own (``--no-fuse-source``), gets the
  last but one to itself as well (in the fused process it is on the critical CPU).

The plan is made from the CPUs this process may use (``os.sched_getaffinity``), so a lab that
starts the session under ``taskset`` keeps its choice.  Where the platform cannot pin (no
``sched_setaffinity``: macOS, Windows) or only one CPU is allowed, there is no plan.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from rt_base.errors import ConfigError
from rt_base.names import FUSED_STAGE

#: the stages on a volume's way to its top-k after the source
CRITICAL_STAGES = (FUSED_STAGE, "preprocess", "estimate", "decode")
#: the CPUs from which the source gets one of its own
SOURCE_OWN_CPU_FROM = 4


def available_cpus() -> list[int] | None:
    """The CPUs this process may run on, or None where the platform cannot pin."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))


def cpu_plan(cpus: Iterable[int] | None, source_apart: bool = True) -> dict[str, list[int]] | None:
    """``{"critical": [...], "source": [...], "shared": [...]}`` for these CPUs (None: under 2
    CPUs or none known, nothing to pin); ``source_apart``: the source is a process of its own."""
    cpus = sorted(set(cpus or ()))
    if len(cpus) < 2:
        return None
    critical, rest = cpus[-1:], cpus[:-1]
    if source_apart and len(cpus) >= SOURCE_OWN_CPU_FROM:
        return {"critical": critical, "source": rest[-1:], "shared": rest[:-1]}
    return {"critical": critical, "source": rest, "shared": rest}


def stage_cpus(name: str, plan: dict[str, list[int]] | None) -> list[int] | None:
    """The CPUs of stage ``name`` under ``plan`` (None: not pinned)."""
    if plan is None:
        return None
    if name in CRITICAL_STAGES:
        return plan["critical"]
    return plan["source"] if name == "source" else plan["shared"]


def describe(plan: dict[str, list[int]] | None) -> str:
    """One line for the session log."""
    if plan is None:
        return "CPU pinning: none (one CPU, or the platform cannot pin)"
    text = f"CPU pinning: the stages on the way to the top-k on CPU {format_cpus(plan['critical'])}"
    if plan["source"] != plan["shared"]:
        text += f", the source on CPU {format_cpus(plan['source'])}"
    return text + f", every other process of the session on CPU {format_cpus(plan['shared'])}"


def format_cpus(cpus: Iterable[int]) -> str:
    """``[0, 2]`` -> ``"0,2"`` (what ``mindeye-rt stage --cpus`` takes)."""
    return ",".join(str(c) for c in sorted(cpus))


def parse_cpus(text: str) -> list[int]:
    """``"0,2"`` -> ``[0, 2]``; a bad list, or a CPU this machine has not, is a ConfigError (one
    outside this process's present set is fine: a session's process is on the shared CPUs)."""
    try:
        cpus = sorted({int(part) for part in str(text).split(",")})
    except ValueError:
        cpus = []
    if not cpus or cpus[0] < 0:
        raise ConfigError(f"'cpus' must be CPU numbers separated by commas (0,1), got {text!r}")
    if available_cpus() is None:
        raise ConfigError("'cpus': this platform cannot pin a process to CPUs")
    n = os.cpu_count() or 1
    if cpus[-1] >= n:
        raise ConfigError(f"'cpus': CPU {cpus[-1]} does not exist here (CPUs 0-{n - 1})")
    return cpus


def pin(cpus: Iterable[int]) -> None:
    """Let this process (the calling thread, and the threads it starts later) run only on
    ``cpus``; CPUs it may not use (a cgroup's cpuset) are a ConfigError."""
    cpus = set(cpus)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as err:
        raise ConfigError(f"'cpus': cannot run on CPU {format_cpus(cpus)} ({err})") from None


def pin_threads(cpus: Iterable[int], pid: int | None = None) -> None:
    """Every thread of process ``pid`` (None: this one) onto ``cpus``; the threads it starts
    later inherit it (``sched_setaffinity`` of a pid sets only that thread's)."""
    cpus = set(cpus)
    task_dir = f"/proc/{'self' if pid is None else pid}/task"
    try:
        tids = [int(t) for t in os.listdir(task_dir)]
    except OSError:  # no /proc: the calling thread, or the process's main thread
        tids = [0 if pid is None else pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            pass  # a thread that ended meanwhile


@contextmanager
def pinned_session(
    enabled: bool, log, source_apart: bool = True
) -> Iterator[dict[str, list[int]] | None]:
    """With ``enabled``: this process (and so the console and every child it starts) on the
    plan's shared CPUs for the session, its own CPUs back afterwards; yields the plan (None:
    not pinned) for the stage processes' ``--cpus`` (``source_apart``: see :func:`cpu_plan`)."""
    before = available_cpus() if enabled else None
    plan = cpu_plan(before, source_apart)
    if enabled:
        log(describe(plan))
    if plan is None:
        yield None
        return
    pin_threads(plan["shared"])
    try:
        yield plan
    finally:
        pin_threads(before)
