"""``mindeye-rt console`` and ``viewer`` (gui.cli): the screenshot run, bad options, and the
console and viewer as processes of their own."""

from __future__ import annotations

import threading
import time

import zmq

from rt_wire import transport
from rt_wire.telemetry import TelemetryHub
from tests.gui.synthetic import synthetic_stream


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
    for bad, rule in (
        ("-1", "positive number of mm"),
        ("0", "positive"),
        ("80", "number of mm <= 20"),
    ):
        assert main(["console", "--connect", "tcp://127.0.0.1:1", "--fd-threshold", bad]) == 2
        err = capsys.readouterr().err
        assert f"'--fd-threshold' must be a {rule}" in err and "counts as head motion" in err


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
