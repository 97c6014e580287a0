"""Simulated anatomy: the NSD-sized grid, an exact-size posterior ROI."""

from __future__ import annotations

import numpy as np
import pytest

from replay_data.simulation_config import SimulationConfig
from replay_data.simulation_geometry import make_geometry
from rt_base.errors import ConfigError


def test_subj01_geometry():
    cfg = SimulationConfig.subj01()
    geo = make_geometry(cfg.shape, cfg.n_roi, np.random.default_rng(0))
    assert geo.roi.shape == (81, 104, 83) and geo.roi.sum() == 15724
    assert 150_000 < geo.brain.sum() < 400_000
    assert np.all(geo.brain[geo.roi])
    y = geo.roi_mni[:, 1]
    assert np.median(y) < -60  # posterior: occipital / posterior temporal-parietal
    np.testing.assert_array_equal(
        np.flatnonzero(geo.brain)[geo.roi_in_brain], np.flatnonzero(geo.roi)
    )


def test_roi_larger_than_the_grid_allows_is_refused():
    with pytest.raises(ConfigError, match="'n_roi'"):
        make_geometry((20, 24, 20), 50_000, np.random.default_rng(0))
