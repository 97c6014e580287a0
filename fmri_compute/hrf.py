"""Canonical haemodynamic response and trial regressors.

The HRF is SPM's double gamma: a response gamma (shape ``peak``, scale 1 s) minus ``ratio`` times
an undershoot gamma (shape ``undershoot``, scale 1 s).  With the defaults (6 s, 16 s, 1/6) the
curve rises about 1 s after the event, reaches its maximum near 5 s and dips below zero around
12-20 s.  It is scaled to unit area, so a boxcar of duration ``d`` convolved with it has area
``d`` and a long block reaches a plateau of 1.

Timing convention
-----------------
Times are seconds from the start of the run.  The frame time of volume ``k`` is ``k * tr``: the
start of its acquisition.  Regressors are the boxcar-HRF convolution *evaluated at the frame
times* (no slice-timing shift); to model acquisition at mid-volume, pass
``frame_times=(k + 0.5) * tr`` instead.  Using the same convention for the simulator, the offline
GLM and the online estimator keeps their betas on one scale.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# scipy.fft and scipy.special, not scipy.signal / scipy.stats: those two take ~1 s to import,
# paid by every stage process that imports the GLM.
from scipy import fft
from scipy.special import gammaln

from rt_base.checks import check_number
from rt_base.errors import ConfigError

__all__ = ["canonical_hrf", "double_gamma", "trial_regressor", "trial_regressors", "volume_times"]

#: Length of the HRF kernel, in seconds, used to build regressors.
HRF_DURATION = 32.0


def _check_shape(peak: float, undershoot: float, ratio: float) -> tuple[float, float, float]:
    peak = float(check_number(peak, "peak", minimum=1, strict_min=True, unit="seconds"))
    undershoot = float(
        check_number(undershoot, "undershoot", minimum=0, strict_min=True, unit="seconds")
    )
    ratio = float(check_number(ratio, "ratio", minimum=0, maximum=0.99))
    return peak, undershoot, ratio


def double_gamma(
    t: ArrayLike, peak: float = 6.0, undershoot: float = 16.0, ratio: float = 1 / 6
) -> np.ndarray:
    """Evaluate the unit-area double-gamma HRF at arbitrary times.

    Parameters
    ----------
    t : (...) array
        Seconds since the (impulse) event; the response is 0 for ``t <= 0``.
    peak : float
        Shape of the response gamma in seconds (SPM's "delay of response", scale 1 s).  The
        curve's maximum lies about 1 s earlier (5 s for the default 6 s).  Must exceed 1.
    undershoot : float
        Shape of the undershoot gamma in seconds (SPM's "delay of undershoot").
    ratio : float
        Undershoot-to-response ratio, in ``[0, 0.99]``.

    Returns
    -------
    h : (...) float64 array
        HRF values per second (the analytic curve integrates to 1 over ``[0, inf)``).
    """
    peak, undershoot, ratio = _check_shape(peak, undershoot, ratio)
    t = np.asarray(t, dtype=np.float64)
    h = _gamma_pdf(t, peak) - ratio * _gamma_pdf(t, undershoot)
    return np.where(t > 0, h, 0.0) / (1.0 - ratio)


def _gamma_pdf(t: np.ndarray, shape: float) -> np.ndarray:
    """The gamma density of ``shape`` (scale 1) at ``t``; 0 for ``t <= 0``."""
    positive = t > 0
    safe = np.where(positive, t, 1.0)
    pdf = np.exp((shape - 1.0) * np.log(safe) - safe - gammaln(shape))
    return np.where(positive, pdf, 0.0)


def _convolve_columns(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Full linear convolution of each column of ``x`` (n, m) with ``kernel`` (k,), by FFT."""
    n = x.shape[0] + kernel.shape[0] - 1
    size = fft.next_fast_len(n, real=True)
    spectrum = fft.rfft(x, size, axis=0) * fft.rfft(kernel, size)[:, None]
    return fft.irfft(spectrum, size, axis=0)[:n]


def canonical_hrf(
    dt: float,
    duration: float = HRF_DURATION,
    peak: float = 6.0,
    undershoot: float = 16.0,
    ratio: float = 1 / 6,
) -> np.ndarray:
    """Sample the double-gamma HRF every ``dt`` seconds.

    Parameters
    ----------
    dt : float
        Sampling step in seconds.
    duration : float
        Kernel length in seconds; samples are at ``0, dt, 2 dt, ...`` strictly below it.
    peak, undershoot, ratio : float
        Shape, see :func:`double_gamma`.

    Returns
    -------
    h : (n,) float64 array
        ``n = ceil(duration / dt)`` samples; ``h.sum() * dt`` is close to 1.
    """
    dt = float(check_number(dt, "dt", minimum=0, strict_min=True, unit="seconds"))
    duration = float(
        check_number(duration, "duration", minimum=dt, strict_min=False, unit="seconds")
    )
    n = int(np.ceil(duration / dt - 1e-9))
    return double_gamma(np.arange(n) * dt, peak, undershoot, ratio)


def volume_times(n_volumes: int, tr: float, start: int = 0) -> np.ndarray:
    """Acquisition-start times of volumes ``start .. start + n_volumes - 1``.

    Returns
    -------
    times : (n_volumes,) float64 array
        ``k * tr`` seconds for each volume index ``k``.
    """
    n_volumes = int(check_number(n_volumes, "n_volumes", minimum=0, integer=True))
    tr = float(check_number(tr, "tr", minimum=0, strict_min=True, unit="seconds"))
    return (start + np.arange(n_volumes)) * tr


def _check_timing(
    onsets: ArrayLike, durations: ArrayLike, frame_times: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onsets ``(n,)``, durations ``(n,)`` and frame times ``(T,)`` as float64 arrays, checked."""
    onsets = np.atleast_1d(np.asarray(onsets, dtype=np.float64))
    durations = np.atleast_1d(np.asarray(durations, dtype=np.float64))
    times = np.atleast_1d(np.asarray(frame_times, dtype=np.float64))
    if onsets.ndim != 1 or durations.shape != onsets.shape:
        raise ConfigError(
            f"'onsets' and 'durations' must be 1-D arrays of the same length, "
            f"got shapes {onsets.shape} and {durations.shape}"
        )
    if times.ndim != 1:
        raise ConfigError(f"'frame_times' must be a 1-D array, got shape {times.shape}")
    for name, arr in (("onsets", onsets), ("durations", durations), ("frame_times", times)):
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"'{name}' must hold finite seconds, got {arr!r}")
    if np.any(durations < 0):
        raise ConfigError(f"'durations' must be non-negative seconds, got {durations!r}")
    return onsets, durations, times


def _boxcar_bins(
    onsets: np.ndarray, durations: np.ndarray, dt: float, k0: int, n_bins: int
) -> np.ndarray:
    """Each trial's boxcar on the fine grid of bins ``k0 .. k0 + n_bins - 1`` (step ``dt``).

    Returns
    -------
    boxes : (n_bins, n) float64 array
        The fraction of each bin that each boxcar covers, divided by ``dt``; a zero duration
        is a unit-area impulse split linearly between the two nearest bin centres.
    """
    edges = (k0 + np.arange(n_bins + 1)) * dt
    # Fraction of each fine bin covered by each boxcar (rows: bins, columns: trials).
    ends = onsets + durations
    cover = np.clip(
        np.minimum(edges[1:, None], ends) - np.maximum(edges[:-1, None], onsets), 0.0, None
    )
    boxes = cover / dt
    for i in np.flatnonzero(durations == 0):
        # Unit-area impulse, split linearly between the two nearest bin centres.
        pos = (onsets[i] / dt - 0.5) - k0
        j = int(np.floor(pos))
        frac = pos - j
        if 0 <= j < n_bins:
            boxes[j, i] += (1.0 - frac) / dt
        if 0 <= j + 1 < n_bins:
            boxes[j + 1, i] += frac / dt
    return boxes


def trial_regressors(
    onsets: ArrayLike,
    durations: ArrayLike,
    frame_times: ArrayLike,
    tr: float,
    *,
    peak: float | ArrayLike = 6.0,
    oversampling: int = 16,
    undershoot: float = 16.0,
    ratio: float = 1 / 6,
) -> np.ndarray:
    """One regressor per trial: its boxcar convolved with the HRF, sampled at frame times.

    The convolution runs on a fine grid of step ``tr / oversampling`` anchored at time 0 (so the
    same trial gives the same values whichever frames are asked for, as the online estimator
    needs).  Each grid bin holds the fraction of it the boxcar covers, so onsets and durations
    need not fall on the grid; the result is read at the frame times by linear interpolation.
    A duration of 0 is an impulse of unit area: its regressor is the HRF itself.

    Parameters
    ----------
    onsets : (n,) array
        Trial onsets in seconds from the start of the run.
    durations : (n,) array
        Trial durations in seconds (``>= 0``).
    frame_times : (T,) array
        Times at which to read the regressors, seconds; see the module's timing convention.
    tr : float
        Repetition time in seconds; sets the fine grid step.
    peak : float or (P,) array
        HRF response delay (see :func:`double_gamma`).  An array gives one design per value,
        e.g. to simulate voxels with different HRFs.
    oversampling : int
        Fine-grid steps per TR.
    undershoot, ratio : float
        HRF shape, see :func:`double_gamma`.

    Returns
    -------
    X : (T, n) float64 array, or (P, T, n) when ``peak`` is an array
        ``X[k, i]`` is trial ``i``'s predicted response at ``frame_times[k]`` for unit beta.
    """
    tr = float(check_number(tr, "tr", minimum=0, strict_min=True, unit="seconds"))
    oversampling = int(check_number(oversampling, "oversampling", minimum=1, integer=True))
    onsets, durations, times = _check_timing(onsets, durations, frame_times)
    peaks = np.asarray(peak, dtype=np.float64)
    if peaks.ndim > 1:
        raise ConfigError(f"'peak' must be a number or a 1-D array, got shape {peaks.shape}")
    out = np.zeros((peaks.size, times.size, onsets.size))
    if onsets.size == 0 or times.size == 0:
        return out if peaks.ndim else out[0]

    dt = tr / oversampling
    kernel_len = int(np.ceil(HRF_DURATION / dt))
    k0 = int(np.floor(onsets.min() / dt)) - 1
    k1 = int(np.ceil(times.max() / dt)) + 2
    n_bins = max(k1 - k0, 1)
    boxes = _boxcar_bins(onsets, durations, dt, k0, n_bins)
    # Bin j's mass sits at its centre, so the sum at bin k is the response at (k + 0.5) dt.
    centres = (k0 + np.arange(n_bins) + 0.5) * dt
    for p, pk in enumerate(np.atleast_1d(peaks)):
        h = double_gamma(np.arange(kernel_len) * dt, pk, undershoot, ratio)
        fine = _convolve_columns(boxes, h)[:n_bins] * dt
        for i in range(onsets.size):
            out[p, :, i] = np.interp(times, centres, fine[:, i], left=0.0, right=fine[-1, i])
    out[np.abs(out) < 1e-12] = 0.0
    return out if peaks.ndim else out[0]


def trial_regressor(
    onset: float,
    duration: float,
    frame_times: ArrayLike,
    tr: float,
    *,
    peak: float = 6.0,
    oversampling: int = 16,
) -> np.ndarray:
    """Regressor of a single trial; see :func:`trial_regressors`.

    Returns
    -------
    x : (T,) float64 array
    """
    X = trial_regressors([onset], [duration], frame_times, tr, peak=peak, oversampling=oversampling)
    return X[:, 0]
