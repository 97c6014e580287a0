"""The operator console window fed a synthetic stream (pytest-qt, offscreen): retrieval
thumbnails, reconstruction card, accuracy, status line, health chips, plots, log, and the
replay controls."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from gui.console import ConsoleWindow
from gui.control import ControlClient
from gui.model import SessionModel
from gui.qt import COLORS
from gui.retrieval_panel import recon_placeholder
from realtime.stages.source import ReplaySource
from rt_wire import transport
from rt_wire.message import Message
from tests.gui.synthetic import (
    over_the_wire,
    pixel_at,
    recon_image,
    recon_message,
    recon_status,
    retrieval_message,
    synthetic_stream,
)

RECON_SERIES = ("reconstruct", "acq→recon")


@pytest.fixture
def console(qtbot, model):
    window = ConsoleWindow(model, telemetry_addr="tcp://127.0.0.1:1", confirm_stop=False)
    qtbot.addWidget(window)
    window.show()
    window.refresh()
    return window


@pytest.fixture
def make_console(qtbot):
    def make(recon: str | None, drop: tuple[str, ...] = ()) -> ConsoleWindow:
        """A console fed a 30-TR run (reconstructing in mode ``recon``) less kinds ``drop``."""
        stream = synthetic_stream(n_volumes=30, recon=recon)
        model = SessionModel(dataset_loader=None)
        model.feed_many(over_the_wire([m for m in stream if m.kind not in drop]))
        window = ConsoleWindow(model, confirm_stop=False)
        qtbot.addWidget(window)
        window.show()
        window.refresh()
        return window

    return make


def _colour(pixmap) -> tuple[int, int, int]:
    c = pixmap.toImage().pixelColor(pixmap.width() // 2, pixmap.height() // 2)
    return c.red(), c.green(), c.blue()


def test_top_k_panel_shows_k_thumbnails_with_the_true_one_marked(console, dataset):
    panel = console.retrieval
    r = console.last_snapshot.retrieval
    cards = [c for c in panel.cards if c.isVisibleTo(panel)]
    assert len(cards) == 3 == r.ids.size
    marked = [i for i, c in enumerate(cards) if c.marked]
    assert marked == [0] and r.ids[0] == r.true_id  # the last trial was a hit
    assert cards[0].caption.text().startswith(f"✓ #1 · id {r.true_id}")
    stimuli = dataset.stimuli()
    for card, image_id in zip(cards, r.ids, strict=True):
        assert _colour(card.image.pixmap()) == tuple(int(v) for v in stimuli[image_id, 8, 8])
    assert "rank 1 of 6" in panel.truth.caption.text()
    assert "TOP-3 RETRIEVAL" in panel.title.text() and "trial 4" in panel.title.text()
    # a miss: the true image is second, and only that card is marked
    miss = Message(
        "retrieval", run="run-01", index=9, meta={"image_id": 2, "rank": 2, "ways": 6},
        buffers={"ids": np.array([5, 2, 3]), "scores": np.array([0.9, 0.8, 0.1], np.float32)},
    )  # fmt: skip
    console.model.feed(miss)
    console.refresh()
    assert [c.marked for c in panel.cards[:3]] == [False, True, False]
    assert "rank 2 of 6" in panel.truth.caption.text()


def test_accuracy_status_plots_and_log_show_the_stream(console):
    assert console.accuracy.big.text() == "top-1 60%"
    detail = console.accuracy.detail.text()
    assert "3/5 scored trials" in detail and "chance 16.7% (6-way)" in detail
    status = console.status_label.text()
    for part in ("run-01", "TR 30/30", "trials 6/6 (5 decoded)", "lost volumes 0", "ENDED"):
        assert part in status, status
    assert (
        "gui-tiny" in console.session_label.text() and "SIMULATED" in console.session_label.text()
    )
    assert set(console.health.states.values()) == {"ok"}
    for view in console.slices.views:
        assert view.image.image is not None and view.outline.data is not None
    assert console.slices.views[2].image.image.shape == (10, 12)  # axial: (X, Y)
    x, y = console.signals.trace.getData()
    assert np.isfinite(y).sum() == 30
    assert len(console.signals.bars.opts["x0"]) == 6
    for name, curve in console.latency.curves.items():
        if name not in ("reconstruct", "acq→recon"):  # this session does not reconstruct
            assert curve.getData()[0] is not None and len(curve.getData()[0]) > 0, name
    assert "end-to-end</span> 50.0" in console.latency.summary.text()
    assert "model loaded" in console.log_pane.toPlainText()


def test_reconstruction_area_waits_for_a_recon_image(console):
    recon = console.retrieval.recon
    assert recon.image.pixmap().isNull()
    assert "none: this session does not reconstruct" in recon.image.text()
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 1] = 200
    console.model.feed(Message("recon", run="run-01", index=4, buffers={"image": image}))
    console.refresh()
    assert _colour(recon.image.pixmap()) == (0, 200, 0)
    assert "trial 4" in recon.caption.text()


def test_the_recon_card_shows_the_newest_reconstruction_and_its_blurry_image(make_console):
    window = make_console("full")
    panel = window.retrieval
    pm = panel.recon.image.pixmap()
    assert not pm.isNull() and pm.width() == pm.height() == panel.thumb
    expected = recon_image(4)
    assert pixel_at(pm, 0.2) == tuple(int(v) for v in expected[0, 0])  # left half
    assert pixel_at(pm, 0.8) == tuple(int(v) for v in expected[0, -1])  # right half
    assert panel.recon.caption.text() == "recon · trial 4\nfull · 500 ms"
    assert panel.recon.marked and COLORS["accent"] in panel.recon.styleSheet()
    assert "tiny-random" in panel.recon.toolTip() and "seen image id 4" in panel.recon.toolTip()
    assert panel.blurry.isVisibleTo(panel)
    blurry = panel.blurry.image.pixmap()
    assert blurry.width() == panel.thumb // 2 and pixel_at(blurry, 0.5) == (90, 90, 104)
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
    window.model.feed(retrieval_message(5))
    window.refresh()
    assert panel.recon.caption.text().startswith("recon · trial 4 (1 behind)")
    assert not panel.recon.marked
    window.model.feed(recon_message(5))
    window.refresh()
    assert panel.recon.caption.text() == "recon · trial 5\nlowlevel · 12 ms" and panel.recon.marked
    assert not panel.blurry.isVisibleTo(panel)  # lowlevel mode: no blurry image beside it
    assert pixel_at(panel.recon.image.pixmap(), 0.8) == tuple(int(v) for v in recon_image(5)[0, -1])


def test_a_session_without_recon_says_so_and_shows_no_reconstruct_stage(make_console):
    window = make_console(None)
    panel = window.retrieval
    assert panel.recon.image.pixmap().isNull()
    assert "none: this session does not reconstruct" in panel.recon.image.text()
    assert not panel.blurry.isVisibleTo(panel) and not panel.recon.marked
    assert not window.health.chips["reconstruct"].isVisibleTo(window.health)
    assert "reconstruct" not in window.health.states
    assert "reconstructed" not in window.status_label.text()


def test_the_recon_card_waits_while_a_reconstruct_stage_runs(make_console):
    window = make_console("full", drop=("retrieval", "recon"))  # the stage reports, nothing decoded
    snap = window.last_snapshot
    assert snap.recon_stage is not None and snap.accuracy.decoded == 0
    assert "waiting for reconstructions" in window.retrieval.recon.image.text()
    assert window.health.chips["reconstruct"].isVisibleTo(window.health)
    empty = SessionModel(dataset_loader=None).snapshot()
    assert recon_placeholder(empty) == "waiting for the first trial"


def test_a_reconstruct_backlog_is_a_warning_on_the_status_line(make_console):
    window = make_console("full")
    window.model.feed(recon_status(backlog=3, behind_s=4.2))
    window.refresh()
    status = window.status_label.text()
    assert f"<span style='color:{COLORS['stale']}'>reconstruct: 3 trials behind (4.2 s)</span>" in (
        status
    )
    assert "3 trials behind" in window.health.chips["reconstruct"].toolTip()
    window.model.feed(recon_status(backlog=0))
    window.refresh()
    assert "behind" not in window.status_label.text()


def test_controls_are_disabled_without_a_control_channel(console):
    for w in (console.pause_button, console.speed_box, console.stop_button):
        assert not w.isEnabled()
    assert console.send("pause") is None
    assert "no control channel" in console.model.snapshot().log[-1].text


def _wait(qtbot, window, pred, timeout=5000):
    def check():
        window.refresh()
        assert pred()

    qtbot.waitUntil(check, timeout=timeout)


def test_console_controls_pause_resume_speed_and_stop_the_source(qtbot, dataset, base_port):
    data_addr, control_addr = f"tcp://127.0.0.1:{base_port}", f"tcp://127.0.0.1:{base_port + 1}"
    sink = transport.data_receiver(zmq.Context.instance(), data_addr)
    source = ReplaySource(
        str(dataset.root), speed=10.0, out_addr=data_addr, control_addr=control_addr
    )
    source.start()
    window = ConsoleWindow(
        SessionModel(dataset_loader=None), control=ControlClient(control_addr), confirm_stop=False
    )
    qtbot.addWidget(window)
    try:
        assert window.pause_button.isEnabled()
        window.pause_button.click()
        _wait(qtbot, window, lambda: source.pacer.paused and not window._pending)
        assert window.pause_button.text() == "Resume"
        window.pause_button.click()
        _wait(qtbot, window, lambda: not source.pacer.paused and not window._pending)
        assert window.pause_button.text() == "Pause"
        index = window.speed_box.findData(4.0)
        window.speed_box.setCurrentIndex(index)
        window.speed_box.activated.emit(index)
        _wait(qtbot, window, lambda: source.pacer.speed == 4.0)
        window.stop_button.click()
        # the source ends, and the console has collected its reply to 'stop'
        _wait(qtbot, window, lambda: not source.running and not window._pending)
        log = window.log_pane.toPlainText()
        assert (
            "pause: ok" in log and "resume: ok" in log and "speed: ok" in log and "stop: ok" in log
        )
        kinds = []
        while sink.poll(100):
            kinds.append(transport.recv(sink).kind)
        assert kinds[-2:] == ["run_end", "end"]
    finally:
        window.close()
        if source.running:
            source.stop()
        sink.close(0)


def test_console_logs_a_control_error(qtbot, base_port):
    client = ControlClient(f"tcp://127.0.0.1:{base_port}", timeout_s=0.2)
    window = ConsoleWindow(SessionModel(dataset_loader=None), control=client, confirm_stop=False)
    qtbot.addWidget(window)
    window.send("pause")
    _wait(qtbot, window, lambda: "pause failed" in window.log_pane.toPlainText())
    window.close()
