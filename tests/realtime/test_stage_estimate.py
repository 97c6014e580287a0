"""The estimate stage's handler, called with messages directly (no sockets)."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.stages.estimate import EstimateStage
from rt_base.errors import ConfigError, MessageError
from rt_wire.message import Message

N_VOXELS = 4
TR = 1.0
N_VOLUMES = 12
#: (trial index, onset s, image id); with a 4 s decode delay the decode volumes are 6, 9, 13
TRIALS = [(0, 2.0, 70), (1, 5.0, 71), (2, 9.0, 72)]


def _trial(index: int, onset: float, image_id: int, run: str = "run-01") -> Message:
    meta = {"onset": onset, "duration": 1.0, "image_id": image_id, "split": "test"}
    return Message("trial", run=run, index=index, meta=meta, t={"source.acquired": 100 + onset})


def _tr(index: int, rng: np.random.Generator, n_voxels: int = N_VOXELS) -> Message:
    raw = rng.normal(1000, 10, n_voxels).astype(np.float32)
    t = {"source.acquired": 100 + index * TR}
    return Message("tr", run="run-01", index=index, t=t, buffers={"raw": raw})


def _run_start() -> Message:
    return Message("run_start", run="run-01", meta={"tr": TR, "n_volumes": N_VOLUMES})


def _session() -> list[Message]:
    """run_start, then trials and TRs in data time (as the source sends them), then run_end."""
    rng = np.random.default_rng(0)
    timeline = [(onset, 0, _trial(i, onset, img)) for i, onset, img in TRIALS]
    timeline += [(k * TR, 1, _tr(k, rng)) for k in range(N_VOLUMES)]
    timeline.sort(key=lambda item: item[:2])
    end = Message("run_end", run="run-01", meta={"n_volumes": N_VOLUMES})
    return [_run_start(), *(msg for _, _, msg in timeline), end]


def _stage() -> EstimateStage:
    return EstimateStage.from_spec({"n_voxels": N_VOXELS, "decode_delay": 4.0})


def test_each_trial_is_estimated_at_its_decode_point():
    stage = _stage()
    after: dict[int, list[Message]] = {}  # what came out after each TR
    outs = []
    for msg in _session():
        out = list(stage.handle(msg))
        outs += out
        if msg.kind == "tr":
            after[msg.index] = [m for m in out if m.kind == "response"]
    assert [m.index for m in after[6]] == [0] and [m.index for m in after[9]] == [1]
    assert sum(len(v) for v in after.values()) == 2
    responses = [m for m in outs if m.kind == "response"]
    assert [m.index for m in responses] == [0, 1, 2]
    for msg, (_, onset, image_id) in zip(responses, TRIALS, strict=True):
        assert msg.buffers["response"].shape == (N_VOXELS,)
        assert msg.buffers["response"].dtype == np.float32
        assert np.isfinite(msg.buffers["response"]).all()
        assert msg.meta["image_id"] == image_id and msg.meta["split"] == "test"
        assert msg.t["trial.onset_sent"] == 100 + onset
    assert [m.meta["truncated"] for m in responses] == [False, False, True]
    assert [m.meta["decode_index"] for m in responses[:2]] == [6, 9]
    assert responses[0].t["source.acquired"] == 106  # latency from the triggering volume
    # everything that came in went on, in order, besides the responses
    passed = [m for m in outs if m.kind != "response"]
    assert [(m.kind, m.index) for m in passed] == [(m.kind, m.index) for m in _session()]
    status = stage.status()
    assert status["estimated"] == 3 and status["pending"] == 0 and status["run"] == "run-01"


@pytest.mark.parametrize("kind", ["trial", "tr", "run_end"])
def test_a_message_before_its_run_start_is_a_bad_message(kind):
    msg = {
        "trial": _trial(0, 2.0, 70),
        "tr": _tr(0, np.random.default_rng(0)),
        "run_end": Message("run_end", run="run-01"),
    }[kind]
    with pytest.raises(MessageError, match=r"outside its run .*'run_start' must come first"):
        _stage().handle(msg)


def test_a_trial_of_another_run_is_a_bad_message():
    stage = _stage()
    stage.handle(_run_start())
    with pytest.raises(MessageError, match=r"run 'run-02'.*the current run is 'run-01'"):
        stage.handle(_trial(0, 2.0, 70, run="run-02"))


def test_bad_trials_and_trs_are_refused_and_the_run_goes_on():
    stage = _stage()
    rng = np.random.default_rng(1)
    stage.handle(_run_start())
    stage.handle(_trial(0, 2.0, 70))
    with pytest.raises(MessageError, match=r"trial 0 of run 'run-01' dropped: .*already added"):
        stage.handle(_trial(0, 3.0, 70))
    no_onset = Message("trial", run="run-01", index=1, meta={"duration": 1.0})
    with pytest.raises(MessageError, match=r"no \['onset'\] in its meta"):
        stage.handle(no_onset)
    with pytest.raises(MessageError, match=r"TR 0 of run 'run-01' dropped: .*shape \(4,\)"):
        stage.handle(_tr(0, rng, n_voxels=3))
    with pytest.raises(MessageError, match="has no 'raw' buffer"):
        stage.handle(Message("tr", run="run-01", index=0))
    stage.handle(_tr(0, rng))
    with pytest.raises(MessageError, match="TR 0 of run 'run-01' dropped: .*must increase"):
        stage.handle(_tr(0, rng))
    for k in range(1, 7):  # the run goes on: trial 0 is still estimated at its decode point
        out = list(stage.handle(_tr(k, rng)))
    assert [m.index for m in out if m.kind == "response"] == [0]


def test_bad_options_name_the_spec_key():
    with pytest.raises(ConfigError, match="'decode_delay'"):
        EstimateStage.from_spec({"n_voxels": 4, "decode_delay": -1})
    with pytest.raises(ConfigError, match="'n_voxels'"):
        EstimateStage.from_spec({"n_voxels": 0})
