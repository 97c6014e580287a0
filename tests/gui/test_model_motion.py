"""The session model's head motion: read from ``tr`` messages, per run, counted over the FD
threshold, warned in the log; absent when the session reports none."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gui.model import SessionModel
from gui.model_motion import read_motion
from rt_base.errors import ConfigError
from rt_wire.message import Message
from tests.gui.synthetic import motion_series, over_the_wire, synthetic_stream

SPIKES = (10, 20)


def _model(end: bool = True, **options) -> SessionModel:
    """A model fed a 30-TR run with head motion (and the session's ``end`` unless not)."""
    model = SessionModel(dataset_loader=None, **options)
    stream = synthetic_stream(n_volumes=30, motion="estimate", motion_spikes=SPIKES)
    model.feed_many(over_the_wire(stream if end else stream[:-1]))
    return model


def test_read_motion_takes_six_finite_parameters_and_reads_the_rest_leniently():
    good = {"params": [0.1, -0.2, 0.3, 0.01, 0.02, -0.03], "fd": 0.4, "mode": "correct"}
    assert read_motion({"motion": good}) == (good["params"], 0.4, "correct")
    params, fd, mode = read_motion({"motion": {"params": good["params"], "fd": "x"}})
    assert math.isnan(fd) and mode is None
    for bad in ([0.1] * 5, [0.1] * 5 + ["a"], [0.1] * 5 + [float("nan")], "0 0 0 0 0 0"):
        assert read_motion({"motion": {"params": bad, "fd": 0.1}}) is None
    assert read_motion({}) is None and read_motion({"motion": [1, 2]}) is None


def test_the_run_s_motion_trace_and_the_trs_over_the_threshold():
    model = _model()
    m = model.snapshot().motion
    expected = motion_series(30, SPIKES)
    np.testing.assert_allclose(m.params, expected)
    np.testing.assert_array_equal(m.index, np.arange(30))
    np.testing.assert_allclose(m.time, np.arange(30) * 1.0)
    assert m.mode == "estimate" and m.threshold == 0.5
    over = np.flatnonzero(m.fd > 0.5)
    np.testing.assert_array_equal(over, SPIKES)  # a step moves one TR, not its neighbours
    assert m.over == {"run-01": 2} and m.last_over[:2] == ("run-01", 20)
    warnings = [e.text for e in model.snapshot().log if e.level == "warning"]
    assert warnings == [
        f"head motion: FD {m.fd[i]:.2f} mm at run-01 TR {i + 1} > 0.5 mm" for i in SPIKES
    ]


def test_the_threshold_is_the_model_s_and_is_checked():
    m = _model(fd_threshold=5.0).snapshot().motion
    assert m.over == {"run-01": 0} and m.last_over is None and m.threshold == 5.0
    with pytest.raises(ConfigError, match="'fd_threshold' must be a positive number of mm"):
        SessionModel(fd_threshold=0)


def test_no_motion_reported_gives_none_and_a_new_run_starts_a_new_trace():
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(n_volumes=12))
    assert model.snapshot().motion is None
    model = _model(end=False)
    run2 = synthetic_stream(n_volumes=8, run="run-02", seq0=500, motion="correct")
    model.feed_many(run2[:3])  # run_start and the first TR's messages
    m = model.snapshot().motion
    assert m.mode == "correct" and m.index.tolist() == [0]
    assert m.over == {"run-01": 2, "run-02": 0}  # per run, over the session
    model.feed(Message("tr", run="run-01", index=29, meta={"motion": {"params": [9] * 6}}))
    assert model.snapshot().motion.index.tolist() == [0]  # a late TR of an earlier run
