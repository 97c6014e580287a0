"""The console's head-motion panel: the six rigid parameters and the framewise displacement
(FD) of the current run per TR, with the FD threshold, and the TRs over it per run.

Translations (mm) and rotations (degrees) get a plot each, FD a third one with the threshold
as a dashed line and the TRs over it marked.  A session without motion correction
(``--motion none``) reports no motion: the panel then says so instead of drawing empty axes.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from gui.plots import follow_range, style_plot, with_breaks
from gui.qt import COLORS, WholeLayoutWidget, section_label
from gui.state import MotionTrace, Snapshot

#: colours of the x, y and z parameters (translation along, rotation about)
AXIS_COLORS = ("#58a6ff", "#3fb950", "#d29922")
NO_MOTION = "no head motion reported: motion correction is off (--motion none)"
WAITING = "waiting for the first TR"


def over_text(over: dict[str, int], threshold: float) -> str:
    """``"FD > 0.5 mm: run-01 3 TRs · run-02 0 TRs"``: the TRs over the threshold per run."""
    runs = " · ".join(f"{run} {n} TR{'s' if n != 1 else ''}" for run, n in over.items())
    return f"FD > {threshold:g} mm: {runs or '-'}"


def bad_volumes_text(warning: str | None) -> str:
    """The bad-volume warning of the counts line, in the warning colour ("" when none)."""
    return f"<span style='color:{COLORS['stale']}'>{warning}</span>" if warning else ""


def _legend() -> str:
    return "&nbsp;&nbsp;".join(
        f"<span style='color:{color}'>━</span>&nbsp;{axis}"
        for axis, color in zip("xyz", AXIS_COLORS, strict=True)
    )


class MotionPlots(WholeLayoutWidget):
    """Translations, rotations and FD over time in run (s), x axes linked."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.ci.setContentsMargins(4, 2, 8, 2)
        self.ci.setSpacing(0)
        self.trans = self.addPlot(row=0, col=0)
        self.rot = self.addPlot(row=1, col=0)
        self.fd_plot = self.addPlot(row=2, col=0)
        style_plot(self.trans, "mm", None)
        style_plot(self.rot, "deg", None)
        style_plot(self.fd_plot, "FD (mm)", "time in run (s)")
        self.plots = (self.trans, self.rot, self.fd_plot)
        for plot in self.plots:
            plot.getAxis("left").setWidth(46)  # the three y axes line up
            plot.enableAutoRange(x=False)
            plot.getViewBox().sigRangeChangedManually.connect(self._stop_following)
        for plot in (self.trans, self.rot):
            plot.setXLink(self.fd_plot)
            plot.getAxis("bottom").setStyle(showValues=False)
        self.trans_curves = [self.trans.plot(pen=pg.mkPen(c, width=1.3)) for c in AXIS_COLORS]
        self.rot_curves = [self.rot.plot(pen=pg.mkPen(c, width=1.3)) for c in AXIS_COLORS]
        self.fd_curve = self.fd_plot.plot(pen=pg.mkPen(COLORS["text"], width=1.3))
        self.threshold_line = pg.InfiniteLine(
            angle=0, pen=pg.mkPen(COLORS["error"], width=1, style=QtCore.Qt.PenStyle.DashLine)
        )
        self.fd_plot.addItem(self.threshold_line)
        self.over_marks = pg.ScatterPlotItem(
            symbol="o", size=6, pen=None, brush=pg.mkBrush(COLORS["error"])
        )
        self.fd_plot.addItem(self.over_marks)
        self._follow = True
        self._x: tuple[float, float] | None = None

    def _stop_following(self, *_) -> None:
        self._follow = False

    def follow(self, now: float | None, run_s: float | None) -> None:
        """Set the x range to follow the run (unless the operator panned or zoomed)."""
        if not self._follow:
            return
        xr = follow_range(now, run_s)
        if xr != self._x:
            self._x = xr
            self.fd_plot.setXRange(*xr, padding=0.01)

    def restart(self) -> None:
        """A new run: follow it again."""
        self._follow, self._x = True, None

    def draw(self, m: MotionTrace, step: float | None) -> None:
        for curves, first in ((self.trans_curves, 0), (self.rot_curves, 3)):
            for i, curve in enumerate(curves):
                t, y = with_breaks(m.time, m.params[:, first + i], step)
                curve.setData(t, y, connect="finite")
        t, fd = with_breaks(m.time, m.fd, step)
        self.fd_curve.setData(t, fd, connect="finite")
        self.threshold_line.setPos(m.threshold)
        over = m.fd > m.threshold
        self.over_marks.setData(m.time[over], m.fd[over])
        top = float(np.nanmax(m.fd, initial=0.0)) if m.fd.size else 0.0
        self.fd_plot.setYRange(0.0, 1.15 * max(top, 1.5 * m.threshold), padding=0)


