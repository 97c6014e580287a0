"""``mindeye-rt console`` and ``mindeye-rt viewer``, and :func:`launch_console`.

``console --connect ADDR`` attaches to a running session's telemetry hub (also on another
machine); ``console --replay NAME`` runs a session in the background and shows it.  With
``--screenshot FILE`` the console renders offscreen, saves a PNG once ``--after-trials`` trials
are decoded, and ends (stopping a session it started).  ``viewer --connect ADDR`` opens the
participant's feedback window.

Run as ``python -m gui.cli console ...`` too (how :func:`launch_console` starts it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gui.cli_viewer import add_viewer_parser, cmd_viewer
from gui.state import FD_THRESHOLD_MM
from realtime.cli import run_commands
from realtime.cli_keys import add_key_options, key_arguments, security_from_args
from realtime.config import StreamConfig
from rt_base.checks import check_address, check_number
from rt_base.errors import ConfigError, MindEyeRTError
from rt_wire.curve_auth import use_security

FD_LIMIT_MM = 20.0  # an FD threshold above this would never warn: surely a mistake
STOP_WAIT_S = 120.0  # how long a stopped background session may take to flush and summarize


# -- parsers ---------------------------------------------------------------------------------
def add_console_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``console`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "console",
        help="the operator console: watch and steer a running session",
        description="Attach to a session's telemetry (--connect) or run one (--replay).",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--connect",
        metavar="ADDR",
        help="telemetry endpoint of a running session, e.g. tcp://127.0.0.1:5555",
    )
    where.add_argument(
        "--replay",
        metavar="NAME",
        help="run this replay dataset (name or path) in the background and show it",
    )
    p.add_argument(
        "--control",
        metavar="ADDR",
        help="the replay source's control endpoint (pause/resume/speed/stop)",
    )
    p.add_argument(
        "--dataset",
        metavar="PATH",
        help="dataset folder for ROI outline and thumbnails (default: the one the session announces)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="with --replay: replay speed (1 real time, 0 as fast as possible)",
    )
    p.add_argument(
        "--base-port",
        type=int,
        dest="base_port",
        help="with --replay: first of the session's TCP ports (default 5550)",
    )
    _add_display_options(p)
    add_key_options(p)
    return p


def _add_display_options(p: argparse.ArgumentParser) -> None:
    """The console's window options: the screenshot run, window size and redraw rate."""
    p.add_argument(
        "--screenshot",
        metavar="FILE",
        help="render offscreen, save a PNG after --after-trials trials, and exit",
    )
    p.add_argument(
        "--after-trials",
        type=int,
        default=8,
        dest="after_trials",
        help="decoded trials before the screenshot (default 8)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="with --screenshot: give up after this many seconds (default 900)",
    )
    p.add_argument("--size", default="1600x1000", help="window size WxH (default 1600x1000)")
    p.add_argument(
        "--fd-threshold",
        type=float,
        default=FD_THRESHOLD_MM,
        dest="fd_threshold",
        metavar="MM",
        help="framewise displacement (mm) over which a TR counts as head motion: warned in "
        f"the status line and counted per run (default {FD_THRESHOLD_MM:g})",
    )
    p.add_argument(
        "--redraw-hz", type=float, default=10.0, dest="redraw_hz", help="redraw rate (default 10)"
    )


# -- console ---------------------------------------------------------------------------------
def cmd_console(args) -> int:
    """Run the console as asked by ``args`` (from :func:`add_console_parser`)."""
    size = _parse_size(args.size)
    check_number(args.after_trials, "after_trials", minimum=1, integer=True)
    check_number(args.redraw_hz, "redraw_hz", minimum=0, strict_min=True, maximum=60)
    check_fd_threshold(args.fd_threshold)
    if args.screenshot:
        _offscreen_if_headless()
    proc = None
    telemetry, control = args.connect, args.control
    if control:
        control = check_address(control, "control")
    if telemetry:
        telemetry = check_address(telemetry, "connect")
    security = security_from_args(args, [telemetry, control])  # before a session is started
    if args.replay:
        proc, telemetry, control_default = _start_session(args, security)
        control = control or control_default
    with use_security(security):  # the console's sockets: CURVE or none
        try:
            return _run_console(args, telemetry, control, size, proc)
        finally:
            if proc is not None:
                _stop_session(proc, control)


def check_fd_threshold(value: float) -> float:
    """``--fd-threshold`` as a float: a positive number of mm up to :data:`FD_LIMIT_MM`.

    Raises
    ------
    ConfigError
        "'--fd-threshold' must be a positive number of mm, got -1.0 (framewise displacement
        over which a TR counts as head motion; 0.5 mm is usual)".
    """
    try:
        return float(
            check_number(
                value, "--fd-threshold", minimum=0, strict_min=True, maximum=FD_LIMIT_MM, unit="mm"
            )
        )
    except ConfigError as err:
        raise ConfigError(
            f"{err} (framewise displacement over which a TR counts as head motion; "
            f"{FD_THRESHOLD_MM:g} mm is usual)"
        ) from None


