"""Qt plumbing shared by the console and the viewer: the application, the theme, images.

Importing this module imports PySide6.  On a machine without a display set
``QT_QPA_PLATFORM=offscreen`` before importing it (the CLI does so for ``--screenshot``).
"""

from __future__ import annotations

import sys

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui, QtWidgets

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
HEALTH_COLORS = {k: COLORS[k] for k in ("ok", "stale", "error", "stopped", "waiting")}
#: latency series colours
SERIES_COLORS = {
    "source": "#58a6ff",
    "preprocess": "#3fb950",
    "estimate": "#d29922",
    "decode": "#bc8cff",
    "end-to-end": "#f0f6fc",
}


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


def panel_frame() -> QtWidgets.QFrame:
    """A framed panel background."""
    frame = QtWidgets.QFrame()
    frame.setObjectName("panel")
    frame.setStyleSheet(
        f"QFrame#panel {{ background: {COLORS['panel']}; border: 1px solid {COLORS['border']};"
        " border-radius: 4px; }"
    )
    return frame
