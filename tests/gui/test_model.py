"""The console's Qt-free session model fed whole synthetic telemetry streams: what
:meth:`SessionModel.snapshot` shows, message dispatch, latency spans, bounded memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gui.model import HANDLERS, SessionModel
from rt_base.names import LIVE_SPANS
from rt_wire.message import KINDS, Message
from tests.gui.synthetic import (
    RECON_COMPUTE_S,
    blurry_image,
    fed_model,
    recon_image,
    recon_message,
    recon_session,
    retrieval_message,
    synthetic_stream,
)

RECON_SERIES = ("reconstruct", "acq→recon")


def test_a_run_fills_every_view():
    snap = fed_model(n_volumes=30, trial_every=5, decode_delay=4, k=3, ways=6).snapshot()
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


def test_a_full_mode_session_records_each_reconstruction_and_the_stage():
    snap = recon_session("full").snapshot()
    rec = snap.recon
    assert (rec.run, rec.trial, rec.mode, rec.generator, rec.backlog) == (
        "run-01",
        4,
        "full",
        "tiny-random",
        0,
    )
    np.testing.assert_array_equal(rec.image, recon_image(4))
    np.testing.assert_array_equal(rec.blurry, blurry_image(4))
    assert rec.image.flags.writeable and rec.blurry.flags.writeable  # copies, not frame views
    assert rec.compute_ms == pytest.approx(500.0) and rec.image_id == 4 % 6
    assert rec.current  # the retrieval shown is of the same trial
    # every decoded trial got its reconstruction; the last one is not decoded
    assert [t.reconstructed for t in snap.trials] == [True] * 5 + [False]
    stage = snap.recon_stage
    assert (stage.state, stage.mode, stage.backlog, stage.reconstructed) == ("ok", "full", 0, 5)
    assert stage.compute_ms == pytest.approx(500.0) and stage.behind == ""
    assert snap.health["reconstruct"].state == "ok" and snap.health["reconstruct"].detail == ""
    assert list(snap.health) == [
        "source",
        "preprocess",
        "estimate",
        "decode",
        "reconstruct",
        "recorder",
    ]
    t, ms = snap.latency["reconstruct"]
    assert t.size == 5
    np.testing.assert_allclose(ms, 1e3 * RECON_COMPUTE_S["full"], atol=0.01)
    np.testing.assert_allclose(snap.latency["acq→recon"][1], 560.0, atol=0.01)


def test_a_lowlevel_session_has_no_blurry_image_and_one_without_recon_has_no_stage():
    rec = recon_session("lowlevel").snapshot().recon
    assert rec.mode == "lowlevel" and rec.blurry is None and rec.generator is None
    snap = recon_session(None).snapshot()
    assert snap.recon is None and snap.recon_stage is None
    assert "reconstruct" not in snap.health
    assert not any(t.reconstructed for t in snap.trials)
    for name in RECON_SERIES:
        assert snap.latency[name][0].size == 0


def test_a_reconstruction_is_current_only_while_its_trial_is_the_retrieval_shown():
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(n_volumes=30)[:-2])  # decoded trials 0..4, no recon
    model.feed(recon_message(4))
    assert model.snapshot().recon.current
    # decode goes on; the reconstruction of trial 5 is not there yet
    model.feed(retrieval_message(5))
    snap = model.snapshot()
    assert snap.recon.trial == 4 and not snap.recon.current
    model.feed(recon_message(5))
    assert model.snapshot().recon.current
    model.feed(recon_message(3, run="run-00"))  # a late one of another run: shown but not current
    assert not model.snapshot().recon.current


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


def test_every_handled_kind_is_a_wire_kind_and_other_kinds_are_ignored():
    assert set(HANDLERS) <= set(KINDS)
    model = SessionModel(dataset_loader=None)
    before = model.snapshot().versions
    for kind in sorted(set(KINDS) - set(HANDLERS)):
        model.feed(Message(kind, run="run-01", index=0))
    snap = model.snapshot()
    assert snap.versions == before and snap.telemetry_age_s is not None


def test_a_latency_is_measured_on_its_own_kind_only_when_both_stamps_are_there():
    model = SessionModel(dataset_loader=None)
    stamps = {"preprocess.received": 1.0, "preprocess.done": 1.25}
    model.feed(Message("tr", run="run-01", index=0, t=stamps))
    model.feed(Message("volume", run="run-01", index=0, t=stamps))  # not the span's kind
    model.feed(Message("tr", run="run-01", index=1, t={"preprocess.received": 2.0}))
    latency = model.snapshot().latency
    assert set(latency) == set(LIVE_SPANS)
    np.testing.assert_allclose(latency["preprocess"][1], [250.0])
    assert all(ms.size == 0 for name, (_, ms) in latency.items() if name != "preprocess")


def test_feed_many_is_feed_in_order():
    stream = synthetic_stream(n_volumes=12, recon="full")
    one, many = SessionModel(dataset_loader=None), SessionModel(dataset_loader=None)
    for msg in stream:
        one.feed(msg)
    many.feed_many(stream)
    a, b = one.snapshot(), many.snapshot()
    assert a.versions == b.versions and a.trials == b.trials and a.accuracy == b.accuracy
    assert [e.text for e in a.log] == [e.text for e in b.log]


def test_the_model_imports_no_qt():
    code = (
        "import sys, gui.model, gui.receiver, gui.control\n"
        "assert not any(m.split('.')[0] in ('PySide6', 'pyqtgraph') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
