"""The console's Qt-free session model, fed a synthetic telemetry stream."""

from __future__ import annotations

import numpy as np
import pytest

from gui.model import SessionModel
from gui.receiver import skip_to_latest
from rt_base.errors import ConfigError
from rt_wire.message import Message
from tests.gui.synthetic import synthetic_stream, tiny_mask, write_tiny_dataset


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fed(**kwargs) -> SessionModel:
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(**kwargs))
    return model


def test_a_run_fills_every_view():
    snap = _fed(n_volumes=30, trial_every=5, decode_delay=4, k=3, ways=6).snapshot()
    s = snap.session
    assert (s.run, s.tr, s.n_volumes, s.dataset, s.simulated) == (
        "run-01",
        1.0,
        30,
        "gui-tiny",
        True,
    )
    assert s.ended and not s.stopped
    assert snap.volume.shape == (10, 12, 8) and snap.volume_index == 29 == snap.tr_index
    assert abs(float(snap.volume.mean()) - 1029) < 0.1  # the newest volume (index-stamped)
    np.testing.assert_allclose(snap.trace_time, np.arange(30.0))
    np.testing.assert_allclose(snap.trace_mean, 1000 + np.arange(30.0), atol=0.05)
    # trials every 5 TRs from TR 1; those whose decode point (4 TRs later) is in the run decode
    assert [t.onset for t in snap.trials] == [1, 6, 11, 16, 21, 26]
    assert [t.decoded for t in snap.trials] == [True] * 5 + [False]
    assert [t.decode_time for t in snap.trials[:5]] == [5, 10, 15, 20, 25]
    assert [t.correct for t in snap.trials] == [True, False, True, False, True, None]
    r = snap.retrieval
    assert r.trial == 4 and r.ids.tolist()[0] == r.true_id and r.rank == 1 and r.ways == 6
    a = snap.accuracy
    assert (a.scored, a.top1, a.topk, a.k, a.ways) == (5, 3, 5, 3, 6)
    assert a.top1_rate == pytest.approx(0.6) and a.chance == pytest.approx(1 / 6)
    np.testing.assert_allclose(snap.accuracy_history, [1, 0.5, 2 / 3, 0.5, 0.6])
    for name, (t, ms) in snap.latency.items():
        if name in ("reconstruct", "acq→recon"):  # this session does not reconstruct
            assert t.size == ms.size == 0, name
        else:
            assert t.size == ms.size > 0, name
    np.testing.assert_allclose(snap.latency["decode"][1], 29.0, atol=0.01)
    np.testing.assert_allclose(snap.latency["end-to-end"][1], 50.0, atol=0.01)
    assert {h.state for h in snap.health.values()} == {"ok"}
    assert "reconstruct" not in snap.health and snap.recon_stage is None  # no such stage
    texts = [e.text for e in snap.log]
    assert "model loaded" in texts and "session ended" in texts
    assert snap.lost_volumes == 0


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
    model = _fed(n_volumes=10)
    model.feed(synthetic_stream(n_volumes=10, run="run-02", seq0=99)[0])
    model.feed(
        Message(
            "volume", run="run-01", index=9, buffers={"volume": np.ones((10, 12, 8), np.float32)}
        )
    )
    assert model.snapshot().volume is None


def test_lost_volumes_are_counted_but_not_those_an_operator_stop_never_sent():
    model = _fed(n_volumes=10)
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


def test_stage_health_from_status_recency_errors_and_final_status():
    clock = FakeClock()
    model = SessionModel(dataset_loader=None, clock=clock)
    assert model.health()["decode"].state == "waiting"
    for stage in ("source", "decode", "recorder"):
        model.feed(Message("status", meta={"stage": stage, "errors": 0, "final": False}))
    clock.now += 2.0
    model.feed(Message("status", meta={"stage": "decode", "errors": 1, "final": False}))
    model.feed(Message("status", meta={"stage": "recorder", "errors": 0, "final": True}))
    clock.now += 2.0
    health = model.health()
    assert health["source"].state == "stale" and "no status for 4 s" in health["source"].detail
    assert health["decode"].state == "error" and health["decode"].detail == "1 error(s)"
    assert health["recorder"].state == "stopped"
    assert health["estimate"].state == "waiting"
    clock.now += 20.0  # errors are shown for a while, then the stage is judged by recency
    model.feed(Message("status", meta={"stage": "decode", "errors": 1, "final": False}))
    assert model.health()["decode"].state == "ok"
    model.feed(Message("log", meta={"stage": "decode", "level": "error", "text": "boom"}))
    assert model.health()["decode"].state == "error"


