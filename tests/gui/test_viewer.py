"""The participant viewer (pytest-qt, offscreen): the top-1 image or each trial's
reconstruction, placement on a screen, and its warning when reconstructions never come."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gui.viewer import ViewerWindow
from rt_base.errors import ConfigError
from rt_wire.message import Message
from tests.gui.synthetic import (
    over_the_wire,
    pixel_at,
    recon_image,
    recon_message,
    recon_session,
    retrieval_message,
)


def test_viewer_shows_the_top1_image_only(qtbot, model, dataset):
    viewer = ViewerWindow(model, feedback="top1")
    qtbot.addWidget(viewer)
    viewer.place(0, windowed=True)
    viewer.refresh()
    r = model.snapshot().retrieval
    assert viewer.shown == ("run-01", r.trial)
    np.testing.assert_array_equal(viewer.image, dataset.stimuli()[int(r.ids[0])])
    assert not viewer.label.pixmap().isNull()
    assert viewer.findChildren(type(viewer.label)) == [viewer.label]  # nothing else on screen


def test_viewer_in_recon_mode_shows_nothing_until_a_reconstruction(qtbot, model):
    viewer = ViewerWindow(model, feedback="recon")
    qtbot.addWidget(viewer)
    viewer.refresh()
    assert viewer.image is None and viewer.label.pixmap().isNull()
    model.feed(
        Message("recon", run="run-01", index=3, buffers={"image": np.full((8, 8, 3), 7, np.uint8)})
    )
    viewer.refresh()
    assert viewer.shown == ("run-01", 3) and viewer.image.max() == 7


def test_the_viewer_shows_each_trials_reconstruction(qtbot):
    model = recon_session("full")
    viewer = ViewerWindow(model, feedback="recon")
    qtbot.addWidget(viewer)
    viewer.place(0, windowed=True)
    viewer.refresh()
    assert viewer.shown == ("run-01", 4)
    np.testing.assert_array_equal(viewer.image, recon_image(4))  # the image, not the blurry one
    pm = viewer.label.pixmap()
    assert pm.width() == int(0.7 * min(viewer.width(), viewer.height()))
    assert pixel_at(pm, 0.2) == tuple(int(v) for v in recon_image(4)[0, 0])
    assert pixel_at(pm, 0.8) == tuple(int(v) for v in recon_image(4)[0, -1])
    model.feed_many(over_the_wire([retrieval_message(5)]))
    viewer.refresh()
    assert viewer.shown == ("run-01", 4)  # a retrieval is not the feedback in recon mode
    model.feed_many(over_the_wire([recon_message(5)]))
    viewer.refresh()
    assert viewer.shown == ("run-01", 5)
    np.testing.assert_array_equal(viewer.image, recon_image(5))
    assert not viewer.warned_no_recon


def test_the_viewer_warns_when_it_waits_for_reconstructions_that_never_come(qtbot, caplog):
    viewer = ViewerWindow(recon_session(None), feedback="recon")
    qtbot.addWidget(viewer)
    with caplog.at_level(logging.WARNING, logger="mindeye_rt.viewer"):
        viewer.refresh()
        viewer.refresh()
    assert viewer.image is None and viewer.warned_no_recon
    warnings = [r.getMessage() for r in caplog.records if r.name == "mindeye_rt.viewer"]
    assert len(warnings) == 1 and "no reconstruct stage reports" in warnings[0]


def test_viewer_refuses_a_screen_that_does_not_exist(qtbot, model):
    viewer = ViewerWindow(model)
    qtbot.addWidget(viewer)
    with pytest.raises(ConfigError, match="'screen' must be a screen index from 0 to 0, got 5"):
        viewer.place(5)
    with pytest.raises(ConfigError, match="'feedback' must be one of 'top1', 'recon'"):
        ViewerWindow(model, feedback="best")


def test_viewer_goes_full_screen_on_the_chosen_screen(qtbot, model):
    viewer = ViewerWindow(model)
    qtbot.addWidget(viewer)
    viewer.place(0)
    assert viewer.isFullScreen()
    viewer.refresh()
    side = viewer.label.pixmap().width()
    assert side == int(0.7 * min(viewer.width(), viewer.height()))
