"""Online single-trial betas over a sliding window (fmri_compute.online_glm)."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_compute.hrf import trial_regressors
from fmri_compute.normalize import RunningZScore, zscore_run
from fmri_compute.offline_glm import trial_betas
from fmri_compute.online_glm import OnlineTrialBetas
from rt_base.errors import ConfigError, StageError
from tests.fmri_compute.synthetic_runs import (
    TR,
    n_trial_columns,
    nsd_events,
    ridge_fit,
    row_corr,
    simulate,
    slow_events,
    voxel_corr,
)


def run_online(Y, onsets, durations, **options):
    """Stream a run (through RunningZScore unless standardize) and OnlineTrialBetas, estimating
    trials as they fall due."""
    z = RunningZScore(Y.shape[1])
    est = OnlineTrialBetas(Y.shape[1], TR, **options)
    feed = (lambda y: y) if est.standardize else z.update
    for i, (onset, duration) in enumerate(zip(onsets, durations, strict=True)):
        est.add_trial(i, onset, duration)
    out = np.full((onsets.size, Y.shape[1]), np.nan, np.float32)
    for k, y in enumerate(Y):
        est.add_volume(k, feed(y))
        for trial in est.due(k):
            out[trial] = est.estimate(trial)
    return out, est


# -- online ridge LSA and LSS ---------------------------------------------------------------------


@pytest.mark.parametrize("standardize", [False, True])
def test_online_is_close_to_offline_with_separated_trials(standardize):
    # Online sees each response only up to 8 s after onset, with only a constant for the
    # drift within its window: ~0.88 (running z-score fed in) or ~0.79 (standardize)
    # per-voxel correlation with the truth, offline ~0.97.
    onsets, durations = slow_events()
    Y, truth = simulate(onsets, durations, seed=6)
    online, est = run_online(Y, onsets, durations, standardize=standardize)
    offline = trial_betas(zscore_run(Y), onsets, durations, TR)
    assert np.all(np.isfinite(online)) and est.missed == []
    assert voxel_corr(online, truth).mean() > 0.72
    assert voxel_corr(online, offline).mean() > 0.72
    assert row_corr(online, truth)[0] > (0.7 if standardize else 0.35)  # first trial
    # Same scale: the regression slope of online on offline betas is near 1 (a bit above,
    # since the running spread early in a drifting run is below the whole run's).
    slope = np.sum(online * offline) / np.sum(offline * offline)
    assert 0.8 < slope < 1.4


@pytest.mark.parametrize("method", ["lsa", "lss"])
def test_online_equals_offline_when_the_window_is_the_whole_run(method):
    # Two trials, a window that reaches back to volume 0 and the run ending at the second
    # trial's decode volume: both estimators fit the same columns (trials, Legendre drift over
    # the same span) to the same rows, so ridge LSA (and LSS) give the same beta.
    rng = np.random.default_rng(13)
    onsets, durations = np.array([5.0, 20.0]), np.array([3.0, 3.0])
    est = OnlineTrialBetas(30, TR, window_s=30.0, drift_order=2, method=method)
    for i, (onset, duration) in enumerate(zip(onsets, durations, strict=True)):
        est.add_trial(i, onset, duration)
    last = est.decode_index(1)
    assert last == 18 and est.window_volumes == last + 1
    Z = rng.standard_normal((last + 1, 30)).astype(np.float32)
    for k, z in enumerate(Z):
        est.add_volume(k, z)
    offline = trial_betas(Z, onsets, durations, TR, drift_order=2, method=method)
    np.testing.assert_allclose(est.estimate(1), offline[1], rtol=1e-4, atol=1e-5)


def test_standardize_beats_a_running_zscore_fed_in_early_in_the_run():
    onsets, durations = nsd_events(np.random.default_rng(6))
    Y, truth = simulate(onsets, durations, seed=6, noise=0.5)
    fed, _ = run_online(Y, onsets, durations)
    own, _ = run_online(Y, onsets, durations, standardize=True)
    # First trials: 0.64 vs 0.62; over the run about even (0.62 vs 0.64).
    assert row_corr(own, truth)[:3].mean() > row_corr(fed, truth)[:3].mean()
    assert voxel_corr(own, truth).mean() > voxel_corr(fed, truth).mean() - 0.05


def test_online_with_nsd_timing_estimates_every_trial_including_the_first():
    onsets, durations = nsd_events(np.random.default_rng(6))
    Y, truth = simulate(onsets, durations, seed=6)
    online, est = run_online(Y, onsets, durations, standardize=True)
    assert np.all(np.isfinite(online)) and est.missed == []
    assert voxel_corr(online, truth).mean() > 0.7  # 0.79 (LSS with a linear drift: 0.51)
    r = row_corr(online, truth)
    assert r.mean() > 0.7  # 0.80 (LSS: 0.62)
    assert r[0] > 0.6  # 0.84: the first trial sees only the run's first volumes
    lss, _ = run_online(
        Y, onsets, durations, standardize=True, method="lss", drift_order=1, window_s=56.0
    )
    assert voxel_corr(online, truth).mean() > voxel_corr(lss, truth).mean() + 0.15


def test_trial_at_the_start_of_the_run():
    est = OnlineTrialBetas(20, TR)
    est.add_trial("first", 0.0, 3.0)
    assert est.decode_index("first") == 5 and est.decode_time("first") == pytest.approx(8.0)
    rng = np.random.default_rng(0)
    for k in range(5):
        est.add_volume(k, rng.standard_normal(20))
        assert est.due(k) == []
    est.add_volume(5, rng.standard_normal(20))
    assert est.due(5) == ["first"]
    indices, X = est.design("first")
    np.testing.assert_array_equal(indices, np.arange(6))
    beta = est.estimate("first")
    assert beta.shape == (20,) and beta.dtype == np.float32 and np.all(np.isfinite(beta))
    assert est.due(5) == []


def test_due_and_decode_time():
    est = OnlineTrialBetas(5, TR, decode_delay_s=8.0)
    est.add_trial(7, 4.0, 3.0)  # decode point 12.0 s -> volume 8 (12.8 s)
    est.add_trial(3, 5.0, 3.0)  # 13.0 s -> volume 9 (14.4 s)
    assert est.decode_index(7) == 8
    assert est.decode_time(7) == pytest.approx(12.8)
    assert est.due(7) == []
    assert est.due(8) == [7]
    assert est.due(20) == [7, 3]


def test_no_look_ahead_and_no_dependence_on_call_time():
    onsets, durations = nsd_events(np.random.default_rng(7))
    Y, _ = simulate(onsets, durations, seed=7)
    Z = zscore_run(Y)
    trial = 20

    def estimate(data, call_at_extra=0):
        est = OnlineTrialBetas(Z.shape[1], TR)
        for i, (o, d) in enumerate(zip(onsets, durations, strict=True)):
            est.add_trial(i, o, d)
        last = est.decode_index(trial)
        for k in range(last + 1 + call_at_extra):
            est.add_volume(k, data[k])
        return est.estimate(trial), last

    now, last = estimate(Z)
    future = Z.copy()
    future[last + 1 :] = 1e3  # volumes after the decode point
    np.testing.assert_array_equal(estimate(future)[0], now)
    np.testing.assert_array_equal(estimate(future, call_at_extra=5)[0], now)


def test_missing_volumes_are_absent_rows_not_shifts():
    onsets, durations = nsd_events(np.random.default_rng(8))
    Y, _ = simulate(onsets, durations, seed=8)
    Z = zscore_run(Y)
    est = OnlineTrialBetas(Z.shape[1], TR)
    for i, (o, d) in enumerate(zip(onsets, durations, strict=True)):
        est.add_trial(i, o, d)
    trial = int(np.flatnonzero(onsets > 40.0)[0])
    last = est.decode_index(trial)
    dropped = {last - 12, last - 11, last - 2}  # before and after the trial's onset
    for k in range(last + 1):
        if k not in dropped:
            est.add_volume(k, Z[k])
    assert est.n_missing == len(dropped)
    indices, X = est.design(trial)
    first = max(0, last - est.window_volumes + 1)
    expected = [k for k in range(first, last + 1) if k not in dropped]
    np.testing.assert_array_equal(indices, expected)
    # Rows are the regressors at the true times of the volumes that arrived.
    R = trial_regressors(onsets, durations, indices * TR, TR)
    np.testing.assert_allclose(X[:, 0], R[:, trial], atol=1e-12)
    beta = est.estimate(trial)
    ref = ridge_fit(X, Z[indices].astype(np.float64), n_trial_columns(X, est), est.ridge)[0]
    np.testing.assert_allclose(beta, ref, rtol=1e-3, atol=1e-3)
    # Packing the volumes that arrived onto consecutive rows would give another answer.
    packed = Z[last - len(indices) + 1 : last + 1].astype(np.float64)
    other = ridge_fit(X, packed, n_trial_columns(X, est), est.ridge)[0]
    assert not np.allclose(other, beta, atol=1e-3)


def test_buffer_and_design_stay_bounded_over_a_long_run():
    V = 30
    est = OnlineTrialBetas(V, TR, window_s=24.0, max_lag_s=8.0)
    rng = np.random.default_rng(0)
    capacity = est.capacity
    assert capacity == est.window_volumes + 5
    max_rows = max_cols = held = 0
    n_volumes = 1200  # 32 minutes, 480 trials
    trial = 0
    for k in range(n_volumes):
        while 3.0 + 4.0 * trial <= k * TR:  # markers arrive at onset, as live
            est.add_trial(trial, 3.0 + 4.0 * trial, 3.0)
            trial += 1
        est.add_volume(k, rng.standard_normal(V).astype(np.float32))
        for tid in est.due(k):
            indices, X = est.design(tid)
            max_rows, max_cols = max(max_rows, len(indices)), max(max_cols, X.shape[1])
            est.estimate(tid)
        held = max(held, est.n_trials_held)
    assert trial > 450 and est.missed == []
    assert est.capacity == capacity and est._buffer.shape == (capacity, V)
    assert max_rows <= est.window_volumes == 16
    # LSA: one column per trial overlapping the window (responses last 3 + 32 s), + drift.
    assert 10 < max_cols <= (24.0 + 35.0) / 4.0 + 2 + 1 + est.drift_order
    # Trials whose responses ended before the buffer's oldest volume are forgotten.
    assert held <= (capacity * TR + 32.0 + 3.0) / 4.0 + 3


def test_lss_method_keeps_the_lumped_design_and_weights_match_estimate():
    onsets, durations = nsd_events(np.random.default_rng(9))
    Y, _ = simulate(onsets, durations, seed=9)
    Z = zscore_run(Y)
    lsa, lss = (
        OnlineTrialBetas(Z.shape[1], TR),
        OnlineTrialBetas(Z.shape[1], TR, method="lss", drift_order=1),
    )
    trial = 30
    for est in (lsa, lss):
        for i, (o, d) in enumerate(zip(onsets, durations, strict=True)):
            est.add_trial(i, o, d)
        for k in range(est.decode_index(trial) + 1):
            est.add_volume(k, Z[k])
    _, X_lss = lss.design(trial)
    _, X_lsa = lsa.design(trial)
    assert X_lss.shape[1] == 3 + 1 and X_lsa.shape[1] > 10
    # LSS: plain least squares on [trial, others summed, drift].
    idx, w = lss.weights(trial)
    ref = np.linalg.lstsq(X_lss, Z[idx].astype(np.float64), rcond=None)[0][0]
    np.testing.assert_allclose(w @ Z[idx], ref, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(lss.estimate(trial), ref, rtol=1e-3, atol=1e-3)
    idx, w = lsa.weights(trial)
    np.testing.assert_allclose(lsa.estimate(trial), w @ Z[idx], rtol=1e-3, atol=1e-4)


def test_late_trials_are_reported_missed():
    est = OnlineTrialBetas(4, TR, window_s=8.0, max_lag_s=3.2)
    est.add_trial(0, 0.0, 3.0)  # due at volume 5; window 0..5; buffer of 8 volumes
    for k in range(8):
        est.add_volume(k, np.zeros(4))
    assert est.due(7) == [0]
    est.add_volume(8, np.zeros(4))  # volume 0 leaves the buffer
    assert est.missed == [0] and est.due(8) == []
    with pytest.raises(StageError, match="too old"):
        est.estimate(0)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"tr": -1.6}, "'tr' must be .*got -1.6"),
        ({"decode_delay_s": 0}, "'decode_delay_s'"),
        ({"decode_delay_s": 31}, "'decode_delay_s'"),
        ({"window_s": 6.0}, "'window_s'"),
        ({"drift_order": -1}, "'drift_order'"),
        ({"drift_order": 1.5}, "'drift_order'"),
        ({"hrf_peak": 0.5}, "'hrf_peak'"),
        ({"max_lag_s": -1}, "'max_lag_s'"),
        ({"n_voxels": 0}, "'n_voxels'"),
        ({"method": "LSA"}, "'method' must be one of 'lsa', 'lss'"),
        ({"ridge": -1}, "'ridge'"),
        ({"ridge": 1e3}, "'ridge'"),
    ],
)
def test_bad_options_name_the_argument(options, name):
    args = {"n_voxels": 10, "tr": TR} | options
    with pytest.raises(ConfigError, match=name):
        OnlineTrialBetas(args.pop("n_voxels"), args.pop("tr"), **args)


def test_misuse_raises():
    est = OnlineTrialBetas(3, TR)
    est.add_trial(1, 4.0, 3.0)
    with pytest.raises(ConfigError, match="'trial_id' 1 was already added"):
        est.add_trial(1, 8.0, 3.0)
    with pytest.raises(ConfigError, match="'duration'"):
        est.add_trial(2, 8.0, -3.0)
    est.add_volume(0, np.zeros(3))
    with pytest.raises(ConfigError, match="'index' must increase"):
        est.add_volume(0, np.zeros(3))
    with pytest.raises(ConfigError, match=r"'y' must have shape \(3,\)"):
        est.add_volume(1, np.zeros(4))
    with pytest.raises(StageError, match="not due until volume 8"):
        est.estimate(1)
    with pytest.raises(StageError, match="never added"):
        est.estimate(99)


def test_trial_whose_volumes_all_went_missing_raises():
    est = OnlineTrialBetas(3, TR, window_s=8.0)
    est.add_trial(0, 20.0, 3.0)  # due at volume 18, window 13..18
    est.add_volume(12, np.ones(3))
    est.add_volume(19, np.ones(3))
    assert est.due() == [0]
    with pytest.raises(StageError, match="no volume of its window after onset"):
        est.estimate(0)
    assert est.due() == [] and est.missed == [0]


def test_partial_estimate_at_the_end_of_a_run():
    rng = np.random.default_rng(12)
    est = OnlineTrialBetas(5, TR)
    est.add_trial(0, 20.0, 3.0)  # due at volume 18
    est.add_trial(1, 60.0, 3.0)  # starts after the last volume
    for k in range(16):
        est.add_volume(k, rng.standard_normal(5))
    with pytest.raises(StageError, match="partial=True"):
        est.estimate(0)
    indices, _ = est.design(0, partial=True)
    assert indices[-1] == 15
    assert np.all(np.isfinite(est.estimate(0, partial=True)))
    with pytest.raises(StageError, match="no volume of its window after onset"):
        est.estimate(1, partial=True)
    assert est.missed == [1]


def test_standardize_handles_constant_voxels_and_matches_scaled_raw_fit():
    rng = np.random.default_rng(11)
    Y = 1000 + rng.standard_normal((40, 6))
    Y[:, 2] = 500.0
    est = OnlineTrialBetas(6, TR, standardize=True)
    raw = OnlineTrialBetas(6, TR)
    for e in (est, raw):
        e.add_trial(0, 20.0, 3.0)
        for k, y in enumerate(Y):
            e.add_volume(k, y)
    beta = est.estimate(0)
    assert np.all(np.isfinite(beta)) and beta[2] == 0.0
    last = est.decode_index(0)
    std = Y[: last + 1].std(0)
    live = np.arange(6) != 2
    np.testing.assert_allclose(beta[live], raw.estimate(0)[live] / std[live], rtol=1e-3)
