"""Qt plumbing of the console and viewer (:mod:`gui.qt`): colours and images."""

from __future__ import annotations

import numpy as np

from gui.qt import HEALTH_COLORS, SERIES_COLORS, pixmap, qimage
from gui.state import HEALTH_STATES
from rt_base.names import LIVE_SPANS


def test_every_live_span_and_health_state_has_its_own_colour():
    assert list(SERIES_COLORS) == list(LIVE_SPANS)
    assert len(set(SERIES_COLORS.values())) == len(LIVE_SPANS)
    assert set(HEALTH_COLORS) == set(HEALTH_STATES)
    assert len(set(HEALTH_COLORS.values())) == len(HEALTH_STATES)


def test_images_keep_their_pixels_and_scale_keeping_their_aspect(qtbot):
    rgb = np.zeros((4, 8, 3), np.uint8)
    rgb[:, 4:] = (10, 20, 30)
    image = qimage(rgb)
    assert (image.width(), image.height()) == (8, 4)
    c = image.pixelColor(6, 1)
    assert (c.red(), c.green(), c.blue()) == (10, 20, 30)
    pm = pixmap(rgb, 16)
    assert (pm.width(), pm.height()) == (16, 8)
