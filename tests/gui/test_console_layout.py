"""The console's layout stays whole: at common operator screen sizes, with a realistic session
on show, every panel lies inside the window, gets at least its minimum size, and draws its
plots without cutting them off."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6 import QtCore, QtWidgets

from gui.console import ConsoleWindow
from tests.gui.synthetic_session import empty_model, feed_in_time, realistic_messages

SIZES = ((1280, 800), (1600, 1000))


def panel_widgets(window: ConsoleWindow) -> dict[str, QtWidgets.QWidget]:
    """The console's panels by name."""
    return window.panels


def visible_rect(widget: QtWidgets.QWidget, window: QtWidgets.QWidget) -> QtCore.QRect:
    """The part of ``widget`` (in ``window``'s coordinates) that its parents do not clip."""
    rect = QtCore.QRect(widget.mapTo(window, QtCore.QPoint(0, 0)), widget.size())
    parent = widget.parentWidget()
    while parent is not None and parent is not window:
        rect &= QtCore.QRect(parent.mapTo(window, QtCore.QPoint(0, 0)), parent.size())
        parent = parent.parentWidget()
    return rect & window.rect()


def layout_problems(window: ConsoleWindow) -> list[str]:
    """What is cut off in ``window``: panels outside the window or hidden by their parents,
    smaller than their minimum size hint, or with plots larger than their view."""
    problems = []
    w, h = window.width(), window.height()
    for name, panel in panel_widgets(window).items():
        if not panel.isVisible():
            problems.append(f"{name} is not shown")
            continue
        whole = QtCore.QRect(panel.mapTo(window, QtCore.QPoint(0, 0)), panel.size())
        shown = visible_rect(panel, window)
        if shown != whole:
            problems.append(f"{name}: only {shown} of {whole} is visible in the {w}x{h} window")
        hint = panel.minimumSizeHint()
        if panel.layout() is not None:  # what its contents need now, e.g. thumbnails' sizes
            hint = hint.expandedTo(panel.layout().minimumSize())
        if panel.width() < hint.width() or panel.height() < hint.height():
            problems.append(f"{name} is {panel.size()}, smaller than its minimum {hint}")
        views = [panel] if isinstance(panel, pg.GraphicsView) else []
        for view in views + panel.findChildren(pg.GraphicsView):
            if not view.isVisible():
                continue
            need, room = view.centralWidget.size(), view.viewport().size()
            if need.width() > room.width() + 0.5 or need.height() > room.height() + 0.5:
                problems.append(
                    f"{name}: its plots need {need.width():.0f}x{need.height():.0f} "
                    f"but get {room.width()}x{room.height()} (cut off)"
                )
    return problems


@pytest.fixture(scope="module")
def messages():
    return realistic_messages()


@pytest.mark.parametrize("first", SIZES, ids=lambda s: f"from{s[0]}x{s[1]}")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_panel_stays_whole_at_common_screen_sizes(qtbot, messages, size, first):
    """The console opens at size ``first`` before the session streams, as in the scanner room,
    redraws as the telemetry comes in, and is then resized to ``size`` (or stays)."""
    model = empty_model()
    window = ConsoleWindow(model, confirm_stop=False)
    qtbot.addWidget(window)
    window.resize(*first)
    window.show()
    for start in range(0, len(messages), 400):
        feed_in_time(model, messages[start : start + 400])
        window.refresh()
        QtWidgets.QApplication.processEvents()
    window.resize(*size)
    QtWidgets.QApplication.processEvents()
    window.refresh()
    QtWidgets.QApplication.processEvents()
    assert (window.width(), window.height()) == size  # no minimum size made it larger
    assert window.last_snapshot.motion is not None and window.last_snapshot.retrieval is not None
    assert layout_problems(window) == []
