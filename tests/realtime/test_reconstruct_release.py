"""The reconstruct stage releases its upstream only at what it has finished: a ``run_end`` that
arrives while the run's trials are queued is sent on after their ``recon``s, and decode's
messages up to it are released only once the downstream has released that ``run_end`` (a
restart of the stage then never loses a queued trial; issue 11 item 4).

The stage is driven as its loop drives it (handle, send, note as handled; acks in), without its
socket thread; its worker thread runs.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import zmq

from mindeye_models.recon_options import ReconOptions
from realtime.stages import reconstruct
from realtime.stages.reconstruct import ReconstructStage
from rt_wire import transport
from rt_wire.message import Message
from rt_wire.sender import Sender

OUT = "inproc://reconstruct-release-out"


class _Gated:
    """A reconstructor that waits for ``gate`` before drawing each trial."""

    options = ReconOptions(mode="lowlevel")

    def __init__(self) -> None:
        self.gate = threading.Event()

    def __call__(self, tokens, response, number):
        assert self.gate.wait(10)
        return SimpleNamespace(image=np.zeros((4, 4, 3), np.uint8), blurry=None, timings_ms={})


@pytest.fixture
def rig():
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(OUT)
    push = ctx.socket(zmq.PUSH)
    push.connect(OUT)
    recon = _Gated()
    stage = ReconstructStage(
        recon,
        in_addr="inproc://reconstruct-release-in",
        out_addr=OUT,
        telemetry_addr="inproc://reconstruct-release-telemetry",
        ack_addr="inproc://reconstruct-release-acks",
        context=ctx,
    )
    stage._worker = threading.Thread(target=stage._work, daemon=True)
    stage._worker.start()
    yield SimpleNamespace(stage=stage, recon=recon, push=push, pull=pull, up=Sender.new("decode"))
    recon.gate.set()
    stage._jobs.put(reconstruct._DONE)  # the worker ends
    for sock in (push, pull):
        sock.close(0)
    ctx.term()


def _messages(up: Sender) -> list[Message]:
    run = "run-01"
    latent = Message(
        "latent",
        run=run,
        index=0,
        buffers={"tokens": np.zeros((2, 3), "f4"), "response": np.zeros(4, "f4")},
    )
    msgs = [
        Message("run_start", run=run, meta={"tr": 1.5}),
        Message("retrieval", run=run, index=0, meta={"rank": 1}),
        latent,
        Message("run_end", run=run),
    ]
    for seq, msg in enumerate(msgs):
        msg.sender, msg.seq = up, seq
    return msgs


def _step(rig, msg: Message) -> None:
    """What the stage's loop does with one input message."""
    origin = rig.stage.recovery.origin(msg)
    rig.stage._emit(rig.push, list(rig.stage.handle(msg)))
    rig.stage.recovery.handled(origin, rig.stage._out_mark(rig.push))


def _downstream_releases_all(rig) -> dict:
    """The downstream acknowledges everything sent so far; what the stage then releases."""
    stage = rig.stage
    through = {str(stage.sender): stage._out_mark(rig.push)}
    ack = Message(
        "ack", meta={"in_addr": OUT, "through": through, "incarnation": 0}, sender=Sender.new("r")
    )
    stage.recovery.output.on_ack(ack)
    stage.recovery.turn(None)
    return dict(stage.recovery.inputs.released)


def _sent(rig) -> list[str]:
    kinds = []
    while rig.pull.poll(100):
        kinds.append(transport.recv(rig.pull).kind)
    return kinds


def _wait_for_outbox(rig, n: int) -> list[Message]:
    out, deadline = [], time.monotonic() + 10
    while len(out) < n and time.monotonic() < deadline:
        out += rig.stage.idle()
        time.sleep(0.01)
    return out


def test_a_run_end_waits_for_its_runs_trials_before_it_is_released(rig):
    for msg in _messages(rig.up):
        _step(rig, msg)
    assert _sent(rig) == ["run_start", "retrieval"]  # the run_end waits behind the trial
    assert _downstream_releases_all(rig) == {}  # so decode keeps the latent for a restart
    rig.recon.gate.set()
    ready = _wait_for_outbox(rig, 2)
    assert [m.kind for m in ready] == ["recon", "run_end"]
    rig.stage._emit(rig.push, ready)
    assert _sent(rig) == ["recon", "run_end"]
    assert _downstream_releases_all(rig) == {"decode": (rig.up, 3)}  # released at the run_end


def test_a_run_end_with_nothing_queued_passes_at_once(rig):
    run_start, retrieval, _, run_end = _messages(rig.up)
    for msg in (run_start, retrieval, run_end):
        _step(rig, msg)
    assert _sent(rig) == ["run_start", "retrieval", "run_end"]
    assert _downstream_releases_all(rig) == {"decode": (rig.up, 3)}


def test_the_sessions_end_sends_the_waiting_run_ends_after_their_trials(rig):
    msgs = _messages(rig.up)
    for msg in msgs:
        _step(rig, msg)
    rig.recon.gate.set()
    assert [m.kind for m in rig.stage.finish()] == ["recon", "run_end"]


class _Numbered:
    """A reconstructor that draws at once."""

    options = ReconOptions(mode="lowlevel", seed=100)

    def __call__(self, tokens, response, number):
        return SimpleNamespace(image=np.zeros((4, 4, 3), np.uint8), blurry=None, timings_ms={})


def _seeds(stage: ReconstructStage, runs: dict[str, int]) -> list[tuple[str, int, int]]:
    """Each trial's (run, index, seed) when ``stage`` is sent ``runs`` (run -> trials)."""
    seeds = []
    for run, n in runs.items():
        msgs = [Message("run_start", run=run, meta={"tr": 1.5})]
        for i in range(n):
            buffers = {"tokens": np.zeros((2, 3), "f4"), "response": np.zeros(4, "f4")}
            msgs.append(Message("latent", run=run, index=i, buffers=buffers))
        for msg in [*msgs, Message("run_end", run=run)]:
            stage.handle(msg)
            while not stage._jobs.empty():
                job = stage._jobs.get()
                if job.kind == "latent":
                    out = stage.reconstruct(job)
                    seeds.append((out.run, out.index, out.meta["seed"]))
    return seeds


def test_a_restarted_stage_numbers_the_trials_sent_again_as_before(tmp_path):
    """Killed in run-02, the stage is sent run-02 again from its run_start: the same numbers,
    so the same seeds (``full`` mode: ``seed + number``) as an unkilled stage's."""
    numbers = str(tmp_path / "reconstruct_numbers.json")
    first = ReconstructStage(_Numbered(), numbers_file=numbers)
    seeds = _seeds(first, {"run-01": 3, "run-02": 2})
    assert [s for _, _, s in seeds] == [101, 102, 103, 104, 105]
    again = ReconstructStage(_Numbered(), numbers_file=numbers, incarnation=1)
    assert _seeds(again, {"run-02": 2, "run-03": 2}) == [
        ("run-02", 0, 104),
        ("run-02", 1, 105),
        ("run-03", 0, 106),
        ("run-03", 1, 107),
    ]
    fresh = ReconstructStage(_Numbered(), numbers_file=numbers)  # a new session: from 1
    assert [s for _, _, s in _seeds(fresh, {"run-02": 1})] == [101]