def test_memory_stays_bounded_over_a_long_session():
    model = SessionModel(
        dataset_loader=None, trace_len=50, trial_len=20, latency_len=30, log_len=40, history_len=25
    )
    model.feed(synthetic_stream(n_volumes=2)[0])
    raw = np.ones(4, np.float32)
    for i in range(5000):
        t = {"preprocess.received": 0.0, "preprocess.done": 0.001}
        model.feed(Message("tr", run="run-01", index=i, t=t, buffers={"raw": raw, "z": raw}))
        model.feed(
            Message("trial", run="run-01", index=i, meta={"onset": i, "duration": 1, "image_id": 1})
        )
        model.feed(
            Message(
                "retrieval",
                run="run-01",
                index=i,
                meta={"image_id": 1, "rank": 1, "ways": 4},
                buffers={"ids": np.array([1]), "scores": np.array([0.5], np.float32)},
            )
        )
        model.feed(Message("log", meta={"stage": "x", "level": "info", "text": str(i)}))
    snap = model.snapshot()
    assert snap.trace_time.size == 50 and snap.trace_time[-1] == 4999
    assert len(snap.trials) == 20 and snap.trials[-1].index == 4999
    assert snap.latency["preprocess"][0].size == 30
    assert len(snap.log) == 40 and snap.log[-1].text == "4999"
    assert snap.accuracy_history.size == 25 and snap.accuracy.scored == 5000


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="'trace_len' must be an integer >= 1, got 0"):
        SessionModel(trace_len=0)


def test_dataset_gives_roi_outline_slices_and_thumbnails(tmp_path):
    ds = write_tiny_dataset(tmp_path / "ds", n_volumes=12)
    model = SessionModel()
    model.feed_many(synthetic_stream(n_volumes=12, dataset_path=str(ds.root)))
    snap = model.snapshot()
    np.testing.assert_array_equal(snap.roi_mask, tiny_mask())
    x, y, z = snap.slice_pos
    assert snap.roi_mask[x].any() and snap.roi_mask[:, y].any() and snap.roi_mask[:, :, z].any()
    assert snap.stimuli.shape == (8, 16, 16, 3)
    model.feed(
        Message("run_start", seq=0, run="run-01", meta={"dataset_path": str(tmp_path / "nope")})
    )
    assert any("cannot open dataset" in e.text for e in model.snapshot().log)


def test_a_console_that_joins_late_learns_the_dataset_from_the_source_status(tmp_path):
    ds = write_tiny_dataset(tmp_path / "ds", n_volumes=12)
    model = SessionModel()
    model.feed(
        Message(
            "status",
            meta={"stage": "source", "dataset_path": str(ds.root), "paused": True, "speed": 2.0},
        )
    )
    snap = model.snapshot()
    assert snap.stimuli is not None and snap.session.paused is True and snap.session.speed == 2.0


def test_reconstruction_is_kept_when_one_arrives():
    model = _fed(n_volumes=10)
    assert model.snapshot().recon is None
    image = np.zeros((8, 8, 3), np.uint8)
    model.feed(Message("recon", run="run-01", index=1, buffers={"image": image}))
    rec = model.snapshot().recon
    assert rec.trial == 1 and rec.image.shape == (8, 8, 3)
    model.feed(
        Message("recon", run="run-01", index=2, buffers={"image": np.zeros((8, 8), np.float32)})
    )
    assert model.snapshot().recon.trial == 1


def test_skip_to_latest_keeps_the_newest_volume_of_each_run_and_everything_else():
    vol = {"volume": np.zeros((2, 2, 2), np.float32)}
    batch = [
        Message("volume", run="a", index=0, buffers=vol),
        Message("tr", run="a", index=0),
        Message("volume", run="a", index=1, buffers=vol),
        Message("run_start", run="b"),
        Message("volume", run="b", index=0, buffers=vol),
        Message("tr", run="b", index=0),
        Message("volume", run="b", index=1, buffers=vol),
    ]
    kept = skip_to_latest(batch)
    assert [(m.kind, m.run, m.index) for m in kept] == [
        ("tr", "a", 0),
        ("volume", "a", 1),
        ("run_start", "b", None),
        ("tr", "b", 0),
        ("volume", "b", 1),
    ]
