"""The console's Qt panels: retrieval thumbnails, reconstruction area, accuracy, health, log."""

from __future__ import annotations

import html
import time
from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.qt import COLORS, HEALTH_COLORS, pixmap, section_label
from gui.state import STAGES, Snapshot

THUMB = 112  # thumbnail size (px)


class ThumbnailCache:
    """QPixmaps of stimulus images by id and size, bounded (least recently used go first)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._cache: OrderedDict[tuple[int, int, int], QtGui.QPixmap] = OrderedDict()

    def get(
        self, stimuli: np.ndarray | None, image_id: int | None, size: int = THUMB
    ) -> QtGui.QPixmap | None:
        if stimuli is None or image_id is None or not 0 <= image_id < len(stimuli):
            return None
        key = (id(stimuli), int(image_id), int(size))
        pm = self._cache.get(key)
        if pm is None:
            pm = pixmap(np.asarray(stimuli[int(image_id)]), size)
            self._cache[key] = pm
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return pm


class ImageCard(QtWidgets.QFrame):
    """One image with a caption; a coloured frame marks it (e.g. the true image)."""

    def __init__(self, size: int = THUMB, parent=None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.image = QtWidgets.QLabel()
        self.image.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.image.setStyleSheet(
            f"background: {COLORS['window']}; color: {COLORS['muted']}; font-size: 8pt;"
        )
        self.image.setWordWrap(True)
        self.caption = QtWidgets.QLabel("")
        self.caption.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.caption.setStyleSheet("font-size: 8.5pt;")
        self.caption.setWordWrap(True)
        layout.addWidget(self.image)
        layout.addWidget(self.caption)
        self.marked = False
        self.set_mark(None)
        self.set_size(size)

    def set_size(self, size: int) -> None:
        self.size = int(size)
        self.image.setFixedSize(self.size, self.size)
        self.caption.setFixedWidth(self.size)

    def set_mark(self, color: str | None) -> None:
        self.marked = color is not None
        border = color or COLORS["border"]
        width = 3 if color else 1
        self.setStyleSheet(
            f"ImageCard {{ border: {width}px solid {border}; border-radius: 4px;"
            f" background: {COLORS['panel']}; }}"
        )

    def set_image(self, pm: QtGui.QPixmap | None, text: str = "") -> None:
        if pm is None:
            self.image.clear()
            self.image.setText(text)
        else:
            self.image.setPixmap(pm)


class RetrievalPanel(QtWidgets.QWidget):
    """Top-k retrieved images of the latest trial, the true one marked; the true image and
    the reconstruction area beside them."""

    def __init__(self, k: int = 5, parent=None) -> None:
        super().__init__(parent)
        self.thumbs = ThumbnailCache()
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 6, 8, 6)
        outer.setSpacing(4)
        self.title = section_label("RETRIEVAL  —  waiting for the first decoded trial")
        outer.addWidget(self.title)
        row = QtWidgets.QHBoxLayout()
        row.setSpacing(6)
        self.cards_box = QtWidgets.QHBoxLayout()
        self.cards_box.setSpacing(6)
        row.addLayout(self.cards_box)
        row.addStretch(1)
        sep = QtWidgets.QFrame()
        sep.setFrameShape(QtWidgets.QFrame.Shape.VLine)
        sep.setStyleSheet(f"color: {COLORS['border']};")
        row.addWidget(sep)
        self.truth = ImageCard()
        self.truth.set_image(None, "true image")
        row.addWidget(self.truth)
        self.recon = ImageCard()
        self.recon.set_image(None, "reconstruction\n\nnone: this pipeline has no reconstruct stage")
        self.recon.setToolTip(
            "A reconstruction appears here when the pipeline publishes a 'recon' image"
        )
        row.addWidget(self.recon)
        outer.addLayout(row)
        outer.addStretch(1)
        self.cards: list[ImageCard] = []
        self.k = 0
        self.thumb = THUMB
        self._set_k(k)
        self._drawn = {"retrieval": -1, "recon": -1}
        self._snap: Snapshot | None = None

    def _set_k(self, k: int) -> None:
        self.k = k
        while len(self.cards) < k:
            card = ImageCard(self.thumb)
            self.cards.append(card)
            self.cards_box.addWidget(card)
        for i, card in enumerate(self.cards):
            card.setVisible(i < k)
        self._fit()

    def _fit(self) -> bool:
        """Size the thumbnails so that k cards + true image + reconstruction fit the width."""
        n = self.k + 2
        size = int((self.width() - 16 - 20 - n * 14) / max(n, 1))
        size = max(56, min(160, size))
        if size == self.thumb:
            return False
        self.thumb = size
        for card in (*self.cards, self.truth, self.recon):
            card.set_size(size)
        return True

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self._fit() and self._snap is not None:
            self._drawn = {"retrieval": -1, "recon": -1}
            self.update_from(self._snap)

    def update_from(self, snap: Snapshot) -> None:
        self._snap = snap
        if snap.versions["recon"] != self._drawn["recon"]:
            self._drawn["recon"] = snap.versions["recon"]
            rec = snap.recon
            if rec is not None:
                self.recon.set_image(pixmap(rec.image, self.thumb))
                self.recon.caption.setText(f"reconstruction\ntrial {rec.trial}")
                self.recon.set_mark(COLORS["accent"])
        if snap.versions["retrieval"] == self._drawn["retrieval"]:
            return
        self._drawn["retrieval"] = snap.versions["retrieval"]
        r = snap.retrieval
        if r is None:
            return
        k = int(r.ids.size)
        self._set_k(k)
        where = f"{r.run} · trial {r.trial}"
        if r.split:
            where += f" · {r.split}"
        if r.repetition:
            where += f" · rep {r.repetition}"
        self.title.setText(f"TOP-{k} RETRIEVAL  —  {where}")
        for i, card in enumerate(self.cards[:k]):
            image_id = int(r.ids[i])
            is_true = r.true_id is not None and image_id == r.true_id
            score = float(r.scores[i]) if i < r.scores.size else float("nan")
            card.set_image(self.thumbs.get(snap.stimuli, image_id, self.thumb), f"image {image_id}")
            mark = "✓ " if is_true else ""
            card.caption.setText(f"{mark}#{i + 1} · id {image_id}\nscore {score:.2f}")
            card.caption.setStyleSheet(
                f"font-size: 8.5pt; color: {COLORS['true'] if is_true else COLORS['text']};"
                + (" font-weight: 700;" if is_true else "")
            )
            card.set_mark(COLORS["true"] if is_true else None)
        if r.true_id is None:
            self.truth.set_image(None, "true image unknown\n(live session)")
            self.truth.caption.setText("")
        else:
            self.truth.set_image(
                self.thumbs.get(snap.stimuli, r.true_id, self.thumb), f"image {r.true_id}"
            )
            rank = f"rank {r.rank} of {r.ways}" if r.rank is not None else "not in the bank"
            self.truth.caption.setText(f"seen · id {r.true_id}\n{rank}")
        self.truth.set_mark(COLORS["true"] if r.true_id is not None else None)


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
        self.spark = pg.PlotWidget(axisItems={"bottom": IntegerAxis("bottom")})
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
    """One coloured chip per stage: ok / stale / error / stopped / waiting."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        self.chips: dict[str, QtWidgets.QLabel] = {}
        for name in STAGES:
            chip = QtWidgets.QLabel()
            self.chips[name] = chip
            layout.addWidget(chip)
        self.states: dict[str, str] = {}

    def update_from(self, snap: Snapshot) -> None:
        for name, chip in self.chips.items():
            h = snap.health.get(name)
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
