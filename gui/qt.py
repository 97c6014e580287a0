"""Qt plumbing shared by the console and the viewer: the application, the theme, images.

Importing this module imports PySide6.  On a machine without a display set
``QT_QPA_PLATFORM=offscreen`` before importing it (the CLI does so for ``--screenshot``).

PySide6 6.12.0 on CPython 3.11 returns ``None`` (and, from some virtual calls, ``True`` or
``False``) without taking a reference, so every such call lowers that object's reference count
by one; a console running for minutes then aborts with "Fatal Python error: none_dealloc".
CPython >= 3.12 is immune (those objects are immortal there).  On import this module checks
for the leak and, where it finds it, gives the three objects a reference count no session can
use up (:func:`guard_singleton_refcounts`); prefer a PySide6 without the bug (e.g. 6.11).
"""

from __future__ import annotations

import ctypes
import logging
import sys

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from gui.state import HEALTH_STATES
from rt_base.names import LIVE_SPANS

log = logging.getLogger("mindeye_rt.console")

_HEADROOM = 1 << 48  # references added per object: > 10^14 leaked calls

#: the console's colours (a dark theme: the scanner room is dim)
COLORS = {
    "window": "#15171c",
    "panel": "#1d2027",
    "border": "#2d323c",
    "text": "#d9dee7",
    "muted": "#8b93a3",
    "accent": "#4aa3ff",
    "ok": "#3fb950",
    "stale": "#d29922",
    "error": "#f85149",
    "stopped": "#8b949e",
    "waiting": "#5a6270",
    "roi": "#ffb020",
    "true": "#3fb950",
}
#: a colour per stage health state
HEALTH_COLORS = {k: COLORS[k] for k in HEALTH_STATES}
#: colours of the latency series, in the order of :data:`rt_base.names.LIVE_SPANS`
SERIES_PALETTE = ("#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#f0f6fc", "#f778ba", "#39c5cf")
#: latency span name -> its series colour (the palette repeats for spans beyond its length)
SERIES_COLORS = {name: SERIES_PALETTE[i % len(SERIES_PALETTE)] for i, name in enumerate(LIVE_SPANS)}


def pyside_leaks_none(calls: int = 64) -> bool:
    """Whether this PySide6 loses a reference to ``None`` on each call of a void method."""
    obj = QtCore.QObject()
    before = sys.getrefcount(None)
    for _ in range(calls):
        obj.setObjectName("probe")
    return before - sys.getrefcount(None) >= calls // 2


def guard_singleton_refcounts() -> bool:
    """Protect ``None``, ``True`` and ``False`` from PySide6's lost references (see the
    module docstring); returns True when the guard was needed and applied.

    Only on CPython < 3.12 with a PySide6 that shows the leak; it adds references to these
    statically allocated objects (never freed anyway), as CPython 3.12 makes them immortal.
    """
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if getattr(guard_singleton_refcounts, "applied", False):
        return True
    if not pyside_leaks_none():
        return False
    import PySide6

    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _HEADROOM
    guard_singleton_refcounts.applied = True  # type: ignore[attr-defined]
    log.warning(
        "PySide6 %s loses references to None on this Python %d.%d; guarded. Install a "
        "PySide6 without that bug (e.g. pip install 'PySide6-Essentials<6.12') or use "
        "Python >= 3.12.",
        PySide6.__version__,
        *sys.version_info[:2],
    )
    return True


guard_singleton_refcounts()