class MotionPanel(QtWidgets.QWidget):
    """Head motion of the current run: a title with the mode and the TRs over the FD
    threshold per run, and :class:`MotionPlots`, or a line saying no motion is reported."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 2)
        layout.setSpacing(2)
        head = QtWidgets.QHBoxLayout()
        self.title = section_label("HEAD MOTION")
        head.addWidget(self.title)
        head.addStretch(1)
        self.legend = QtWidgets.QLabel(_legend())
        self.legend.setStyleSheet(f"color: {COLORS['muted']};")
        head.addWidget(self.legend)
        layout.addLayout(head)
        self.counts = QtWidgets.QLabel("")
        self.counts.setStyleSheet(f"color: {COLORS['muted']};")
        layout.addWidget(self.counts)
        self.stack = QtWidgets.QStackedWidget()
        self.message = QtWidgets.QLabel(WAITING)
        self.message.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet(f"color: {COLORS['muted']};")
        self.plots = MotionPlots()
        self.plots.setMinimumHeight(150)
        self.stack.addWidget(self.message)
        self.stack.addWidget(self.plots)
        layout.addWidget(self.stack, 1)
        self._drawn = {"session": -1}
        self._shown: tuple[int, bool] | None = None
        self._run: str | None = None

    @property
    def showing_plots(self) -> bool:
        """Whether the plots are shown (motion reported), not the message."""
        return self.stack.currentWidget() is self.plots

    def update_from(self, snap: Snapshot) -> None:
        v = snap.versions
        s = snap.session
        if v["session"] != self._drawn["session"]:
            self._drawn["session"] = v["session"]
            if s.run != self._run:
                self._run = s.run
                self.plots.restart()
            now = None if snap.tr_index is None or not s.tr else snap.tr_index * s.tr
            self.plots.follow(now, s.tr * s.n_volumes if s.tr and s.n_volumes else None)
        shown = (v["motion"], snap.tr_index is None)  # the message differs before the first TR
        if shown == self._shown:
            return
        self._shown = shown
        m = snap.motion
        if m is None:
            self.message.setText(WAITING if snap.tr_index is None else NO_MOTION)
            self.stack.setCurrentWidget(self.message)
            self.title.setText("HEAD MOTION")
            self.counts.setText(bad_volumes_text(snap.bad_volumes.warning))
            self.legend.setVisible(False)
            return
        self.stack.setCurrentWidget(self.plots)
        self.legend.setVisible(True)
        self.title.setText(f"HEAD MOTION  —  {m.mode or 'mode unknown'}")
        latest = "" if not m.fd.size or np.isnan(m.fd[-1]) else f"FD now {m.fd[-1]:.2f} mm  ·  "
        color = COLORS["stale"] if any(m.over.values()) else COLORS["muted"]
        over = over_text(m.over, m.threshold)
        bad = bad_volumes_text(snap.bad_volumes.warning)
        bad = f"  ·  {bad}" if bad else ""
        self.counts.setText(f"{latest}<span style='color:{color}'>{over}</span>{bad}")
        self.plots.draw(m, snap.session.tr)
