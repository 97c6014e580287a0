"""The operator console: one window that shows a running session and steers its replay.

Layout: a toolbar (pause/resume, speed, stop, the session's name), three slices of the newest
volume with the ROI outline, the ROI mean signal over the trial timeline, the latest trial's
top-k retrieved images with the true one marked, the newest reconstruction (with its blurry
low-level image in ``"full"`` mode; in sessions with a reconstruct stage), running accuracy,
latency per stage, a status line with each stage's health (and the reconstruct stage's backlog
when it falls behind), and the log.

The window never reads sockets: a :class:`gui.receiver.Receiver` thread feeds the
:class:`gui.model.SessionModel`, and a QTimer polls the model at a bounded rate (10 Hz by
default) and redraws only what changed.  Control commands go to the replay source's control
channel on a worker thread, so a source that does not answer cannot freeze the window.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from PySide6 import QtCore, QtWidgets

from gui.control import ControlClient
from gui.model import SessionModel
from gui.panels import AccuracyPanel, HealthStrip, LogPane
from gui.plots import LatencyPlot, SignalPlots
from gui.qt import COLORS, panel_frame
from gui.retrieval_panel import RetrievalPanel
from gui.slices import SliceViews
from gui.state import Snapshot

REDRAW_HZ = 10.0
SPEEDS = (
    ("0.25×", 0.25),
    ("0.5×", 0.5),
    ("1×", 1.0),
    ("2×", 2.0),
    ("4×", 4.0),
    ("8×", 8.0),
    ("max", 0.0),
)


def _boxed(widget: QtWidgets.QWidget) -> QtWidgets.QFrame:
    frame = panel_frame()
    layout = QtWidgets.QVBoxLayout(frame)
    layout.setContentsMargins(1, 1, 1, 1)
    layout.addWidget(widget)
    return frame


class ConsoleWindow(QtWidgets.QMainWindow):
    """The operator console.

    Parameters
    ----------
    model : the session model that the receiver feeds.
    control : client of the replay source's control channel; None disables the controls.
    telemetry_addr : shown in the toolbar (where the console listens).
    redraw_hz : redraw rate (the model is polled this often).
    confirm_stop : ask before stopping the session.
    """

    def __init__(
        self,
        model: SessionModel,
        *,
        control: ControlClient | None = None,
        telemetry_addr: str | None = None,
        redraw_hz: float = REDRAW_HZ,
        confirm_stop: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.control = control
        self.confirm_stop = confirm_stop
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="console-control")
        self._pending: list[tuple[str, Future]] = []
        self.setWindowTitle("mindeye-rt · operator console")
        self.resize(1600, 1000)
        self._build_toolbar(telemetry_addr)
        self._build_body()
        self._build_status()
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(max(1, int(1000 / redraw_hz)))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.last_snapshot: Snapshot | None = None
        self.refresh()

    # -- building ----------------------------------------------------------------------------
    def _build_toolbar(self, telemetry_addr: str | None) -> None:
        bar = QtWidgets.QToolBar("Session")
        bar.setMovable(False)
        bar.setIconSize(QtCore.QSize(16, 16))
        bar.setStyleSheet(
            f"QToolBar {{ background: {COLORS['panel']}; border-bottom: 1px solid {COLORS['border']};"
            " spacing: 8px; padding: 4px; }"
        )
        self.addToolBar(QtCore.Qt.ToolBarArea.TopToolBarArea, bar)
        title = QtWidgets.QLabel("  MindEye real-time  ")
        title.setStyleSheet("font-weight: 700; font-size: 11pt;")
        bar.addWidget(title)
        self.session_label = QtWidgets.QLabel("waiting for a session")
        bar.addWidget(self.session_label)
        spacer = QtWidgets.QWidget()
        spacer.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred
        )
        bar.addWidget(spacer)
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.pause_button.setMinimumWidth(90)
        self.pause_button.clicked.connect(self.toggle_pause)
        bar.addWidget(self.pause_button)
        bar.addWidget(QtWidgets.QLabel("Speed"))
        self.speed_box = QtWidgets.QComboBox()
        for text, value in SPEEDS:
            self.speed_box.addItem(text, value)
        self.speed_box.setCurrentIndex(2)
        self.speed_box.activated.connect(self._speed_chosen)
        bar.addWidget(self.speed_box)
        self.stop_button = QtWidgets.QPushButton("Stop session")
        self.stop_button.setStyleSheet(f"QPushButton:enabled {{ color: {COLORS['error']}; }}")
        self.stop_button.clicked.connect(self.request_stop)
        bar.addWidget(self.stop_button)
        where = QtWidgets.QLabel(f"  telemetry {telemetry_addr or '-'}  ")
        where.setStyleSheet(f"color: {COLORS['muted']};")
        bar.addWidget(where)
        enabled = self.control is not None
        for w in (self.pause_button, self.speed_box, self.stop_button):
            w.setEnabled(enabled)
            if not enabled:
                w.setToolTip("no control channel: start the console with --control ADDR")

    def _build_body(self) -> None:
        self.slices = SliceViews()
        self.signals = SignalPlots()
        self.retrieval = RetrievalPanel()
        self.accuracy = AccuracyPanel()
        self.latency = LatencyPlot()
        self.log_pane = LogPane()

        left = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        left.addWidget(_boxed(self.slices))
        left.addWidget(_boxed(self.signals))
        left.setStretchFactor(0, 5)
        left.setStretchFactor(1, 4)

        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(_boxed(self.retrieval))
        right.addWidget(_boxed(self.accuracy))
        right.addWidget(_boxed(self.latency))
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        right.setStretchFactor(2, 4)

        top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        top.addWidget(left)
        top.addWidget(right)
        top.setStretchFactor(0, 11)
        top.setStretchFactor(1, 9)

        body = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        body.addWidget(top)
        body.addWidget(_boxed(self.log_pane))
        body.setStretchFactor(0, 6)
        body.setStretchFactor(1, 1)
        body.setContentsMargins(6, 6, 6, 6)
        for splitter in (left, right, top, body):
            splitter.setHandleWidth(6)
            splitter.setChildrenCollapsible(False)
        self.setCentralWidget(body)
        # initial sizes in pixels (stretch factors only apply to later resizes)
        left.setSizes([500, 400])
        right.setSizes([215, 165, 520])
        top.setSizes([800, 800])
        body.setSizes([860, 80])

    def _build_status(self) -> None:
        bar = self.statusBar()
        bar.setStyleSheet(
            f"QStatusBar {{ background: {COLORS['panel']}; border-top: 1px solid {COLORS['border']}; }}"
            " QStatusBar::item { border: none; }"
        )
        self.status_label = QtWidgets.QLabel("no telemetry yet")
        bar.addWidget(self.status_label, 1)
        self.health = HealthStrip()
        bar.addPermanentWidget(self.health)

    # -- redraw ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Poll the model and redraw what changed (the timer calls this)."""
        self._collect_replies()
        snap = self.model.snapshot()
        self.last_snapshot = snap
        for panel in (
            self.slices,
            self.signals,
            self.retrieval,
            self.accuracy,
            self.latency,
            self.log_pane,
        ):
            panel.update_from(snap)
        self.health.update_from(snap)
        self._update_texts(snap)

    def _update_texts(self, snap: Snapshot) -> None:
        s = snap.session
        if s.dataset:
            badge = (
                f"  <span style='background:{COLORS['stale']}; color:#000; padding:1px 4px;'>"
                "&nbsp;SIMULATED&nbsp;</span>"
                if s.simulated
                else ""
            )
            self.session_label.setText(f"dataset <b>{s.dataset}</b>{badge}")
        parts = []
        if s.run:
            parts.append(f"<b>{s.run}</b>")
        if snap.tr_index is not None:
            total = f"/{s.n_volumes}" if s.n_volumes else ""
            parts.append(f"TR {snap.tr_index + 1}{total}")
        if snap.trials:
            decoded = sum(t.decoded for t in snap.trials)
            total = f"/{s.n_trials}" if s.n_trials else ""
            done = f"{decoded} decoded"
            if snap.recon_stage is not None:
                done += f", {sum(t.reconstructed for t in snap.trials)} reconstructed"
            parts.append(f"trials {len(snap.trials)}{total} ({done})")
        lost_color = COLORS["error"] if snap.lost_volumes else COLORS["text"]
        parts.append(f"<span style='color:{lost_color}'>lost volumes {snap.lost_volumes}</span>")
        rs = snap.recon_stage
        if rs is not None and rs.behind and rs.state != "stopped":
            parts.append(f"<span style='color:{COLORS['stale']}'>reconstruct: {rs.behind}</span>")
        if snap.lost_messages or snap.missed_trials:
            parts.append(f"lost messages {snap.lost_messages} · missed trials {snap.missed_trials}")
        if s.speed is not None:
            parts.append("speed max" if s.speed == 0 else f"speed {s.speed:g}×")
        parts.append(self._state_text(snap))
        if snap.telemetry_age_s is not None and snap.telemetry_age_s > 3 and not s.ended:
            parts.append(
                f"<span style='color:{COLORS['stale']}'>no telemetry for {snap.telemetry_age_s:.0f} s</span>"
            )
        self.status_label.setText("   ·   ".join(parts))
        if s.paused is not None and not self._pending:
            self.pause_button.setText("Resume" if s.paused else "Pause")
        if s.speed is not None and not self._pending and not self.speed_box.view().isVisible():
            index = self.speed_box.findData(float(s.speed))
            if index < 0:  # a speed the session was started with, not in the list
                self.speed_box.addItem(f"{s.speed:g}×", float(s.speed))
                index = self.speed_box.count() - 1
            self.speed_box.setCurrentIndex(index)
        if self.control is not None:  # nothing to steer once the session has ended
            for w in (self.pause_button, self.speed_box, self.stop_button):
                w.setEnabled(not s.ended)

    @staticmethod
    def _state_text(snap: Snapshot) -> str:
        s = snap.session
        if s.ended:
            return f"<span style='color:{COLORS['stopped']}'>ENDED{' (stopped)' if s.stopped else ''}</span>"
        if s.paused:
            return f"<span style='color:{COLORS['stale']}'><b>PAUSED</b></span>"
        if s.run:
            return f"<span style='color:{COLORS['ok']}'>RUNNING</span>"
        return f"<span style='color:{COLORS['muted']}'>WAITING</span>"

    # -- controls ----------------------------------------------------------------------------
    def send(self, cmd: str, value: float | None = None) -> Future | None:
        """Send a control command on the worker thread; the reply is logged."""
        if self.control is None:
            self.model.add_log("console", "warning", f"cannot {cmd}: no control channel")
            return None
        future = self._executor.submit(self.control.send, cmd, value)
        self._pending.append((cmd, future))
        return future

    def _collect_replies(self) -> None:
        still = []
        for cmd, future in self._pending:
            if not future.done():
                still.append((cmd, future))
                continue
            err = future.exception()
            if err is not None:
                self.model.add_log("console", "error", f"{cmd} failed: {err}")
                continue
            state = future.result().get("state", {})
            self.model.add_log("console", "info", f"{cmd}: ok (source {_describe(state)})")
            if "paused" in state:
                self.pause_button.setText("Resume" if state["paused"] else "Pause")
        self._pending = still

    def toggle_pause(self) -> None:
        paused = self.pause_button.text() == "Resume"
        self.send("resume" if paused else "pause")
        self.pause_button.setText("Pause" if paused else "Resume")

    def _speed_chosen(self, index: int) -> None:
        self.send("speed", float(self.speed_box.itemData(index)))

    def request_stop(self) -> None:
        if self.confirm_stop:
            answer = QtWidgets.QMessageBox.question(
                self,
                "Stop the session",
                "End the replay now? Every stage flushes and the session folder is closed.",
            )
            if answer != QtWidgets.QMessageBox.StandardButton.Yes:
                return
        self.send("stop")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.timer.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        super().closeEvent(event)


def _describe(state: dict) -> str:
    speed = state.get("speed")
    parts = ["paused" if state.get("paused") else "running"]
    if speed is not None:
        parts.append("max speed" if speed == 0 else f"speed {speed:g}×")
    if state.get("stopping"):
        parts.append("stopping")
    return ", ".join(parts)
