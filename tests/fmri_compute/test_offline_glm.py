"""Offline single-trial betas over a whole run (fmri_compute.offline_glm)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fmri_compute.glm_design import drift_basis
from fmri_compute.hrf import trial_regressors, volume_times
from fmri_compute.normalize import zscore_run
from fmri_compute.offline_glm import run_betas, trial_betas
from rt_base.errors import ConfigError
from tests.fmri_compute.synthetic_runs import (
    TR,
    T,
    nsd_events,
    ridge_fit,
    row_corr,
    simulate,
    slow_events,
    voxel_corr,
)

# -- offline ridge LSA and LSS --------------------------------------------------------------------


def test_lss_matches_per_trial_least_squares():
    rng = np.random.default_rng(3)
    onsets, durations = nsd_events(rng)
    Y = rng.standard_normal((T, 50)).astype(np.float32)
    betas = trial_betas(Y, onsets, durations, TR, drift_order=2, method="lss")
    assert betas.shape == (onsets.size, 50) and betas.dtype == np.float32
    t = volume_times(T, TR)
    R = trial_regressors(onsets, durations, t, TR)
    for i in (0, 1, 30, onsets.size - 1):
        X = np.column_stack([R[:, i], R.sum(1) - R[:, i], drift_basis(t, 2)])
        ref = np.linalg.lstsq(X, Y.astype(np.float64), rcond=None)[0][0]
        np.testing.assert_allclose(betas[i], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ridge", [0.0, 0.03, 1.0])
def test_lsa_matches_ridge_normal_equations(ridge):
    rng = np.random.default_rng(5)
    onsets, durations = nsd_events(rng)
    Y = rng.standard_normal((T, 40)).astype(np.float32)
    betas = trial_betas(Y, onsets, durations, TR, drift_order=2, ridge=ridge)  # default "lsa"
    t = volume_times(T, TR)
    X = np.column_stack([trial_regressors(onsets, durations, t, TR), drift_basis(t, 2)])
    ref = ridge_fit(X, Y.astype(np.float64), onsets.size, ridge)[: onsets.size]
    np.testing.assert_allclose(betas, ref, rtol=1e-3, atol=1e-4)
    if ridge > 0:  # the penalty shrinks: smaller betas than plain least squares
        plain = trial_betas(Y, onsets, durations, TR, drift_order=2, ridge=0.0)
        assert np.abs(betas).mean() < np.abs(plain).mean()


def test_lsa_separates_neighbours_that_lss_mixes():
    # Noise-free NSD timing: LSS's lumped column leaves ~0.6 of each neighbour in a trial's
    # beta; LSA fits the neighbours, limited only by the HRF mismatch (0.97 vs 0.81 here).
    onsets, durations = nsd_events(np.random.default_rng(2))
    Y, truth = simulate(onsets, durations, seed=2, noise=0.0)
    Z = zscore_run(Y)
    lsa = voxel_corr(trial_betas(Z, onsets, durations, TR), truth).mean()
    lss = voxel_corr(trial_betas(Z, onsets, durations, TR, method="lss"), truth).mean()
    assert lsa > 0.93 and lsa > lss + 0.1


def test_lsa_recovers_betas_with_separated_trials():
    onsets, durations = slow_events()
    Y, truth = simulate(onsets, durations, seed=1)
    betas = trial_betas(zscore_run(Y), onsets, durations, TR)
    assert voxel_corr(betas, truth).mean() > 0.9  # 0.97
    assert row_corr(betas, truth).min() > 0.8  # z-scoring rescales voxels unevenly


def test_lss_recovers_betas_with_nsd_timing():
    # With a 4 s SOA the lumped "other trials" regressor lets neighbours leak into each
    # other even without noise: ~0.8 here, far above chance.
    onsets, durations = nsd_events(np.random.default_rng(2))
    Y, truth = simulate(onsets, durations, seed=2)
    betas = trial_betas(zscore_run(Y), onsets, durations, TR, method="lss")
    assert voxel_corr(betas, truth).mean() > 0.7
    assert row_corr(betas, truth).mean() > 0.7


def test_trial_outside_the_run_is_nan():
    Y = np.random.default_rng(0).standard_normal((50, 10))
    betas = trial_betas(Y, [10.0, 500.0], [3.0, 3.0], TR)
    assert np.all(np.isfinite(betas[0])) and np.all(np.isnan(betas[1]))


def test_run_betas_reads_events():
    rng = np.random.default_rng(4)
    onsets, durations = nsd_events(rng, 30, 15)
    Y = rng.standard_normal((T, 30)).astype(np.float32)
    expected = trial_betas(Y, onsets, durations, TR)
    as_dicts = [{"onset": o, "duration": d} for o, d in zip(onsets, durations, strict=True)]
    as_objects = [
        SimpleNamespace(onset=o, duration=d, image_id=1)
        for o, d in zip(onsets, durations, strict=True)
    ]
    np.testing.assert_array_equal(run_betas(Y, as_dicts, TR), expected)
    np.testing.assert_array_equal(run_betas(Y, as_objects, TR), expected)


def test_trial_betas_bad_inputs():
    with pytest.raises(ConfigError, match="'Y'"):
        trial_betas(np.zeros(10), [1.0], [3.0], TR)
    with pytest.raises(ConfigError, match="'tr' must be .*got -1.6"):
        trial_betas(np.zeros((10, 2)), [1.0], [3.0], -1.6)
    with pytest.raises(ConfigError, match="'frame_times'"):
        trial_betas(np.zeros((10, 2)), [1.0], [3.0], TR, frame_times=np.arange(9.0))
    with pytest.raises(ConfigError, match="'drift_order'"):
        trial_betas(np.zeros((10, 2)), [1.0], [3.0], TR, drift_order=-1)
    with pytest.raises(ConfigError, match="'method' must be one of 'lsa', 'lss', got 'glmsingle'"):
        trial_betas(np.zeros((10, 2)), [1.0], [3.0], TR, method="glmsingle")
    with pytest.raises(ConfigError, match="'ridge'"):
        trial_betas(np.zeros((10, 2)), [1.0], [3.0], TR, ridge=-0.1)
    with pytest.raises(ConfigError, match="'ridge'"):
        run_betas(np.zeros((10, 2)), [{"onset": 1.0, "duration": 3.0}], TR, ridge=float("nan"))
