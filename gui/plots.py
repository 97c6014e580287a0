"""Time-series plots of the console: ROI signal over the trial timeline, and latency."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from gui.qt import COLORS, SERIES_COLORS, WholeLayoutWidget, WholePlotWidget
from gui.state import Snapshot, TrialInfo
from rt_base.names import LIVE_SPANS

BASELINE_TRS = 10  # the ROI trace is % change from the mean of a run's first TRs

TRIAL_COLORS = {
    "pending": "#343a45",
    "decoding": "#4aa3ff",
    "hit": COLORS["ok"],
    "miss": COLORS["error"],
    "unscored": "#8b93a3",
}


#: latency series drawn dashed: spans over several stages (from one stage's stamp to another's)
DASHED = frozenset(
    name for name, (_, start, end) in LIVE_SPANS.items() if start.split(".")[0] != end.split(".")[0]
)

_PENDING_PEN = pg.mkPen("#6b7483", width=1)
_NO_PEN = pg.mkPen(None)


def trial_state(trial: TrialInfo) -> str:
    """``pending`` (not yet decoded), ``hit``/``miss`` (top-1), or ``unscored``."""
    if not trial.decoded:
        return "pending"
    if trial.rank is None:
        return "unscored"
    return "hit" if trial.rank == 1 else "miss"


def percent_change(values: np.ndarray, baseline_n: int = BASELINE_TRS) -> np.ndarray:
    """(n,) values -> % change from the mean of the first ``baseline_n`` (stable once full)."""
    if values.size == 0:
        return values
    base = float(np.mean(values[:baseline_n]))
    if base == 0:
        return values - values[0]
    return 100.0 * (values / base - 1.0)


FOLLOW_MIN_S = 60.0  # the x axis spans at least this much of a run


def follow_range(now: float | None, run_s: float | None) -> tuple[float, float]:
    """X range (s) that grows with the run: the data so far plus headroom, in steps of a
    quarter of :data:`FOLLOW_MIN_S` (few rescalings), never past the run's end."""
    step = FOLLOW_MIN_S / 4
    span = FOLLOW_MIN_S if now is None else max(FOLLOW_MIN_S, step * np.ceil((now * 1.2) / step))
    if run_s:
        span = min(span, run_s)
    return 0.0, float(span)


