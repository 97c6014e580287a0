"""Pictures of the console: a model rendered offscreen to a PNG of the asked size."""

from __future__ import annotations

from PySide6 import QtGui

from gui.picture import render_console_png
from tests.gui.synthetic import fed_model


def test_render_console_png_writes_the_whole_window(qtbot, tmp_path):
    out = render_console_png(
        fed_model(n_volumes=12, motion="correct"), tmp_path / "c.png", (1280, 800)
    )
    image = QtGui.QImage(str(out))
    assert (image.width(), image.height()) == (1280, 800)
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temporary file left
