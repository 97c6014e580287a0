"""The console's retrieval panel: the latest trial's top-k retrieved images with the true one
marked, the true image, and the reconstruction card (with its blurry image in ``"full"``
mode)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from gui.qt import COLORS, pixmap, section_label
from gui.state import Recon, RetrievalInfo, Snapshot

THUMB = 112  # thumbnail size (px) at first
THUMB_MIN, THUMB_MAX = 56, 160  # the range the retrieval panel sizes them in to fit


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
        self.updateGeometry()  # now, not at the next layout pass: the panel measures its cards

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


def recon_placeholder(snap: Snapshot) -> str:
    """What the reconstruction card says before the session's first reconstruction."""
    if snap.recon_stage is not None:
        return "waiting for reconstructions"
    if snap.accuracy.decoded:  # a trial was decoded and no reconstruct stage ever reported
        return "none: this session does not reconstruct"
    return "waiting for the first trial"


def recon_caption(rec: Recon, retrieval: RetrievalInfo | None) -> str:
    """The reconstruction card's caption: its trial (and how far behind the retrieval shown
    it is), mode and compute time."""
    first = f"recon · trial {rec.trial}"
    if not rec.current and retrieval is not None:
        if retrieval.run != rec.run:
            first += f" of {rec.run}"
        elif rec.trial is not None and retrieval.trial is not None and retrieval.trial > rec.trial:
            first += f" ({retrieval.trial - rec.trial} behind)"
    second = [rec.mode] if rec.mode else []
    if rec.compute_ms is not None:
        second.append(f"{rec.compute_ms:.0f} ms")
    return first + ("\n" + " · ".join(second) if second else "")


def recon_tooltip(rec: Recon) -> str:
    """Everything the reconstruction's message said about it, one item a line."""
    lines = [f"reconstruction of {rec.run or '?'} trial {rec.trial}"]
    if rec.image_id is not None:
        lines.append(f"seen image id {rec.image_id}")
    if rec.mode:
        lines.append(f"mode {rec.mode}" + (f" ({rec.generator})" if rec.generator else ""))
    if rec.compute_ms is not None:
        lines.append(f"computed in {rec.compute_ms:.0f} ms")
    if rec.backlog:
        lines.append(f"{rec.backlog} trial(s) were queued behind it")
    h, w = rec.image.shape[:2]
    lines.append(f"image {w}×{h}" + ("" if rec.blurry is None else ", blurry image beside it"))
    return "\n".join(lines)


def _fresh_minimum(layout: QtWidgets.QLayout) -> QtCore.QSize:
    """``layout``'s minimum size now: its nested layouts' cached sizes are dropped first
    (Qt refreshes them only at its next layout pass, after a resize event has used them)."""
    items = [layout]
    while items:
        item = items.pop()
        item.invalidate()
        inner = item.layout()
        if inner is not None:
            items += [inner.itemAt(i) for i in range(inner.count())]
    return layout.minimumSize()


class RetrievalPanel(QtWidgets.QWidget):
    """Top-k retrieved images of the latest trial, the true one marked; the true image and
    the reconstruction area beside them.

    The reconstruction card shows the newest reconstruction (framed in the accent colour
    while it is of the trial whose retrieval is shown; reconstructions may lag behind), with
    its blurry low-level image in a small card beside it in ``"full"`` mode.  Before the first
    one it says whether a reconstruct stage is running (:func:`recon_placeholder`).
    """

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
        row.addWidget(self.recon)
        self.blurry = ImageCard(THUMB // 2)
        self.blurry.caption.setText("blurry")
        self.blurry.setToolTip("the low-level (blurry) image the reconstruction started from")
        column = QtWidgets.QVBoxLayout()
        column.addWidget(self.blurry)
        column.addStretch(1)
        row.addLayout(column)
        self.blurry.setVisible(False)
        self._blurry_on = False
        self._recon_drawn: tuple | None = None
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

    def _thumb_widths(self) -> float:
        """The panel's images side by side, in thumbnail widths (the blurry one is half)."""
        return self.k + 2 + 0.5 * self._blurry_on

    def _room(self) -> tuple[int, int]:
        """The width and height the panel needs besides its thumbnails (measured on its
        layout: margins, captions, frames, title)."""
        need = _fresh_minimum(self.layout())
        return (
            need.width() - int(np.ceil(self._thumb_widths() * self.thumb)) + 2,
            need.height() - self.thumb,
        )

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt's name
        """The size with the smallest thumbnails: a layout may give the panel any size from
        there and it fits its thumbnails to it (:meth:`_fit`)."""
        w, h = self._room()
        return QtCore.QSize(w + int(np.ceil(self._thumb_widths() * THUMB_MIN)), h + THUMB_MIN)

    def _fit(self) -> bool:
        """Size the thumbnails so that the k cards, the true image and the reconstruction (and
        the half-size blurry image) fit the panel's width and height."""
        w, h = self._room()
        size = min((self.width() - w) / self._thumb_widths(), self.height() - h)
        size = max(THUMB_MIN, min(THUMB_MAX, int(size)))
        if size == self.thumb:
            return False
        self.thumb = size
        for card in (*self.cards, self.truth, self.recon):
            card.set_size(size)
        self.blurry.set_size(size // 2)
        self.updateGeometry()
        return True

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self._fit() and self._snap is not None:
            self._redraw_all()

    def _redraw_all(self) -> None:
        self._drawn = {"retrieval": -1, "recon": -1}
        self._recon_drawn = None
        self.update_from(self._snap)

    def _show_blurry(self, on: bool) -> None:
        if on == self._blurry_on:
            return
        self._blurry_on = on
        self.blurry.setVisible(on)
        if self._fit() and self._snap is not None:
            self._redraw_all()

    def _update_recon(self, snap: Snapshot) -> None:
        rec = snap.recon
        if rec is None:
            state = ("none", recon_placeholder(snap))
        else:
            r = snap.retrieval
            state = ("recon", snap.versions["recon"], rec.current, r and (r.run, r.trial))
        if state == self._recon_drawn:
            return
        self._recon_drawn = state
        if rec is None:
            self.recon.set_image(None, f"reconstruction\n\n{state[1]}")
            self.recon.caption.setText("")
            self.recon.set_mark(None)
            self.recon.setToolTip("the newest trial's reconstruction, once one arrives")
            self._show_blurry(False)
            return
        self._show_blurry(rec.blurry is not None)
        if rec.blurry is not None:
            self.blurry.set_image(pixmap(rec.blurry, self.blurry.size))
        self.recon.set_image(pixmap(rec.image, self.thumb))
        self.recon.caption.setText(recon_caption(rec, snap.retrieval))
        self.recon.set_mark(COLORS["accent"] if rec.current else None)
        self.recon.setToolTip(recon_tooltip(rec))

    def update_from(self, snap: Snapshot) -> None:
        self._snap = snap
        self._update_recon(snap)
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
        if self._fit():  # new captions and marks may need a little more room
            self._redraw_all()