def ensure_app(argv: list[str] | None = None) -> QtWidgets.QApplication:
    """The process's QApplication (created once, themed)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(argv if argv is not None else sys.argv[:1])
        apply_theme(app)
    return app  # type: ignore[return-value]


def apply_theme(app: QtWidgets.QApplication) -> None:
    """Fusion style with a dark palette; pyqtgraph colours to match."""
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    c = {k: QtGui.QColor(v) for k, v in COLORS.items()}
    roles = QtGui.QPalette.ColorRole
    pal.setColor(roles.Window, c["window"])
    pal.setColor(roles.WindowText, c["text"])
    pal.setColor(roles.Base, c["panel"])
    pal.setColor(roles.AlternateBase, c["window"])
    pal.setColor(roles.Text, c["text"])
    pal.setColor(roles.Button, c["panel"])
    pal.setColor(roles.ButtonText, c["text"])
    pal.setColor(roles.Highlight, c["accent"])
    pal.setColor(roles.HighlightedText, QtGui.QColor("#000000"))
    pal.setColor(roles.ToolTipBase, c["panel"])
    pal.setColor(roles.ToolTipText, c["text"])
    pal.setColor(roles.PlaceholderText, c["muted"])
    disabled = QtGui.QPalette.ColorGroup.Disabled
    for role in (roles.ButtonText, roles.Text, roles.WindowText):
        pal.setColor(disabled, role, c["waiting"])
    app.setPalette(pal)
    font = app.font()
    font.setPointSizeF(max(font.pointSizeF(), 9.5))
    app.setFont(font)
    pg.setConfigOptions(
        antialias=True,
        background=COLORS["panel"],
        foreground=COLORS["text"],
        imageAxisOrder="col-major",
    )


def qimage(rgb: np.ndarray) -> QtGui.QImage:
    """(H, W, 3) uint8 array -> QImage (a copy; the array may be a memmap)."""
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w, _ = rgb.shape
    img = QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888)
    return img.copy()


def pixmap(rgb: np.ndarray, size: int | None = None) -> QtGui.QPixmap:
    """(H, W, 3) uint8 array -> QPixmap, scaled (smoothly, keeping aspect) to fit ``size``."""
    pm = QtGui.QPixmap.fromImage(qimage(rgb))
    if size:
        pm = pm.scaled(
            size,
            size,
            QtGui.Qt.AspectRatioMode.KeepAspectRatio,
            QtGui.Qt.TransformationMode.SmoothTransformation,
        )
    return pm


def section_label(text: str) -> QtWidgets.QLabel:
    """A panel title."""
    label = QtWidgets.QLabel(text)
    label.setStyleSheet(
        f"color: {COLORS['muted']}; font-weight: 600; letter-spacing: 0.5px; padding: 2px 0;"
    )
    return label


def scene_minimum(view: pg.GraphicsView) -> QtCore.QSize:
    """The smallest size at which ``view`` shows its plots, axes and titles whole."""
    need = view.centralWidget.effectiveSizeHint(QtCore.Qt.SizeHint.MinimumSize)
    frame = 2 * view.frameWidth()
    return QtCore.QSize(int(np.ceil(need.width())) + frame, int(np.ceil(need.height())) + frame)


class WholeLayoutWidget(pg.GraphicsLayoutWidget):
    """A :class:`pyqtgraph.GraphicsLayoutWidget` whose minimum size hint is what its plots
    need (:func:`scene_minimum`), so that Qt layouts and splitters never cut them off.

    Call :meth:`refit` after changing what its items show (a longer title, more tick digits).
    """

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt's name
        return scene_minimum(self).expandedTo(QtCore.QSize(40, 40))

    def refit(self) -> None:
        """Tell the enclosing layout when the minimum size changed."""
        hint = self.minimumSizeHint()
        if hint != getattr(self, "_fitted", None):
            self._fitted = hint
            self.updateGeometry()


class WholePlotWidget(pg.PlotWidget):
    """A :class:`pyqtgraph.PlotWidget` whose minimum size hint is what its plot needs."""

    minimumSizeHint = WholeLayoutWidget.minimumSizeHint  # noqa: N815 - Qt's name
    refit = WholeLayoutWidget.refit


def panel_frame() -> QtWidgets.QFrame:
    """A framed panel background."""
    frame = QtWidgets.QFrame()
    frame.setObjectName("panel")
    frame.setStyleSheet(
        f"QFrame#panel {{ background: {COLORS['panel']}; border: 1px solid {COLORS['border']};"
        " border-radius: 4px; }"
    )
    return frame
