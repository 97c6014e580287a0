"""The operator console: one window that shows a running session and steers its replay.

Layout: a toolbar (pause/resume, speed, stop, the session's name), three slices of the newest
volume with the ROI outline, the ROI mean signal over the trial timeline, the head motion
(:mod:`gui.motion_panel`; the status line warns when a TR's FD passes the threshold), the latest trial's
top-k retrieved images with the true one marked, the newest reconstruction (with its blurry
low-level image in ``"full"`` mode; in sessions with a reconstruct stage), running accuracy,
latency per stage, a status line with each stage's health (and the reconstruct stage's backlog
when it falls behind), and the log.

Every panel stays whole: the plots report what they need as their minimum size
(:class:`gui.qt.WholeLayoutWidget`), splitters never shrink a panel below it, and a window
smaller than all the minimums together scrolls instead of cutting panels off.

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
from gui.motion_panel import MotionPanel
from gui.panels import AccuracyPanel, HealthStrip, LogPane
from gui.plots import LatencyPlot, SignalPlots
from gui.qt import COLORS, WholeLayoutWidget, WholePlotWidget, panel_frame
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
        self.motion = MotionPanel()
        self.retrieval = RetrievalPanel()
        self.accuracy = AccuracyPanel()
        self.latency = LatencyPlot()
        self.log_pane = LogPane()
        #: name -> panel, in the order they are redrawn
        self.panels: dict[str, QtWidgets.QWidget] = {
            "slices": self.slices,
            "signals": self.signals,
            "motion": self.motion,
            "retrieval": self.retrieval,
            "accuracy": self.accuracy,
            "latency": self.latency,
            "log": self.log_pane,
        }
        left = _splitter(QtCore.Qt.Orientation.Vertical, self.slices, self.signals, self.motion)
        right = _splitter(
            QtCore.Qt.Orientation.Vertical, self.retrieval, self.accuracy, self.latency
        )
        top = _splitter(QtCore.Qt.Orientation.Horizontal, left, right)
        body = _splitter(QtCore.Qt.Orientation.Vertical, top, self.log_pane)
        body.setContentsMargins(6, 6, 6, 6)
        for splitter, stretch in ((left, (5, 4, 5)), (right, (3, 2, 4)), (top, (1, 1)),
                                  (body, (8, 1))):  # fmt: skip
            for i, factor in enumerate(stretch):
                splitter.setStretchFactor(i, factor)
        # a window smaller than the panels' minimums together scrolls instead of clipping
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        self.setCentralWidget(scroll)
        self._fitted = [
            w for kind in (WholeLayoutWidget, WholePlotWidget) for w in body.findChildren(kind)
        ]
        # initial shares in pixels (stretch factors only apply to later resizes); a splitter
        # scales them to its size and keeps each panel at least at its minimum
        left.setSizes([380, 300, 380])
        right.setSizes([230, 160, 560])
        top.setSizes([800, 800])
        body.setSizes([900, 80])

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
        for panel in self.panels.values():
            panel.update_from(snap)
        for plots in self._fitted:
            plots.refit()  # a longer title or tick label may need more room
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
        motion = motion_warning(snap)  # early: a narrow window cuts the status line's end
        if motion:
            parts.append(f"<span style='color:{COLORS['stale']}'>{motion}</span>")
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


def _splitter(
    orientation: QtCore.Qt.Orientation, *widgets: QtWidgets.QWidget
) -> QtWidgets.QSplitter:
    """A splitter of ``widgets`` (each framed unless it is a splitter) that never collapses
    one below its minimum size."""
    splitter = QtWidgets.QSplitter(orientation)
    for widget in widgets:
        splitter.addWidget(widget if isinstance(widget, QtWidgets.QSplitter) else _boxed(widget))
    splitter.setHandleWidth(6)
    splitter.setChildrenCollapsible(False)
    return splitter


def motion_warning(snap: Snapshot) -> str:
    """``"head motion: FD 0.81 mm at run-02 TR 57 > 0.5 mm (2 TRs this run)"`` for the
    newest TR over the FD threshold (TRs counted from 1, as in the status line); ``""``
    when none is or the current run reports no motion."""
    m = snap.motion
    if m is None or m.last_over is None:
        return ""
    run, index, fd = m.last_over
    text = f"head motion: FD {fd:.2f} mm at {run} TR {index + 1} > {m.threshold:g} mm"
    n = m.over.get(snap.session.run or "", 0)
    return text + (f" ({n} TR{'s' if n != 1 else ''} this run)" if n else "")


def _describe(state: dict) -> str:
    speed = state.get("speed")
    parts = ["paused" if state.get("paused") else "running"]
    if speed is not None:
        parts.append("max speed" if speed == 0 else f"speed {speed:g}×")
    if state.get("stopping"):
        parts.append("stopping")
    return ", ".join(parts)
