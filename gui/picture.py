"""Pictures of the console: a window saved as PNG, or a model rendered offscreen to one.

``mindeye-rt console --screenshot`` saves the live window with :func:`save_window_png`;
:func:`render_console_png` draws a console for a model already fed (e.g. a synthetic session,
as for the README's picture: ``python -m tests.gui.console_picture docs/console.png``).
Set ``QT_QPA_PLATFORM=offscreen`` before importing Qt on a machine without a display.
"""

from __future__ import annotations

from pathlib import Path

from rt_base.atomic import write_with
from rt_base.errors import StageError


def save_window_png(window, path: str | Path) -> Path:
    """Save what ``window`` (a QWidget) shows now as a PNG at ``path``, whole or not at all.

    Raises
    ------
    StageError
        When Qt cannot write the file (e.g. the folder is read-only).
    """
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    image = window.grab()

    def write(tmp: Path) -> None:
        if not image.save(str(tmp), "PNG"):
            raise StageError(f"cannot write the picture {str(out)!r}")

    return write_with(out, write)


def render_console_png(model, path: str | Path, size: tuple[int, int] = (1600, 1000)) -> Path:
    """Draw an operator console of ``model`` (a fed :class:`~gui.model.SessionModel`) at
    ``size`` (width, height in pixels) and save it as a PNG at ``path``.

    Returns
    -------
    path : the PNG written.
    """
    from PySide6 import QtWidgets

    from gui.console import ConsoleWindow
    from gui.qt import ensure_app

    ensure_app()
    window = ConsoleWindow(model, confirm_stop=False)
    try:
        window.timer.stop()  # one picture: no redraws of its own
        window.resize(*size)
        window.show()
        for _ in range(3):  # redraw, let the layout settle, redraw what its new sizes need
            window.refresh()
            QtWidgets.QApplication.processEvents()
        return save_window_png(window, path)
    finally:
        window.close()
        window.deleteLater()
