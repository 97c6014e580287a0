"""The console's smaller Qt panels: running accuracy, stage health, log (the retrieval panel is
in :mod:`gui.retrieval_panel`)."""

from __future__ import annotations

import html
import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.qt import COLORS, HEALTH_COLORS, WholePlotWidget, section_label
from gui.state import Snapshot
from rt_base.names import OPTIONAL_STAGES, STAGE_NAMES


class IntegerAxis(pg.AxisItem):
    """An axis that labels whole numbers only (counts of trials)."""

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        return [f"{v:.0f}" if abs(v - round(v)) < 1e-9 else "" for v in values]


class AccuracyPanel(QtWidgets.QWidget):
    """Running top-1 accuracy over scored trials, with chance and a sparkline."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        text = QtWidgets.QVBoxLayout()
        text.addWidget(section_label("RUNNING ACCURACY"))
        self.big = QtWidgets.QLabel("–")
        self.big.setStyleSheet(f"font-size: 26pt; font-weight: 700; color: {COLORS['text']};")
        text.addWidget(self.big)
        self.detail = QtWidgets.QLabel("no scored trial yet")
        self.detail.setStyleSheet(f"color: {COLORS['muted']};")
        self.detail.setWordWrap(True)
        text.addWidget(self.detail)
        text.addStretch(1)
        layout.addLayout(text, 2)
        self.spark = WholePlotWidget(axisItems={"bottom": IntegerAxis("bottom")})
        self.spark.setMinimumHeight(80)
        plot = self.spark.getPlotItem()
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(False, False)
        plot.hideButtons()
        plot.showGrid(y=True, alpha=0.15)
        plot.setYRange(0, 1, padding=0.05)
        plot.getAxis("left").setTicks([[(0, "0"), (0.5, "50%"), (1, "100%")]])
        plot.getAxis("left").setTextPen(COLORS["muted"])
        plot.getAxis("bottom").setTextPen(COLORS["muted"])
        plot.setLabel("bottom", "scored trials", color=COLORS["muted"])
        self.curve = plot.plot(pen=pg.mkPen(COLORS["ok"], width=1.6))
        self.chance = pg.InfiniteLine(
            angle=0, pen=pg.mkPen(COLORS["muted"], style=QtCore.Qt.PenStyle.DashLine)
        )
        plot.addItem(self.chance)
        self.chance.setVisible(False)
        layout.addWidget(self.spark, 3)
        self._drawn = -1

    def update_from(self, snap: Snapshot) -> None:
        if snap.versions["retrieval"] == self._drawn:
            return
        self._drawn = snap.versions["retrieval"]
        a = snap.accuracy
        if a.top1_rate is None:
            self.big.setText("–")
            self.detail.setText(f"{a.decoded} decoded, none scored yet")
            return
        self.big.setText(f"top-1 {100 * a.top1_rate:.0f}%")
        parts = [f"{a.top1}/{a.scored} scored trials"]
        if a.k > 1:
            parts.append(f"top-{a.k} {100 * a.topk_rate:.0f}%")
        if a.chance:
            parts.append(f"chance {100 * a.chance:.1f}% ({a.ways}-way)")
        parts.append(f"mean rank {a.mean_rank:.1f}")
        self.detail.setText("  ·  ".join(parts))
        hist = snap.accuracy_history
        self.curve.setData(np.arange(1, hist.size + 1), hist)
        if a.chance:
            self.chance.setPos(a.chance)
            self.chance.setVisible(True)


class HealthStrip(QtWidgets.QWidget):
    """One coloured chip per stage: ok / stale / error / stopped / waiting.

    An optional stage (:data:`~rt_base.names.OPTIONAL_STAGES`, e.g. reconstruct) has a chip
    only while the model reports its health, i.e. in a session that runs it.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        self.chips: dict[str, QtWidgets.QLabel] = {}
        for name in STAGE_NAMES:
            chip = QtWidgets.QLabel()
            self.chips[name] = chip
            layout.addWidget(chip)
        self.states: dict[str, str] = {}

    def update_from(self, snap: Snapshot) -> None:
        for name, chip in self.chips.items():
            h = snap.health.get(name)
            if name in OPTIONAL_STAGES:
                chip.setVisible(h is not None)
                if h is None:
                    self.states.pop(name, None)
                    continue
            state = h.state if h else "waiting"
            self.states[name] = state
            color = HEALTH_COLORS[state]
            chip.setText(f"<span style='color:{color}'>●</span> {name}")
            tip = f"{name}: {state}"
            if h and h.detail:
                tip += f" ({h.detail})"
            chip.setToolTip(tip)


class LogPane(QtWidgets.QPlainTextEdit):
    """The session's log lines (bounded), newest at the bottom, levels coloured."""

    LEVEL_COLORS = {"error": COLORS["error"], "warning": COLORS["stale"], "info": COLORS["muted"]}

    def __init__(self, max_lines: int = 1000, parent=None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(8.5)
        self.setFont(font)
        self.setPlaceholderText("log")
        self._last_serial = 0

    def update_from(self, snap: Snapshot) -> None:
        new = [e for e in snap.log if e.serial > self._last_serial]
        if not new:
            return
        self._last_serial = new[-1].serial
        for e in new:
            stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
            color = self.LEVEL_COLORS.get(e.level, COLORS["text"])
            self.appendHtml(
                f"<span style='color:{COLORS['muted']}'>{stamp}</span> "
                f"<span style='color:{color}'>{html.escape(e.level.upper()):7s}</span> "
                f"<b>{html.escape(e.stage)}</b>: {html.escape(e.text)}"
            )
