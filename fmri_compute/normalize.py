"""Masking and per-voxel normalisation of volumes, online and offline.

Voxel order everywhere is ``np.flatnonzero(mask)`` of the ROI mask in C order (see
``docs/interfaces.md``).  Online, :class:`RunningZScore` uses only the volumes seen so far in
the run; offline, :func:`zscore_run` uses the whole run.  Both use the population standard
deviation (``ddof=0``), so the last online volume of a run equals its offline z-score.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from rt_base.checks import check_number
from rt_base.errors import ConfigError

__all__ = ["RunningZScore", "check_volume", "mask_indices", "mask_volume", "zscore_run"]

#: Standard deviations at or below this (relative to the voxel's mean magnitude, or 1e-12
#: absolute) count as zero: such voxels are constant and get z = 0.
_REL_TINY = 1e-7


def mask_indices(mask: ArrayLike) -> np.ndarray:
    """Flat C-order indices of the voxels in a 3-D mask.

    Parameters
    ----------
    mask : (X, Y, Z) bool or integer array

    Returns
    -------
    indices : (V,) int64 array
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ConfigError(f"'mask' must be a 3-D (X, Y, Z) array, got shape {mask.shape}")
    return np.flatnonzero(mask).astype(np.int64)


def check_volume(volume: ArrayLike, shape: tuple[int, int, int]) -> np.ndarray:
    """Check that a volume is 3-D, numeric, and matches the mask's shape.

    Parameters
    ----------
    volume : (X, Y, Z) array
    shape : (X, Y, Z) tuple
        The ROI mask's shape.

    Returns
    -------
    volume : (X, Y, Z) array
        The input as an array.

    Raises
    ------
    ConfigError
        The shapes differ: the mask was made for another acquisition grid.
    """
    volume = np.asarray(volume)
    if not np.issubdtype(volume.dtype, np.number) or np.issubdtype(
        volume.dtype, np.complexfloating
    ):
        raise ConfigError(f"'volume' must hold real numbers, got dtype {volume.dtype}")
    if volume.shape != tuple(shape):
        raise ConfigError(
            f"'volume' has shape {volume.shape} but the ROI mask has shape {tuple(shape)}; "
            "use a mask made on this acquisition grid (same matrix and slices)"
        )
    return volume


