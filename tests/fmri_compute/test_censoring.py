"""Censored volumes: kept out of the running z-score and of the online GLM, NaN never leaks."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_compute.normalize import RunningZScore
from fmri_compute.online_glm import OnlineTrialBetas
from rt_base.errors import ConfigError, StageError
from tests.fmri_compute.synthetic_runs import TR, nsd_events, simulate


def test_running_zscore_refuses_non_finite_values():
    rz = RunningZScore(3)
    with pytest.raises(ConfigError, match="non-finite.*censor"):
        rz.update(np.array([1.0, np.nan, 2.0]))
    assert rz.count == 0


def test_score_shows_a_volume_without_adding_it():
    rng = np.random.default_rng(0)
    Y = 100 + rng.standard_normal((10, 5))
    rz = RunningZScore(5)
    for y in Y:
        rz.update(y)
    mean, std = rz.mean, rz.std
    bad = Y[0] * 3
    bad[2] = np.inf
    bad[4] = np.nan
    z = rz.score(bad)
    assert rz.count == 10
    np.testing.assert_array_equal(rz.mean, mean)
    np.testing.assert_array_equal(rz.std, std)
    assert z.dtype == np.float32 and np.all(np.isfinite(z))
    assert z[2] == 0 and z[4] == 0
    np.testing.assert_allclose(z[[0, 1, 3]], ((bad - mean) / std)[[0, 1, 3]], rtol=1e-5)
    assert not np.any(RunningZScore(5).score(bad))  # before the warm-up: zeros


def _stream(Y, onsets, durations, *, censor=(), skip=(), corrupt=None, **options):
    est = OnlineTrialBetas(Y.shape[1], TR, **options)
    for i, (onset, duration) in enumerate(zip(onsets, durations, strict=True)):
        est.add_trial(i, onset, duration)
    betas, frames = {}, {}
    for k, y in enumerate(Y):
        if k in skip:
            continue
        if k in censor:
            y = corrupt(y) if corrupt else y
        est.add_volume(k, y, censored=k in censor)
        for trial in est.due(k):
            betas[trial] = est.estimate(trial)
            frames[trial] = (est.decode_index(trial), est.censored_frames(trial))
    return betas, frames, est


@pytest.mark.parametrize("standardize", [False, True])
def test_a_censored_volume_is_a_missing_row(standardize):
    # Censoring a frame (whatever it holds) gives exactly the betas of a run in which that
    # frame never arrived: it is out of every fit and out of the running statistics.
    onsets, durations = nsd_events(np.random.default_rng(3))
    Y, _ = simulate(onsets, durations, seed=3)
    Y = Y if standardize else (Y - Y.mean(0)) / Y.std(0)
    bad = (40, 41, 90)

    def corrupt(y):
        y = y.copy()
        y[::7] = np.nan
        y[1::7] = np.inf
        return y * 50

    censored, frames, est = _stream(
        Y, onsets, durations, censor=bad, corrupt=corrupt, standardize=standardize
    )
    missing, _, _ = _stream(Y, onsets, durations, skip=bad, standardize=standardize)
    clean, _, _ = _stream(Y, onsets, durations, standardize=standardize)
    assert est.n_censored == 3 and est.n_missing == 0
    assert censored.keys() == missing.keys() == clean.keys()
    for trial, beta in censored.items():
        assert np.all(np.isfinite(beta))
        np.testing.assert_array_equal(beta, missing[trial])
        decode, listed = frames[trial]
        window = set(range(decode - est.window_volumes + 1, decode + 1))
        assert listed == sorted(window & set(bad))
        if decode < min(bad):  # before any bad frame: the clean run's betas
            np.testing.assert_array_equal(beta, clean[trial])


def test_a_trial_with_every_response_frame_censored_is_refused():
    est = OnlineTrialBetas(4, TR, decode_delay_s=4.0, window_s=20.0)
    est.add_trial("a", 8.0, 3.0)  # due at volume 8 (12.8 s)
    est.add_trial("b", 1.0, 3.0)  # due at volume 4
    rng = np.random.default_rng(0)
    for k in range(9):
        est.add_volume(k, rng.standard_normal(4), censored=k >= 5)
    assert np.all(np.isfinite(est.estimate("b")))
    with pytest.raises(StageError, match="censored"):
        est.estimate("a")
    assert "a" in est.missed


def test_a_non_finite_volume_must_be_censored():
    est = OnlineTrialBetas(3, TR)
    with pytest.raises(ConfigError, match="censored=True"):
        est.add_volume(0, np.array([1.0, np.nan, 0.0]))
    est.add_volume(0, np.array([1.0, np.nan, 0.0]), censored=True)
    assert est.n_censored == 1 and est.latest_index == 0
