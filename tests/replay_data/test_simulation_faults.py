"""Faults on purpose: each kind corrupts a volume as documented; bad faults are refused."""

from __future__ import annotations

import numpy as np
import pytest

from replay_data.simulation_faults import SLICE_LEFT, SPIKE_GAIN, Fault, corrupt_volume
from rt_base.errors import ConfigError


def _volume_and_roi():
    vol = np.full((10, 12, 8), 1000.0, np.float32, order="F")  # F order, as load_run gives
    roi = np.zeros(vol.shape, bool)
    roi[3:7, 4:8, 2:6] = True
    return vol, roi


def test_each_kind_corrupts_a_copy():
    vol, roi = _volume_and_roi()
    nan = corrupt_volume(vol, "nan", roi)
    assert np.isnan(nan[roi]).sum() >= 1 and np.isinf(nan[~roi]).sum() == 1
    assert not np.any(np.isnan(nan[~roi]))
    assert not np.any(corrupt_volume(vol, "zero", roi))
    sl = corrupt_volume(vol, "slice", roi)
    np.testing.assert_allclose(sl[:, :, 3], 1000 * SLICE_LEFT)  # ROI slices 2-5: median 3
    np.testing.assert_array_equal(np.delete(sl, 3, axis=2), 1000.0)
    np.testing.assert_allclose(corrupt_volume(vol, "spike", roi), 1000 * SPIKE_GAIN)
    assert np.all(vol == 1000.0)  # the input is untouched


def test_bad_faults_are_refused():
    with pytest.raises(ConfigError, match="'kind' must be one of"):
        Fault("run-01", 3, "smear")
    with pytest.raises(ConfigError, match="'index'"):
        Fault("run-01", -1, "nan")