def mask_volume(volume: ArrayLike, mask_flat_indices: ArrayLike) -> np.ndarray:
    """Pick the ROI voxels of a volume, in mask order.

    Parameters
    ----------
    volume : (X, Y, Z) array
        Any memory layout (nibabel data is often Fortran-ordered); indices are C-order.
    mask_flat_indices : (V,) int array
        From :func:`mask_indices`.

    Returns
    -------
    y : (V,) float32 array
    """
    volume = np.asarray(volume)
    idx = np.asarray(mask_flat_indices)
    if volume.ndim != 3:
        raise ConfigError(f"'volume' must be a 3-D (X, Y, Z) array, got shape {volume.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= volume.size):
        raise ConfigError(
            f"'mask_flat_indices' must lie in [0, {volume.size}) for a volume of shape "
            f"{volume.shape}, got range [{idx.min()}, {idx.max()}]"
        )
    if volume.flags.c_contiguous:
        y = volume.reshape(-1)[idx]
    else:
        y = volume[np.unravel_index(idx, volume.shape)]
    return y.astype(np.float32, copy=False)


def _safe_z(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    std = np.sqrt(np.maximum(var, 0.0))
    tiny = np.maximum(_REL_TINY * np.abs(mean), 1e-12)
    ok = std > tiny
    z = np.zeros(np.broadcast(y, mean).shape, dtype=np.float64)
    np.divide(y - mean, std, out=z, where=ok)
    return z


class RunningZScore:
    """Per-voxel z-score from the volumes seen so far (Welford, float64 accumulators).

    ``update(y)`` first adds ``y`` to the running mean and variance, then returns
    ``(y - mean) / std``: it uses volumes up to and including the current one, never later
    ones.  While fewer than ``warmup`` volumes were seen the spread is not known, and the
    output is zeros; voxels with zero spread also give 0, never NaN.  A volume with NaN or Inf
    values is refused (``ConfigError``): a censored volume goes to :meth:`score` instead, which
    z-scores it without adding it to the statistics.

    Parameters
    ----------
    n_voxels : int
        Length of each volume vector.
    warmup : int
        Volumes needed before z-scores are returned (at least 2).
    """

    def __init__(self, n_voxels: int, *, warmup: int = 3) -> None:
        self.n_voxels = int(check_number(n_voxels, "n_voxels", minimum=1, integer=True))
        self.warmup = int(check_number(warmup, "warmup", minimum=2, integer=True, unit="volumes"))
        self._mean = np.zeros(self.n_voxels, dtype=np.float64)
        self._m2 = np.zeros(self.n_voxels, dtype=np.float64)
        self.count = 0

    def reset(self) -> None:
        """Forget all volumes (call at the start of each run)."""
        self._mean[:] = 0.0
        self._m2[:] = 0.0
        self.count = 0

    @property
    def ready(self) -> bool:
        """Whether ``warmup`` volumes were seen and outputs are z-scores."""
        return self.count >= self.warmup

    @property
    def mean(self) -> np.ndarray:
        """(V,) float64 running mean."""
        return self._mean.copy()

    @property
    def std(self) -> np.ndarray:
        """(V,) float64 running population standard deviation (0 where negligible)."""
        std = np.sqrt(np.maximum(self._m2, 0.0) / max(self.count, 1))
        std[std <= np.maximum(_REL_TINY * np.abs(self._mean), 1e-12)] = 0.0
        return std

    def update(self, y: ArrayLike) -> np.ndarray:
        """Add one volume and return its z-score.

        Parameters
        ----------
        y : (V,) array
            Masked volume in scanner units.

        Returns
        -------
        z : (V,) float32 array
        """
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (self.n_voxels,):
            raise ConfigError(f"'y' must have shape ({self.n_voxels},), got {y.shape}")
        if not np.isfinite(y).all():  # one NaN would poison every later z-score of its voxel
            raise ConfigError(
                f"'y' has {int(np.count_nonzero(~np.isfinite(y)))} non-finite values (NaN or "
                "Inf): censor the volume (score() shows it without adding it), never add it"
            )
        self.count += 1
        delta = y - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (y - self._mean)
        if not self.ready:
            return np.zeros(self.n_voxels, dtype=np.float32)
        return _safe_z(y, self._mean, self._m2 / self.count).astype(np.float32)

    def score(self, y: ArrayLike) -> np.ndarray:
        """The z-score of ``y`` against the volumes added so far, *without* adding it.

        For a censored volume (see :mod:`fmri_compute.volume_checks`): it is shown, but its
        values never enter the running mean and variance.  Non-finite values give 0, as does
        every voxel before the warm-up.

        Parameters
        ----------
        y : (V,) array

        Returns
        -------
        z : (V,) float32 array
        """
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (self.n_voxels,):
            raise ConfigError(f"'y' must have shape ({self.n_voxels},), got {y.shape}")
        if not self.ready:
            return np.zeros(self.n_voxels, dtype=np.float32)
        with np.errstate(invalid="ignore"):
            z = _safe_z(y, self._mean, self._m2 / self.count)
        z[~np.isfinite(z)] = 0.0
        return z.astype(np.float32)


def zscore_run(Y: ArrayLike) -> np.ndarray:
    """Whole-run per-voxel z-score (the offline counterpart of :class:`RunningZScore`).

    Parameters
    ----------
    Y : (T, V) array
        One run, rows are volumes.

    Returns
    -------
    Z : (T, V) float32 array
        Constant voxels give 0.
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2:
        raise ConfigError(f"'Y' must be a (T, V) array of volumes x voxels, got shape {Y.shape}")
    mean = Y.mean(axis=0)
    return _safe_z(Y, mean, Y.var(axis=0)).astype(np.float32)
