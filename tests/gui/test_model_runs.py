"""The session model's run-lifecycle and per-TR handlers (:mod:`gui.model_runs`): run_start,
volume, tr, gap, run_end, end; messages fed one by one, no sockets."""

from __future__ import annotations

import numpy as np

from gui.model import SessionModel
from rt_wire.message import Message
from tests.gui.synthetic import fed_model, synthetic_stream


def test_new_run_resets_the_run_and_a_restarted_source_resets_the_session():
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(n_volumes=20)[:-1])  # without the session's end
    first = model.snapshot().accuracy.scored
    assert first > 0
    # the next run of the same session: per-run views reset, accuracy goes on
    second_run = synthetic_stream(n_volumes=20, run="run-02", seq0=500)
    model.feed(second_run[0])
    snap = model.snapshot()
    assert snap.session.run == "run-02" and snap.volume is None and snap.trace_time.size == 0
    assert snap.trials == [] and snap.accuracy.scored == first
    model.feed_many(second_run[1:])
    assert model.snapshot().accuracy.scored == 2 * first
    # the pipeline restarted (the source's sequence is back at 0): a new session
    model.feed(synthetic_stream(n_volumes=20)[0])
    snap = model.snapshot()
    assert snap.accuracy.scored == 0 and snap.session.runs_started == 1 and not snap.session.ended
    assert any("new session" in e.text for e in snap.log)


def test_late_volume_of_an_earlier_run_is_ignored():
    model = fed_model(n_volumes=10)
    model.feed(synthetic_stream(n_volumes=10, run="run-02", seq0=99)[0])
    model.feed(
        Message(
            "volume", run="run-01", index=9, buffers={"volume": np.ones((10, 12, 8), np.float32)}
        )
    )
    assert model.snapshot().volume is None


def test_lost_volumes_are_counted_but_not_those_an_operator_stop_never_sent():
    model = fed_model(n_volumes=10)
    model.feed(Message("gap", run="run-01", meta={"stage": "preprocess", "lost_volumes": [3, 4]}))
    model.feed(Message("gap", run="run-01", meta={"stage": "decode", "lost_messages": 2}))
    model.feed(Message("gap", run="run-01", meta={"stage": "estimate", "missed_trials": [1]}))
    snap = model.snapshot()
    assert (snap.lost_volumes, snap.lost_messages, snap.missed_trials) == (2, 2, 1)
    assert any("lost volume(s) 3, 4" in e.text and e.level == "error" for e in snap.log)
    model.feed(Message("run_end", run="run-01", meta={"stopped": True, "n_volumes_sent": 6}))
    model.feed(
        Message("gap", run="run-01", meta={"stage": "preprocess", "lost_volumes": [5, 6, 7]})
    )
    snap = model.snapshot()
    assert snap.lost_volumes == 3 and snap.session.stopped  # 5 was lost, 6 and 7 never sent


def test_run_start_reads_its_meta_leniently():
    model = SessionModel(dataset_loader=None)
    meta = {"tr": "1.5", "n_volumes": True, "n_trials": "x", "shape": (4, 4, 4),
            "affine": [[1, 0], [0, 1]], "dataset": "ds", "simulated": False}  # fmt: skip
    model.feed(Message("run_start", seq=3, run="run-07", meta=meta))
    s = model.snapshot().session
    assert (s.run, s.tr, s.n_volumes, s.n_trials, s.shape, s.affine) == (
        "run-07", 1.5, None, None, None, None
    )  # fmt: skip
    assert (s.dataset, s.simulated, s.runs_started) == ("ds", False, 1)
    assert model.snapshot().log[-1].text == "run-07 started (None volumes, TR 1.5 s)"


def test_volumes_keep_the_first_display_range_and_the_highest_tr_index():
    model = SessionModel(dataset_loader=None)
    model.feed(synthetic_stream(n_volumes=4)[0])
    ramp = np.arange(1.0, 1001.0, dtype=np.float32).reshape(10, 10, 10)
    model.feed(Message("volume", run="run-01", index=3, buffers={"volume": ramp}))
    levels = model.snapshot().volume_levels
    assert 0 < levels[0] < levels[1] <= 1000
    model.feed(Message("volume", run="run-01", index=2, buffers={"volume": 2 * ramp}))
    model.feed(Message("volume", run="run-01", index=5, buffers={"volume": ramp[0]}))  # 2D
    snap = model.snapshot()
    assert snap.volume_levels == levels and snap.tr_index == 3 and snap.volume_index == 2


def test_tr_means_are_placed_at_their_time_and_other_runs_ignored():
    model = SessionModel(dataset_loader=None)
    model.feed(Message("run_start", seq=1, run="run-01", meta={"tr": 2.0}))
    model.feed(Message("tr", run="run-01", index=3, buffers={"raw": np.array([1.0, 3.0])}))
    model.feed(Message("tr", run="run-00", index=4, buffers={"raw": np.array([9.0])}))
    model.feed(Message("tr", run="run-01", index=5, buffers={"raw": np.zeros(0)}))
    model.feed(Message("tr", run="run-01", index=None, buffers={"raw": np.ones(2)}))
    snap = model.snapshot()
    assert snap.trace_time.tolist() == [6.0] and snap.trace_mean.tolist() == [2.0]


def test_end_marks_the_session_ended_and_stopped():
    model = fed_model(n_volumes=6)
    assert model.snapshot().session.ended and not model.snapshot().session.stopped
    model.feed(Message("run_start", seq=9, run="run-02"))  # after 'end': a new session
    model.feed(Message("end", seq=10, meta={"stopped": True}))
    snap = model.snapshot()
    assert snap.session.ended and snap.session.stopped and snap.session.runs_started == 1
    assert snap.log[-1].text == "session ended (stopped)"
