"""Synthetic runs for the single-trial GLM tests: NSD-like timing, known betas, scanner noise."""

from __future__ import annotations

import numpy as np

from fmri_compute.glm_design import drift_basis
from fmri_compute.hrf import trial_regressors, volume_times

TR = 1.6
T = 188


def nsd_events(rng, n_slots=75, n_trials=62):
    """NSD-like timing: 3 s images every 4 s, some slots blank, the first 3 and last 4 always."""
    slots = np.sort(rng.choice(np.arange(3, n_slots - 4), n_trials, replace=False))
    onsets = 3.0 + 4.0 * slots
    return onsets, np.full(onsets.size, 3.0)


def slow_events():
    onsets = 3.0 + 12.0 * np.arange(24)
    return onsets, np.full(onsets.size, 3.0)


def simulate(onsets, durations, *, seed=0, V=400, noise=0.05, peaks=(4.5, 7.0)):
    """Scanner-like run: per-voxel HRF peaks, baseline, slow drift, AR(1) noise.

    Returns
    -------
    Y : (T, V) float32, betas : (n, V) float64
    """
    rng = np.random.default_rng(seed)
    betas = rng.standard_normal((onsets.size, V))
    t = volume_times(T, TR)
    peak = np.round(rng.uniform(*peaks, V), 1)
    signal = np.zeros((T, V))
    for pk in np.unique(peak):
        cols = peak == pk
        signal[:, cols] = trial_regressors(onsets, durations, t, TR, peak=pk) @ betas[:, cols]
    drift = drift_basis(t, 2)[:, 1:] @ rng.standard_normal((2, V))
    ar = np.zeros((T, V))
    white = noise * rng.standard_normal((T, V))
    for k in range(T):
        ar[k] = (0.3 * ar[k - 1] if k else 0.0) + white[k]
    Y = rng.uniform(800, 1200, V) * (1 + 0.01 * (signal + drift + ar))
    return Y.astype(np.float32), betas


def ridge_fit(X, Y, n_trials, ridge):
    """Reference ridge fit: penalty ridge * mean(trial columns' sum of squares) on the first
    n_trials columns, drift unpenalised; (p, V) coefficients."""
    pen = np.zeros(X.shape[1])
    pen[:n_trials] = ridge * np.mean(np.sum(X[:, :n_trials] ** 2, 0))
    return np.linalg.solve(X.T @ X + np.diag(pen), X.T @ Y)


def n_trial_columns(X, est):
    """Trial columns of an OnlineTrialBetas design: all but the drift's 1 + order (the order
    may drop)."""
    return X.shape[1] - 1 - est.drift_order


def row_corr(a, b):
    """Correlation across voxels, per trial: (n,)."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def voxel_corr(a, b):
    """Correlation across trials, per voxel: (V,).  Blind to per-voxel scale (z-scoring)."""
    return row_corr(a.T, b.T)
