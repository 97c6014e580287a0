"""``mindeye-rt viewer``: the participant's feedback window, attached to a session's telemetry."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from realtime.cli_keys import add_key_options, security_from_args
from rt_base.checks import check_address
from rt_wire.curve_auth import use_security


def add_viewer_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``viewer`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "viewer",
        help="the participant viewer: the feedback image of each trial, full screen",
    )
    p.add_argument(
        "--connect", metavar="ADDR", required=True, help="telemetry endpoint of the session"
    )
    p.add_argument("--screen", type=int, help="screen index (default: the primary screen)")
    p.add_argument("--windowed", action="store_true", help="a window instead of full screen")
    p.add_argument(
        "--feedback",
        choices=["top1", "recon"],
        default="top1",
        help="what to show: top1, the top-1 retrieved image (default), or recon, each trial's "
        "reconstruction (needs a session with a reconstruct stage: --recon other than none)",
    )
    p.add_argument(
        "--dataset",
        metavar="PATH",
        help="dataset folder with the stimulus images (default: announced by the session)",
    )
    add_key_options(p)
    return p


def cmd_viewer(args) -> int:
    """Run the participant viewer as asked by ``args`` (from :func:`add_viewer_parser`)."""
    from PySide6 import QtCore

    from gui.model import SessionModel
    from gui.qt import ensure_app
    from gui.receiver import Receiver
    from gui.viewer import VIEWER_TOPICS, ViewerWindow

    telemetry = check_address(args.connect, "connect")
    security = security_from_args(args, [telemetry])
    app = ensure_app()
    model = SessionModel()
    if args.dataset:
        model.set_dataset(str(Path(args.dataset).expanduser()))
    window = ViewerWindow(model, feedback=args.feedback)
    window.place(args.screen, windowed=args.windowed)
    with use_security(security), Receiver(telemetry, model, topics=VIEWER_TOPICS):
        keepalive = QtCore.QTimer(window)  # lets Ctrl-C reach Python while Qt waits
        keepalive.timeout.connect(lambda: None)
        keepalive.start(200)
        previous = signal.signal(signal.SIGINT, lambda *_: app.quit())
        try:
            app.exec()
        finally:
            signal.signal(signal.SIGINT, previous)
    return 0