def with_breaks(t: np.ndarray, y: np.ndarray, step: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN where consecutive samples are more than 1.5 ``step`` apart, so a curve
    drawn with ``connect="finite"`` shows missing TRs as gaps instead of straight lines."""
    if t.size < 2 or not step:
        return t, y
    gaps = np.flatnonzero(np.diff(t) > 1.5 * step) + 1
    if gaps.size == 0:
        return t, y
    t = np.insert(t.astype(float), gaps, np.nan)
    y = np.insert(y.astype(float), gaps, np.nan)
    return t, y


def style_plot(plot: pg.PlotItem, left: str, bottom: str | None) -> None:
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setMenuEnabled(False)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(COLORS["border"])  # before the labels: setPen recolours them
        axis.setTextPen(COLORS["muted"])
        axis.enableAutoSIPrefix(False)
    style = {"color": COLORS["muted"], "font-size": "9pt"}
    plot.setLabel("left", left, **style)
    if bottom:
        plot.setLabel("bottom", bottom, **style)


class LogAxis(pg.AxisItem):
    """A log-scale axis labelled in plain numbers at 1, 2 and 5 per decade (not 2·10¹)."""

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        out = []
        for v in values:
            x = 10 ** float(v)
            lead = round(x / 10 ** np.floor(np.log10(x)), 6) if x > 0 else 0
            out.append(f"{x:g}" if lead in (1, 2, 5) else "")
        return out


def _legend_html(title: str, items: dict[str, str]) -> str:
    chips = "&nbsp;&nbsp;".join(
        f"<span style='color:{color}'>{'□' if name == 'pending' else '■'}</span>&nbsp;{name}"
        for name, color in items.items()
    )
    return f"{title}&nbsp;&nbsp;&nbsp;{chips}"


class SignalPlots(WholeLayoutWidget):
    """ROI mean signal per TR (top) over the run's trial timeline (bottom), x in seconds."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.ci.setContentsMargins(4, 4, 8, 4)
        self.trace_plot = self.addPlot(row=0, col=0)
        style_plot(self.trace_plot, "ROI mean (% change)", None)
        self.trace_plot.setTitle("ROI mean signal", color=COLORS["muted"], size="9pt")
        self.trace = self.trace_plot.plot(pen=pg.mkPen(COLORS["accent"], width=1.5))
        self.now_lines = []
        self.timeline = self.addPlot(row=1, col=0)
        style_plot(self.timeline, "trials", "time in run (s)")
        self._legend = {k: TRIAL_COLORS[k] for k in ("hit", "miss", "unscored")}
        self._legend["pending"] = _PENDING_PEN.color().name()
        self._set_legend(reconstructs=False)
        self.timeline.setXLink(self.trace_plot)
        for plot in (self.trace_plot, self.timeline):
            plot.enableAutoRange(x=False)  # the x range follows the run (see follow_range)
        self.timeline.setYRange(-0.2, 1.8, padding=0)
        self.timeline.getAxis("left").setTicks([[]])
        self.timeline.setMouseEnabled(y=False)
        self.ci.layout.setRowStretchFactor(0, 3)
        self.ci.layout.setRowStretchFactor(1, 2)
        self.bars = pg.BarGraphItem(x0=[], y0=[], width=[], height=[])
        self.timeline.addItem(self.bars)
        self.decodes = pg.ScatterPlotItem(symbol="t", size=9, pen=None)
        self.timeline.addItem(self.decodes)
        self.links = pg.PlotCurveItem(pen=pg.mkPen("#5a6270", width=1), connect="pairs")
        self.timeline.addItem(self.links)
        self.recons = pg.ScatterPlotItem(
            symbol="d", size=8, pen=None, brush=pg.mkBrush(COLORS["accent"])
        )
        self.timeline.addItem(self.recons)
        self._reconstructs = False
        for plot in (self.trace_plot, self.timeline):
            line = pg.InfiniteLine(angle=90, pen=pg.mkPen(COLORS["roi"], width=1))
            line.setOpacity(0.7)
            plot.addItem(line)
            self.now_lines.append(line)
        self._drawn = {"trace": -1, "trials": -1, "session": -1}
        self._run: str | None = None
        self._follow = True  # until the operator pans or zooms
        self._x: tuple[float, float] | None = None
        for plot in (self.trace_plot, self.timeline):
            plot.getViewBox().sigRangeChangedManually.connect(self._stop_following)

    def _set_legend(self, *, reconstructs: bool) -> None:
        """The timeline's title: the stimulus bars' colours, then the marks (◆, reconstructed,
        once a session reconstructs); short, so the plot fits a narrow column."""
        marks = "▼&nbsp;decoded" + ("&nbsp;&nbsp;◆&nbsp;reconstructed" if reconstructs else "")
        self.timeline.setTitle(
            _legend_html("Trials", self._legend) + f"&nbsp;&nbsp;&nbsp;{marks}",
            color=COLORS["muted"],
            size="9pt",
        )
        self.refit()

    def _stop_following(self, *_) -> None:
        self._follow = False

    def _set_x(self, xr: tuple[float, float]) -> None:
        if xr != self._x:
            self._x = xr
            self.trace_plot.setXRange(*xr, padding=0.01)

    def update_from(self, snap: Snapshot) -> None:
        v = snap.versions
        if v["session"] != self._drawn["session"]:
            self._drawn["session"] = v["session"]
            s = snap.session
            now = None if snap.tr_index is None or not s.tr else snap.tr_index * s.tr
            if s.run != self._run:  # a new run: follow it again
                self._run, self._follow = s.run, True
            if self._follow:
                self._set_x(follow_range(now, s.tr * s.n_volumes if s.tr and s.n_volumes else None))
            for line in self.now_lines:
                line.setVisible(now is not None)
                if now is not None:
                    line.setPos(now)
        if v["trace"] != self._drawn["trace"]:
            self._drawn["trace"] = v["trace"]
            t, y = with_breaks(snap.trace_time, percent_change(snap.trace_mean), snap.session.tr)
            self.trace.setData(t, y, connect="finite")
        if v["trials"] != self._drawn["trials"]:
            self._drawn["trials"] = v["trials"]
            self._draw_trials(snap.trials)

    def _draw_trials(self, trials: list[TrialInfo]) -> None:
        if not trials:
            self.bars.setOpts(x0=[], y0=[], width=[], height=[], brushes=[])
            self.decodes.setData([], [])
            self.links.setData([], [])
            self.recons.setData([], [])
            return
        brushes = [pg.mkBrush(TRIAL_COLORS[trial_state(t)]) for t in trials]
        self.bars.setOpts(
            x0=[t.onset for t in trials],
            y0=[0.0] * len(trials),
            width=[max(t.duration, 0.2) for t in trials],
            height=[0.8] * len(trials),
            brushes=brushes,
            pens=[_PENDING_PEN if trial_state(t) == "pending" else _NO_PEN for t in trials],
        )
        done = [t for t in trials if t.decode_time is not None]
        self.decodes.setData(
            [t.decode_time for t in done],
            [1.35] * len(done),
            brush=[pg.mkBrush(TRIAL_COLORS[trial_state(t)]) for t in done],
        )
        xs, ys = [], []
        for t in done:
            xs += [t.onset + t.duration / 2, t.decode_time]
            ys += [0.8, 1.25]
        self.links.setData(xs, ys)
        # a reconstructed trial: ◆ above its decode point (or its stimulus, joined late)
        made = [t for t in trials if t.reconstructed]
        self.recons.setData(
            [
                t.decode_time if t.decode_time is not None else t.onset + t.duration / 2
                for t in made
            ],
            [1.62] * len(made),
        )
        if made and not self._reconstructs:
            self._reconstructs = True
            self._set_legend(reconstructs=True)


class LatencyPlot(QtWidgets.QWidget):
    """Per-stage latency (ms, log scale) over the session, with the recent medians."""

    RECENT = 50

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.plot_widget = WholePlotWidget(axisItems={"left": LogAxis("left")})
        self.plot = self.plot_widget.getPlotItem()
        style_plot(self.plot, "latency (ms)", "session time (s)")
        self.plot.setTitle("Latency per stage", color=COLORS["muted"], size="9pt")
        self.plot.setLogMode(y=True)
        self.curves = {}
        for name in LIVE_SPANS:
            pen = pg.mkPen(SERIES_COLORS[name], width=1.4)
            if name in DASHED:
                pen.setStyle(QtCore.Qt.PenStyle.DashLine)
            self.curves[name] = self.plot.plot(pen=pen)
        layout.addWidget(self.plot_widget, 1)
        self.summary = QtWidgets.QLabel("p50 of the last 50: -")
        self.summary.setStyleSheet(f"color: {COLORS['muted']}; padding: 0 6px;")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self._drawn = -1

    def update_from(self, snap: Snapshot) -> None:
        if snap.versions["latency"] == self._drawn:
            return
        self._drawn = snap.versions["latency"]
        parts = []
        for name, (t, ms) in snap.latency.items():
            ok = ms > 0
            self.curves[name].setData(t[ok], ms[ok])
            if ms.size:
                parts.append(
                    f"<span style='color:{SERIES_COLORS[name]}'>{name}</span> "
                    f"{np.median(ms[-self.RECENT :]):.1f}"
                )
        self.summary.setText("p50 ms (last 50):  " + "  ·  ".join(parts) if parts else "p50: -")