def _run_console(args, telemetry: str, control: str | None, size, proc) -> int:
    from PySide6 import QtCore

    from gui.console import ConsoleWindow
    from gui.control import ControlClient
    from gui.model import SessionModel
    from gui.qt import ensure_app
    from gui.receiver import Receiver

    app = ensure_app()
    model = SessionModel(fd_threshold=args.fd_threshold)
    if args.dataset:
        model.set_dataset(str(Path(args.dataset).expanduser()))
    client = ControlClient(control) if control else None
    window = ConsoleWindow(
        model,
        control=client,
        telemetry_addr=telemetry,
        redraw_hz=args.redraw_hz,
        confirm_stop=not args.screenshot,
    )
    window.resize(*size)
    result: dict[str, int | None] = {"code": None}
    with Receiver(telemetry, model):
        window.show()
        start = time.monotonic()

        def check() -> None:
            """Every 200 ms: a dead background session ends the console; a screenshot is
            taken when enough trials are decoded.  (Also lets Ctrl-C reach Python.)"""
            if proc is not None and proc.poll() is not None and proc.returncode != 0:
                print(
                    f"mindeye-rt console: the session exited with code {proc.returncode}",
                    file=sys.stderr,
                )
                result["code"] = 1
                app.quit()
                return
            if args.screenshot:
                result["code"] = _maybe_screenshot(window, args, time.monotonic() - start)
                if result["code"] is not None:
                    app.quit()

        timer = QtCore.QTimer(window)
        timer.timeout.connect(check)
        timer.start(200)
        previous = signal.signal(signal.SIGINT, lambda *_: app.quit())
        try:
            app.exec()
        finally:
            signal.signal(signal.SIGINT, previous)
            timer.stop()
    window.close()
    window.deleteLater()
    if client is not None:
        client.close()
    return result["code"] or 0


def _maybe_screenshot(window, args, elapsed: float) -> int | None:
    """Save the screenshot once ``args.after_trials`` trials are decoded (0) or at the
    timeout (1); None while waiting."""
    from PySide6 import QtWidgets

    from gui.picture import save_window_png

    snap = window.last_snapshot
    decoded = 0 if snap is None else snap.accuracy.decoded
    done = decoded >= args.after_trials
    late = elapsed > args.timeout
    if not (done or late):
        return None
    window.refresh()
    QtWidgets.QApplication.processEvents()
    out = save_window_png(window, args.screenshot)
    print(f"screenshot after {decoded} decoded trial(s): {out}")
    if done:
        return 0
    print(
        f"mindeye-rt console: only {decoded} of {args.after_trials} trials were decoded "
        f"within --timeout {args.timeout:g} s",
        file=sys.stderr,
    )
    return 1


def _start_session(args, security=None):
    """Start ``mindeye-rt stream --headless`` for ``--replay`` (with the console's key pair when
    ``security``); returns (process, telemetry address, control address or None)."""
    speed = check_number(args.speed, "speed", minimum=0.0)
    cfg = StreamConfig(replay=args.replay, speed=speed, headless=True, **_port(args))
    addresses = cfg.addresses()
    cmd = [
        sys.executable, "-m", "realtime.cli", "stream", "--replay", args.replay, "--headless",
        "--speed", str(speed), "--base-port", str(cfg.base_port),
        *key_arguments(security),
    ]  # fmt: skip
    print(f"starting the session: {' '.join(cmd[2:])}")
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, addresses["telemetry"], addresses.get("control")


def _port(args) -> dict:
    return {} if args.base_port is None else {"base_port": args.base_port}


def _stop_session(proc: subprocess.Popen, control: str | None) -> None:
    """End a background session cleanly: the control channel's stop, else SIGINT."""
    if proc.poll() is not None:
        return
    stopped = False
    if control:
        from gui.control import ControlClient

        try:
            with ControlClient(control, timeout_s=3.0) as client:
                client.send("stop")
            stopped = True
        except MindEyeRTError as err:
            print(f"mindeye-rt console: {err}; interrupting the session instead", file=sys.stderr)
    if not stopped:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        print("mindeye-rt console: the session did not end; terminating it", file=sys.stderr)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(n) for n in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(
            f"'size' must be WIDTHxHEIGHT in pixels like 1600x1000, got {text!r}"
        ) from None
    if w < 640 or h < 480:
        raise ConfigError(f"'size' must be at least 640x480, got {text!r}")
    return w, h


def _offscreen_if_headless() -> None:
    """Use Qt's offscreen platform when there is no display (before Qt is imported)."""
    if "PySide6.QtWidgets" in sys.modules:
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def launch_console(
    telemetry_addr: str,
    control_addr: str | None = None,
    *,
    dataset: str | None = None,
    fd_threshold: float | None = None,
    key_args: list[str] | None = None,
) -> subprocess.Popen:
    """Open the operator console in a child process attached to ``telemetry_addr``.

    For ``mindeye-rt stream`` without ``--headless``: the console is a separate process, so
    the pipeline never waits on the GUI, and closing the console does not end the session.
    ``key_args`` are its CURVE options (:func:`realtime.cli_keys.key_arguments`).

    Returns
    -------
    process : the console's :class:`subprocess.Popen` (terminate it to close the window).
    """
    cmd = [
        sys.executable,
        "-m",
        "gui.cli",
        "console",
        "--connect",
        check_address(telemetry_addr, "telemetry"),
    ]
    if control_addr:
        cmd += ["--control", check_address(control_addr, "control")]
    if dataset:
        cmd += ["--dataset", str(dataset)]
    if fd_threshold is not None:
        cmd += ["--fd-threshold", f"{float(fd_threshold):g}"]
    return subprocess.Popen(cmd + list(key_args or ()))


# -- commands --------------------------------------------------------------------------------
#: name -> (add the subparser, run it): assembled into ``mindeye-rt`` by :mod:`mindeye_rt.cli`
COMMANDS = {
    "console": (add_console_parser, cmd_console),
    "viewer": (add_viewer_parser, cmd_viewer),
}


def main(argv: list[str] | None = None) -> int:
    """``python -m gui.cli console|viewer ...`` (how :func:`launch_console` starts a child)."""
    return run_commands(COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
