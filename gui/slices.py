"""Three orthogonal slices of the latest volume with the ROI's outline."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from gui.qt import COLORS, WholeLayoutWidget
from gui.state import Snapshot

_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
#: (title, axis cut, horizontal axis, vertical axis)
VIEWS = (("Sagittal", 0, 1, 2), ("Coronal", 1, 0, 2), ("Axial", 2, 0, 1))


def axis_codes(affine: list[list[float]] | np.ndarray | None) -> tuple[str, str, str] | None:
    """Which way each voxel axis points, e.g. ``('R', 'A', 'S')``; None when unknown."""
    if affine is None:
        return None
    try:
        from nibabel.orientations import aff2axcodes

        codes = aff2axcodes(np.asarray(affine, float))
    except Exception:  # noqa: BLE001 - a singular affine: just no letters
        return None
    if any(c is None for c in codes):
        return None
    return tuple(codes)  # type: ignore[return-value]


def slice_of(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D plane ``index`` along ``axis`` (remaining axes in order), e.g. (X, Y) for z."""
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    return np.take(volume, index, axis=axis)


class SliceView:
    """One slice: image, ROI outline, crosshair, orientation letters, title."""

    def __init__(self, layout: pg.GraphicsLayout, col: int, title: str, axes: tuple[int, ...]):
        self.title, self.axis, self.h_axis, self.v_axis = title, *axes
        self.label = layout.addLabel(title, row=0, col=col, color=COLORS["muted"], size="9pt")
        self.vb = layout.addViewBox(row=1, col=col, lockAspect=True, enableMenu=False)
        self.vb.setBackgroundColor(COLORS["window"])
        self.image = pg.ImageItem()
        self.vb.addItem(self.image)
        self.outline = pg.IsocurveItem(level=0.5, pen=pg.mkPen(COLORS["roi"], width=1.6))
        self.outline.setParentItem(self.image)
        self.outline.setZValue(5)
        pen = pg.mkPen(COLORS["accent"], width=1, style=QtCore.Qt.PenStyle.DashLine)
        self.hline = pg.InfiniteLine(angle=0, pen=pen, movable=False)
        self.vline = pg.InfiniteLine(angle=90, pen=pen, movable=False)
        for line in (self.hline, self.vline):
            line.setOpacity(0.45)
            self.vb.addItem(line)
        self.letters = [pg.TextItem("", color=COLORS["muted"]) for _ in range(4)]
        for item in self.letters:
            self.vb.addItem(item, ignoreBounds=True)
        self.shape: tuple[int, int] | None = None

    def set_outline(self, plane: np.ndarray | None) -> None:
        if plane is None or not plane.any():
            self.outline.setData(None)
            return
        padded = np.pad(plane.astype(np.float32), 1)
        self.outline.setData(padded)
        self.outline.setPos(-0.5, -0.5)  # undo the padding, then move to pixel centres

    def set_plane(self, plane: np.ndarray, levels: tuple[float, float] | None) -> None:
        self.image.setImage(plane, autoLevels=levels is None, levels=levels)
        shape = plane.shape[:2]
        if shape != self.shape:
            self.shape = shape
            self.vb.setRange(
                xRange=(0, shape[0]), yRange=(0, shape[1]), padding=0.1, disableAutoRange=True
            )
            self._place_letters()

    def set_cross(self, h_index: int, v_index: int) -> None:
        self.vline.setPos(h_index + 0.5)
        self.hline.setPos(v_index + 0.5)

    def set_codes(self, codes: tuple[str, str, str] | None) -> None:
        if codes is None:
            texts = ["", "", "", ""]
        else:
            h, v = codes[self.h_axis], codes[self.v_axis]
            texts = [_OPPOSITE.get(h, ""), h, v, _OPPOSITE.get(v, "")]  # left right top bottom
        for item, text in zip(self.letters, texts, strict=True):
            item.setText(text)

    def _place_letters(self) -> None:
        if self.shape is None:
            return
        w, h = self.shape
        spots = [  # just outside the image: left, right, top, bottom
            (0, h / 2, (1, 0.5)),
            (w, h / 2, (0, 0.5)),
            (w / 2, h, (0.5, 1)),
            (w / 2, 0, (0.5, 0)),
        ]
        for item, (x, y, anchor) in zip(self.letters, spots, strict=True):
            item.setAnchor(anchor)
            item.setPos(x, y)


class SliceViews(WholeLayoutWidget):
    """Sagittal, coronal and axial slices of the newest volume, through the ROI."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.ci.setContentsMargins(4, 2, 4, 2)
        self.ci.setSpacing(4)
        self.views = [
            SliceView(self.ci, col, title, axes) for col, (title, *axes) in enumerate(VIEWS)
        ]
        self.placeholder = pg.TextItem(
            "waiting for volumes", color=COLORS["muted"], anchor=(0.5, 0.5)
        )
        self.views[1].vb.addItem(self.placeholder, ignoreBounds=True)
        self._drawn = {"volume": -1, "session": -1}
        self._mask_id: int | None = None
        self._pos: tuple[int, int, int] | None = None

    def update_from(self, snap: Snapshot) -> None:
        if snap.versions["session"] != self._drawn["session"]:
            self._drawn["session"] = snap.versions["session"]
            codes = axis_codes(snap.session.affine)
            for view in self.views:
                view.set_codes(codes)
        if snap.versions["volume"] == self._drawn["volume"]:
            return
        self._drawn["volume"] = snap.versions["volume"]
        vol = snap.volume
        if vol is None:
            self.placeholder.setVisible(True)
            for view in self.views:
                view.image.clear()
            return
        self.placeholder.setVisible(False)
        mask = (
            snap.roi_mask
            if snap.roi_mask is not None and snap.roi_mask.shape == vol.shape
            else None
        )
        pos = snap.slice_pos if mask is not None else None
        pos = pos or tuple(n // 2 for n in vol.shape)
        outline_changed = id(mask) != self._mask_id or pos != self._pos
        self._mask_id, self._pos = id(mask), pos
        for view in self.views:
            view.set_plane(slice_of(vol, view.axis, pos[view.axis]), snap.volume_levels)
            view.set_cross(pos[view.h_axis], pos[view.v_axis])
            if outline_changed:
                plane = None if mask is None else slice_of(mask, view.axis, pos[view.axis])
                view.set_outline(plane)
        index = "" if snap.volume_index is None else f"   TR {snap.volume_index}"
        for view in self.views:
            coord = "xyz"[view.axis]
            view.label.setText(f"{view.title}  {coord}={pos[view.axis]}{index}")
