"""The console and viewer widgets fed a synthetic stream (pytest-qt, offscreen)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from gui.console import ConsoleWindow
from gui.control import ControlClient
from gui.model import SessionModel
from gui.viewer import ViewerWindow
from realtime.stages.source import ReplaySource
from rt_base.errors import ConfigError
from rt_wire import transport
from rt_wire.message import Message
from rt_wire.telemetry import TelemetryHub
from tests.gui.synthetic import synthetic_stream, write_tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("gui") / "ds", n_volumes=40, n_images=8)


@pytest.fixture
def model(dataset):
    model = SessionModel()
    model.feed_many(synthetic_stream(n_volumes=30, k=3, ways=6, dataset_path=str(dataset.root)))
    return model


@pytest.fixture
def console(qtbot, model):
    window = ConsoleWindow(model, telemetry_addr="tcp://127.0.0.1:1", confirm_stop=False)
    qtbot.addWidget(window)
    window.show()
    window.refresh()
    return window


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
        _wait(qtbot, window, lambda: not source.running)
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


def test_viewer_shows_the_top1_image_only(qtbot, model, dataset):
    viewer = ViewerWindow(model, feedback="top1")
    qtbot.addWidget(viewer)
    viewer.place(0, windowed=True)
    viewer.refresh()
    r = model.snapshot().retrieval
    assert viewer.shown == ("run-01", r.trial)
    np.testing.assert_array_equal(viewer.image, dataset.stimuli()[int(r.ids[0])])
    assert not viewer.label.pixmap().isNull()
    assert viewer.findChildren(type(viewer.label)) == [viewer.label]  # nothing else on screen


def test_viewer_in_recon_mode_shows_nothing_until_a_reconstruction(qtbot, model):
    viewer = ViewerWindow(model, feedback="recon")
    qtbot.addWidget(viewer)
    viewer.refresh()
    assert viewer.image is None and viewer.label.pixmap().isNull()
    model.feed(
        Message("recon", run="run-01", index=3, buffers={"image": np.full((8, 8, 3), 7, np.uint8)})
    )
    viewer.refresh()
    assert viewer.shown == ("run-01", 3) and viewer.image.max() == 7


def test_viewer_refuses_a_screen_that_does_not_exist(qtbot, model):
    viewer = ViewerWindow(model)
    qtbot.addWidget(viewer)
    with pytest.raises(ConfigError, match="'screen' must be a screen index from 0 to 0, got 5"):
        viewer.place(5)
    with pytest.raises(ConfigError, match="'feedback' must be one of 'top1', 'recon'"):
        ViewerWindow(model, feedback="best")


def test_console_cli_saves_a_screenshot_after_n_trials(qtbot, tmp_path, dataset, base_port):
    from gui.cli import main

    hub_in, hub_out = f"tcp://127.0.0.1:{base_port + 4}", f"tcp://127.0.0.1:{base_port + 5}"
    hub = TelemetryHub(hub_in, hub_out).start()
    stop = threading.Event()

    def publish() -> None:  # the same run over and over (no 'end'), until the console exits
        pub = transport.display_publisher(zmq.Context.instance(), hub_in)
        stream = synthetic_stream(n_volumes=12, dataset_path=str(dataset.root), seq0=1)[:-1]
        while not stop.is_set():
            for msg in stream:
                transport.try_publish(pub, msg)
                time.sleep(0.001)
        pub.close(0)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    out = tmp_path / "shot.png"
    try:
        code = main(["console", "--connect", hub_out, "--screenshot", str(out), "--after-trials", "2",
                     "--timeout", "20", "--size", "1200x800"])  # fmt: skip
    finally:
        stop.set()
        thread.join(5)
        hub.stop()
    assert code == 0
    from PySide6 import QtGui

    image = QtGui.QImage(str(out))
    assert (image.width(), image.height()) == (1200, 800)


def test_console_cli_refuses_bad_options(capsys):
    from gui.cli import main

    assert main(["console", "--connect", "tcp://127.0.0.1:1", "--size", "big"]) == 2
    assert "'size' must be WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["console", "--connect", "nowhere"]) == 2
    assert "'connect' must be a ZMQ endpoint" in capsys.readouterr().err


def test_launch_console_starts_a_child_that_subscribes(base_port):
    from gui.cli import launch_console

    addr = f"tcp://127.0.0.1:{base_port}"
    xpub = zmq.Context.instance().socket(zmq.XPUB)
    xpub.setsockopt(zmq.LINGER, 0)
    xpub.bind(addr)
    proc = launch_console(addr)
    try:
        assert xpub.poll(30_000), "the console process did not subscribe"
        assert xpub.recv()[:1] == b"\x01"  # a subscription from the console's receiver
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        xpub.close(0)


def test_viewer_goes_full_screen_on_the_chosen_screen(qtbot, model):
    viewer = ViewerWindow(model)
    qtbot.addWidget(viewer)
    viewer.place(0)
    assert viewer.isFullScreen()
    viewer.refresh()
    side = viewer.label.pixmap().width()
    assert side == int(0.7 * min(viewer.width(), viewer.height()))


def test_viewer_runs_as_its_own_process(base_port):
    import subprocess
    import sys

    addr = f"tcp://127.0.0.1:{base_port}"
    xpub = zmq.Context.instance().socket(zmq.XPUB)
    xpub.setsockopt(zmq.LINGER, 0)
    xpub.bind(addr)
    cmd = [sys.executable, "-m", "gui.cli", "viewer", "--connect", addr, "--windowed"]
    proc = subprocess.Popen(cmd)
    try:
        topics = set()
        while len(topics) < 5:
            assert xpub.poll(30_000), "the viewer process did not subscribe"
            topics.add(xpub.recv()[1:].decode())
        assert "retrieval" in topics and "volume" not in topics  # only what it shows
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        xpub.close(0)
