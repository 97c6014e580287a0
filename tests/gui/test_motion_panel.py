"""The console's head-motion panel and status-line warning, fed synthetic sessions."""

from __future__ import annotations

import numpy as np

from gui.console import ConsoleWindow, motion_warning
from gui.model import SessionModel
from gui.motion_panel import NO_MOTION, WAITING, MotionPanel, over_text
from tests.gui.synthetic import fed_model, motion_series


def _panel(qtbot, model: SessionModel) -> MotionPanel:
    panel = MotionPanel()
    qtbot.addWidget(panel)
    panel.update_from(model.snapshot())
    return panel


def test_over_text_counts_trs_per_run():
    assert over_text({"run-01": 1, "run-02": 3}, 0.5) == "FD > 0.5 mm: run-01 1 TR · run-02 3 TRs"
    assert over_text({}, 0.9) == "FD > 0.9 mm: -"


def test_the_panel_draws_the_parameters_fd_and_threshold(qtbot):
    model = fed_model(n_volumes=30, motion="correct", motion_spikes=(12,))
    panel = _panel(qtbot, model)
    assert panel.showing_plots
    expected = motion_series(30, (12,))
    for curves, first in ((panel.plots.trans_curves, 0), (panel.plots.rot_curves, 3)):
        for i, curve in enumerate(curves):
            np.testing.assert_allclose(curve.getData()[1], expected[:, first + i])
    assert panel.plots.threshold_line.value() == 0.5
    x, y = panel.plots.over_marks.getData()
    np.testing.assert_allclose(x, [12.0]) and np.testing.assert_array_less(0.5, y)
    assert "correct" in panel.title.text() and "run-01 1 TR" in panel.counts.text()


def test_without_motion_the_panel_says_so_instead_of_empty_axes(qtbot):
    model = SessionModel(dataset_loader=None)
    panel = _panel(qtbot, model)
    assert not panel.showing_plots and panel.message.text() == WAITING
    model = fed_model(n_volumes=10)
    panel = _panel(qtbot, model)
    assert not panel.showing_plots and panel.message.text() == NO_MOTION


def test_the_status_line_warns_of_the_newest_tr_over_the_threshold(qtbot):
    model = fed_model(n_volumes=30, motion="correct", motion_spikes=(9, 21))
    snap = model.snapshot()
    fd = snap.motion.fd[21]
    assert (
        motion_warning(snap)
        == f"head motion: FD {fd:.2f} mm at run-01 TR 22 > 0.5 mm (2 TRs this run)"
    )
    window = ConsoleWindow(model, confirm_stop=False)
    qtbot.addWidget(window)
    window.refresh()
    assert f"head motion: FD {fd:.2f} mm at run-01 TR 22" in window.status_label.text()
    quiet = fed_model(n_volumes=30, motion="correct")
    assert (
        motion_warning(quiet.snapshot()) == "" == motion_warning(fed_model(n_volumes=5).snapshot())
    )
