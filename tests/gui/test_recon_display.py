"""Reconstructions in the console and the viewer: the model's record of ``recon`` messages and
of the (optional) reconstruct stage's status, the reconstruction card, the backlog warning, and
the participant viewer's ``feedback="recon"``, down to a real reconstruct stage's messages."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import zmq

from gui.console import ConsoleWindow
from gui.model import SessionModel
from gui.panels import recon_placeholder
from gui.qt import COLORS
from gui.receiver import Receiver, channels
from gui.viewer import ViewerWindow
from rt_wire import transport
from rt_wire.message import KINDS, Message, decode, encode
from rt_wire.telemetry import TelemetryHub
from tests.gui.synthetic import RECON_COMPUTE_S, blurry_image, recon_image, synthetic_stream

RECON_SERIES = ("reconstruct", "acq→recon")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _over_the_wire(msgs: list[Message]) -> list[Message]:
    """The messages as a receiver gets them: encoded, and decoded into read-only views."""
    return [decode([bytes(f) for f in encode(m)]) for m in msgs]


def _fed(recon: str | None, **kwargs) -> SessionModel:
    model = SessionModel(dataset_loader=None, **kwargs)
    model.feed_many(_over_the_wire(synthetic_stream(n_volumes=30, recon=recon)))
    return model


def _status(backlog: int = 0, behind_s: float | None = None, **meta) -> Message:
    return Message(
        "status",
        meta={
            "stage": "reconstruct",
            "final": False,
            "errors": 0,
            "mode": "full",
            "backlog": backlog,
            "behind_s": behind_s,
            "reconstructed": 2,
            "compute_ms": 812.0,
            **meta,
        },
    )


def _recon(trial: int, run: str = "run-01", **meta) -> Message:
    return Message(
        "recon",
        run=run,
        index=trial,
        meta={"mode": "lowlevel", "compute_ms": 12.5, "backlog": 0, **meta},
        buffers={"image": recon_image(trial)},
    )


def _retrieval(trial: int, run: str = "run-01") -> Message:
    return Message(
        "retrieval",
        run=run,
        index=trial,
        meta={"image_id": 1, "rank": 1, "ways": 6},
        buffers={"ids": np.array([1, 2]), "scores": np.array([0.9, 0.1], np.float32)},
    )


# -- the model -------------------------------------------------------------------------------
def test_a_full_mode_session_records_each_reconstruction_and_the_stage():
    snap = _fed("full").snapshot()
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
    rec = _fed("lowlevel").snapshot().recon
    assert rec.mode == "lowlevel" and rec.blurry is None and rec.generator is None
    snap = _fed(None).snapshot()
    assert snap.recon is None and snap.recon_stage is None
    assert "reconstruct" not in snap.health
    assert not any(t.reconstructed for t in snap.trials)
    for name in RECON_SERIES:
        assert snap.latency[name][0].size == 0


def test_a_reconstruction_is_current_only_while_its_trial_is_the_retrieval_shown():
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(n_volumes=30)[:-2])  # decoded trials 0..4, no recon
    model.feed(_recon(4))
    assert model.snapshot().recon.current
    model.feed(_retrieval(5))  # decode goes on; the reconstruction of trial 5 is not there yet
    snap = model.snapshot()
    assert snap.recon.trial == 4 and not snap.recon.current
    model.feed(_recon(5))
    assert model.snapshot().recon.current
    model.feed(_recon(3, run="run-00"))  # a late one of another run: shown but not current
    assert not model.snapshot().recon.current


def test_malformed_reconstructions_are_dropped_or_trimmed_with_a_warning():
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(n_volumes=12)[:-2])
    model.feed(
        Message("recon", run="run-01", index=1, buffers={"image": np.zeros((8, 8), np.float32)})
    )
    assert model.snapshot().recon is None
    assert (
        "needs buffer 'image' (H, W, 3) uint8, got float32 (8, 8)" in model.snapshot().log[-1].text
    )
    msg = _recon(1, mode="full")
    msg.buffers["blurry"] = np.zeros((4, 4, 4), np.uint8)
    model.feed(msg)
    snap = model.snapshot()
    assert snap.recon.trial == 1 and snap.recon.blurry is None
    assert "'blurry' image of trial 1" in snap.log[-1].text and snap.log[-1].level == "warning"


def test_a_late_reconstruction_does_not_bring_back_a_trial_of_an_earlier_run():
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(n_volumes=12, run="run-01")[:-2])
    model.feed_many(synthetic_stream(n_volumes=12, run="run-02", seq0=100)[:-2])
    model.feed(synthetic_stream(n_volumes=12, run="run-03", seq0=200)[0])
    model.feed(_recon(0, run="run-01"))  # run-01's trials were dropped at run-03's start
    assert model.snapshot().recon.run == "run-01"
    assert ("run-01", 0) not in model._trials


def test_the_reconstruct_stage_backlog_shows_in_its_health():
    model = SessionModel(dataset_loader=None)
    model.feed(_status(backlog=3, behind_s=4.24))
    snap = model.snapshot()
    assert snap.recon_stage.behind == "3 trials behind (4.2 s)"
    assert snap.health["reconstruct"].detail == "3 trials behind (4.2 s)"
    model.feed(_status(backlog=1, behind_s=None, errors=2))
    snap = model.snapshot()
    assert snap.health["reconstruct"].detail == "2 error(s), 1 trial behind"
    model.feed(_status(backlog=0, errors=2))
    assert model.snapshot().recon_stage.behind == ""


def test_the_optional_stage_is_forgotten_by_a_new_session_unless_it_still_reports():
    clock = FakeClock()
    model = SessionModel(dataset_loader=None, clock=clock)
    model.feed_many(synthetic_stream(n_volumes=10, recon="lowlevel"))
    assert model.snapshot().recon_stage is not None
    model.feed(_status(final=True))  # the session's stages exit
    model.feed(synthetic_stream(n_volumes=10)[0])  # a new session, without a reconstruct stage
    snap = model.snapshot()
    assert snap.recon_stage is None and "reconstruct" not in snap.health and snap.recon is None
    # the next session's reconstruct stage reported just before its source started
    model.feed(_status())
    clock.now += 1.0
    model.feed(synthetic_stream(n_volumes=10, recon="lowlevel")[0])
    assert model.snapshot().recon_stage is not None
    # an old session's stage that went silent is forgotten too
    clock.now += 60.0
    model.feed(synthetic_stream(n_volumes=10)[0])
    assert model.snapshot().recon_stage is None


def test_the_receiver_subscribes_to_reconstructions():
    (small, _), (bulky, _) = channels(("",))
    assert "recon" in small and set(small) | set(bulky) == set(KINDS)


# -- the console -----------------------------------------------------------------------------
@pytest.fixture
def console(qtbot):
    def make(recon: str | None, drop: tuple[str, ...] = ()) -> ConsoleWindow:
        """A console fed a 30-TR run (reconstructing in mode ``recon``) less kinds ``drop``."""
        stream = synthetic_stream(n_volumes=30, recon=recon)
        model = SessionModel(dataset_loader=None)
        model.feed_many(_over_the_wire([m for m in stream if m.kind not in drop]))
        window = ConsoleWindow(model, confirm_stop=False)
        qtbot.addWidget(window)
        window.show()
        window.refresh()
        return window

    return make


def _pixel(pm, fx: float, fy: float = 0.5) -> tuple[int, int, int]:
    c = pm.toImage().pixelColor(int(fx * (pm.width() - 1)), int(fy * (pm.height() - 1)))
    return c.red(), c.green(), c.blue()


def test_the_recon_card_shows_the_newest_reconstruction_and_its_blurry_image(console):
    window = console("full")
    panel = window.retrieval
    pm = panel.recon.image.pixmap()
    assert not pm.isNull() and pm.width() == pm.height() == panel.thumb
    expected = recon_image(4)
    assert _pixel(pm, 0.2) == tuple(int(v) for v in expected[0, 0])  # left half
    assert _pixel(pm, 0.8) == tuple(int(v) for v in expected[0, -1])  # right half
    assert panel.recon.caption.text() == "recon · trial 4\nfull · 500 ms"
    assert panel.recon.marked and COLORS["accent"] in panel.recon.styleSheet()
    assert "tiny-random" in panel.recon.toolTip() and "seen image id 4" in panel.recon.toolTip()
    assert panel.blurry.isVisibleTo(panel)
    blurry = panel.blurry.image.pixmap()
    assert blurry.width() == panel.thumb // 2 and _pixel(blurry, 0.5) == (90, 90, 104)
    status = window.status_label.text()
    assert "trials 6/6 (5 decoded, 5 reconstructed)" in status and "behind" not in status
    chip = window.health.chips["reconstruct"]
    assert chip.isVisibleTo(window.health) and window.health.states["reconstruct"] == "ok"
    for name in RECON_SERIES:
        assert len(window.latency.curves[name].getData()[0]) == 5, name
    assert "reconstruct</span> 500.0" in window.latency.summary.text()
    x, y = window.signals.recons.getData()
    np.testing.assert_allclose(x, [5, 10, 15, 20, 25])  # at the decode points
    # the next trial is decoded before it is reconstructed: the card says how far behind
    window.model.feed(_retrieval(5))
    window.refresh()
    assert panel.recon.caption.text().startswith("recon · trial 4 (1 behind)")
    assert not panel.recon.marked
    window.model.feed(_recon(5))
    window.refresh()
    assert panel.recon.caption.text() == "recon · trial 5\nlowlevel · 12 ms" and panel.recon.marked
    assert not panel.blurry.isVisibleTo(panel)  # lowlevel mode: no blurry image beside it
    assert _pixel(panel.recon.image.pixmap(), 0.8) == tuple(int(v) for v in recon_image(5)[0, -1])


def test_a_session_without_recon_says_so_and_shows_no_reconstruct_stage(console):
    window = console(None)
    panel = window.retrieval
    assert panel.recon.image.pixmap().isNull()
    assert "none: this session does not reconstruct" in panel.recon.image.text()
    assert not panel.blurry.isVisibleTo(panel) and not panel.recon.marked
    assert not window.health.chips["reconstruct"].isVisibleTo(window.health)
    assert "reconstruct" not in window.health.states
    assert "reconstructed" not in window.status_label.text()


def test_the_recon_card_waits_while_a_reconstruct_stage_runs(console):
    window = console("full", drop=("retrieval", "recon"))  # the stage reports, nothing decoded
    snap = window.last_snapshot
    assert snap.recon_stage is not None and snap.accuracy.decoded == 0
    assert "waiting for reconstructions" in window.retrieval.recon.image.text()
    assert window.health.chips["reconstruct"].isVisibleTo(window.health)
    empty = SessionModel(dataset_loader=None).snapshot()
    assert recon_placeholder(empty) == "waiting for the first trial"


def test_a_reconstruct_backlog_is_a_warning_on_the_status_line(console):
    window = console("full")
    window.model.feed(_status(backlog=3, behind_s=4.2))
    window.refresh()
    status = window.status_label.text()
    assert f"<span style='color:{COLORS['stale']}'>reconstruct: 3 trials behind (4.2 s)</span>" in (
        status
    )
    assert "3 trials behind" in window.health.chips["reconstruct"].toolTip()
    window.model.feed(_status(backlog=0))
    window.refresh()
    assert "behind" not in window.status_label.text()


# -- the viewer ------------------------------------------------------------------------------
def test_the_viewer_shows_each_trials_reconstruction(qtbot):
    model = _fed("full")
    viewer = ViewerWindow(model, feedback="recon")
    qtbot.addWidget(viewer)
    viewer.place(0, windowed=True)
    viewer.refresh()
    assert viewer.shown == ("run-01", 4)
    np.testing.assert_array_equal(viewer.image, recon_image(4))  # the image, not the blurry one
    pm = viewer.label.pixmap()
    assert pm.width() == int(0.7 * min(viewer.width(), viewer.height()))
    assert _pixel(pm, 0.2) == tuple(int(v) for v in recon_image(4)[0, 0])
    assert _pixel(pm, 0.8) == tuple(int(v) for v in recon_image(4)[0, -1])
    model.feed_many(_over_the_wire([_retrieval(5)]))
    viewer.refresh()
    assert viewer.shown == ("run-01", 4)  # a retrieval is not the feedback in recon mode
    model.feed_many(_over_the_wire([_recon(5)]))
    viewer.refresh()
    assert viewer.shown == ("run-01", 5)
    np.testing.assert_array_equal(viewer.image, recon_image(5))
    assert not viewer.warned_no_recon


def test_the_viewer_warns_when_it_waits_for_reconstructions_that_never_come(qtbot, caplog):
    viewer = ViewerWindow(_fed(None), feedback="recon")
    qtbot.addWidget(viewer)
    with caplog.at_level(logging.WARNING, logger="mindeye_rt.viewer"):
        viewer.refresh()
        viewer.refresh()
    assert viewer.image is None and viewer.warned_no_recon
    warnings = [r.getMessage() for r in caplog.records if r.name == "mindeye_rt.viewer"]
    assert len(warnings) == 1 and "no reconstruct stage reports" in warnings[0]


# -- a real reconstruct stage ----------------------------------------------------------------
class FakeReconstructor:
    """Draws :func:`recon_image` of trial ``number - 1`` (and its blurry image) at once."""

    def __init__(self, mode: str) -> None:
        from mindeye_models.recon import ReconOptions

        self.options = ReconOptions(mode=mode)

    def __call__(self, tokens, response, number: int) -> dict:
        out = {"image": recon_image(number - 1), "ms": {"total": 1.0}}
        if self.options.mode == "full":
            out["blurry"] = blurry_image(number - 1)
        return out


def _until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_real_reconstruct_stage_reaches_the_console_model_and_the_viewer(qtbot, base_port):
    from realtime.stages.reconstruct import ReconstructStage

    data_in = f"tcp://127.0.0.1:{base_port}"
    hub_in, hub_out = f"tcp://127.0.0.1:{base_port + 4}", f"tcp://127.0.0.1:{base_port + 5}"
    hub = TelemetryHub(hub_in, hub_out).start()
    model = SessionModel(dataset_loader=None)
    stage = ReconstructStage(
        FakeReconstructor("full"), generator="fake-unclip", in_addr=data_in, telemetry_addr=hub_in
    )
    push = transport.data_sender(zmq.Context.instance(), data_in)
    try:
        with Receiver(hub_out, model):
            stage.start()
            _until(lambda: model.snapshot().recon_stage is not None)  # its status (every 1 s)
            now = time.time()
            latent = Message(
                "latent",
                seq=0,
                run="run-01",
                index=0,
                meta={"image_id": 3, "split": "test", "repetition": 1, "rank": 2},
                t={"source.acquired": now - 0.5, "decode.done": now},
                buffers={
                    "tokens": np.zeros((4, 8), np.float32),
                    "response": np.zeros(10, np.float32),
                },
            )
            transport.send(push, latent)
            _until(lambda: model.snapshot().recon is not None)
            snap = model.snapshot()
    finally:
        push.close(0)
        if stage.running:
            stage.stop()
        hub.stop()
    rec = snap.recon
    assert (rec.run, rec.trial, rec.mode, rec.generator, rec.image_id) == (
        "run-01",
        0,
        "full",
        "fake-unclip",
        3,
    )
    np.testing.assert_array_equal(rec.image, recon_image(0))
    np.testing.assert_array_equal(rec.blurry, blurry_image(0))
    assert rec.compute_ms is not None and rec.compute_ms >= 0 and rec.backlog == 0
    assert snap.recon_stage.mode == "full"
    assert snap.latency["reconstruct"][1].size == 1 and snap.latency["acq→recon"][1] >= 500
    viewer = ViewerWindow(model, feedback="recon")
    qtbot.addWidget(viewer)
    viewer.refresh()
    assert viewer.shown == ("run-01", 0)
    np.testing.assert_array_equal(viewer.image, recon_image(0))
