"""Offline single-trial betas: every trial of a whole run at once (ridge LSA by default).

The reference the real-time estimates are compared with, and the estimator of the training
betas.  The design and the two estimators (ridge LSA, LSS) are described in
:mod:`fmri_compute.glm_design`.

Cost: LSS computes all ``n`` tiny per-trial pseudo-inverses at once and ridge LSA solves one
``(n + q)``-square system; either way the betas come from one ``(n, T) @ (T, V)`` product.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fmri_compute.glm_design import (
    DEFAULT_RIDGE,
    check_method,
    drift_basis,
    lss_weights,
    ridge_lsa_weights,
)
from fmri_compute.hrf import trial_regressors, volume_times
from rt_base.checks import check_number
from rt_base.errors import ConfigError

__all__ = ["run_betas", "trial_betas"]


def trial_betas(
    Y: ArrayLike,
    onsets: ArrayLike,
    durations: ArrayLike,
    tr: float,
    *,
    frame_times: ArrayLike | None = None,
    hrf_peak: float = 6.0,
    drift_order: int = 2,
    method: str = "lsa",
    ridge: float = DEFAULT_RIDGE,
) -> np.ndarray:
    """Offline single-trial betas of every trial of a run (ridge LSA by default).

    Parameters
    ----------
    Y : (T, V) float array
        The run's (normalised) data, one row per volume.
    onsets, durations : (n,) arrays
        Trial onsets and durations in seconds from the start of the run.
    tr : float
        Repetition time in seconds.
    frame_times : (T,) array or None
        Time of each row; default ``k * tr`` (acquisition start, see :mod:`fmri_compute.hrf`).
    hrf_peak : float
        HRF response delay in seconds (see :func:`fmri_compute.hrf.double_gamma`).
    drift_order : int
        Highest Legendre degree of the drift over the run; the constant is always in.
    method : {"lsa", "lss"}
        Estimator: ridge Least-Squares-All or Least-Squares-Separate, see
        :mod:`fmri_compute.glm_design`.
    ridge : float
        ``"lsa"`` only: penalty on the trial columns relative to their mean sum of squares,
        in ``[0, 100]``.

    Returns
    -------
    betas : (n, V) float32 array
        Row ``i`` is trial ``i``'s response.  A trial whose regressor is zero over the run
        (e.g. an onset after the last volume) gets NaN.
    """
    tr = float(check_number(tr, "tr", minimum=0, strict_min=True, unit="seconds"))
    method, ridge = check_method(method, ridge)
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ConfigError(f"'Y' must be a (T, V) array of volumes x voxels, got shape {Y.shape}")
    Y = Y.astype(np.float32, copy=False)
    times = volume_times(Y.shape[0], tr) if frame_times is None else np.asarray(frame_times, float)
    if times.shape != (Y.shape[0],):
        raise ConfigError(
            f"'frame_times' must have one time per row of 'Y' ({Y.shape[0]}), "
            f"got shape {times.shape}"
        )
    R = trial_regressors(onsets, durations, times, tr, peak=hrf_peak)
    D = drift_basis(times, drift_order)
    W = lss_weights(R, D) if method == "lss" else ridge_lsa_weights(R, D, ridge)
    return (W.astype(np.float32) @ Y).astype(np.float32, copy=False)


def _event_field(event: Any, name: str) -> float:
    value = event[name] if isinstance(event, dict) else getattr(event, name)
    return float(value)


def run_betas(
    Y: ArrayLike,
    events: Iterable[Any],
    tr: float,
    *,
    hrf_peak: float = 6.0,
    drift_order: int = 2,
    method: str = "lsa",
    ridge: float = DEFAULT_RIDGE,
) -> np.ndarray:
    """Offline betas of all trials of a run, for comparison with the online ones.

    Parameters
    ----------
    Y : (T, V) float array
        The whole run, already normalised (e.g. :func:`fmri_compute.normalize.zscore_run`).
    events : iterable of events
        Objects with ``onset`` and ``duration`` attributes (such as the replay dataset's
        ``Event``) or dicts with those keys, in trial order.
    tr : float
        Repetition time in seconds.
    hrf_peak, drift_order, method, ridge
        See :func:`trial_betas`.

    Returns
    -------
    betas : (n_events, V) float32 array
    """
    events = list(events)
    onsets = [_event_field(e, "onset") for e in events]
    durations = [_event_field(e, "duration") for e in events]
    return trial_betas(
        Y,
        onsets,
        durations,
        tr,
        hrf_peak=hrf_peak,
        drift_order=drift_order,
        method=method,
        ridge=ridge,
    )
