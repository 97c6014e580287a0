"""The console's time-series plots (:mod:`gui.plots`): the helpers behind the ROI trace, the
trial timeline and the latency plot."""

from __future__ import annotations

import numpy as np

from gui.plots import DASHED, FOLLOW_MIN_S, follow_range, percent_change, trial_state, with_breaks
from gui.state import TrialInfo


def test_a_trial_is_pending_hit_miss_or_unscored():
    trial = TrialInfo(run="r", index=0, onset=0.0, duration=1.0, image_id=1)
    assert trial_state(trial) == "pending"
    trial.decoded = True
    assert trial_state(trial) == "unscored"
    trial.rank = 1
    assert trial_state(trial) == "hit"
    trial.rank = 3
    assert trial_state(trial) == "miss"


def test_percent_change_from_the_first_trs():
    np.testing.assert_allclose(percent_change(np.array([100.0, 100.0, 110.0]), 2), [0, 0, 10])
    np.testing.assert_allclose(percent_change(np.array([0.0, 0.0, 2.0]), 2), [0, 0, 2])
    assert percent_change(np.zeros(0)).size == 0


def test_the_x_range_grows_in_steps_and_stops_at_the_runs_end():
    assert follow_range(None, None) == (0.0, FOLLOW_MIN_S)
    assert follow_range(70.0, None) == (0.0, 90.0)  # 84 s of headroom, in 15 s steps
    assert follow_range(70.0, 80.0) == (0.0, 80.0)
    assert follow_range(10.0, 30.0) == (0.0, 30.0)


def test_missing_trs_break_the_curve():
    t, y = with_breaks(np.array([0.0, 1.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.0, 4.0]), 1.0)
    np.testing.assert_array_equal(np.isnan(t), [False, False, True, False, False])
    np.testing.assert_array_equal(y[~np.isnan(y)], [1, 2, 3, 4])
    t, _ = with_breaks(np.array([0.0, 5.0]), np.array([1.0, 2.0]), None)
    assert t.size == 2


def test_spans_over_several_stages_are_dashed():
    assert DASHED == {"end-to-end", "acq→recon"}
