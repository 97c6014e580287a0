"""Checks of a rigid registration's inputs (:mod:`fmri_compute.motion`): each refuses what
cannot work with a :class:`~rt_base.errors.ConfigError` that says which input and why."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rt_base.checks import check_number
from rt_base.errors import ConfigError


def check_volume(volume: np.ndarray, name: str) -> np.ndarray:
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ConfigError(f"'{name}' must be a 3-D (X, Y, Z) array, got shape {vol.shape}")
    if not (np.issubdtype(vol.dtype, np.floating) or np.issubdtype(vol.dtype, np.integer)):
        raise ConfigError(f"'{name}' must hold real numbers, got dtype {vol.dtype}")
    vol = np.ascontiguousarray(vol, dtype=np.float32)
    if not np.isfinite(vol).all():
        raise ConfigError(f"'{name}' holds NaN or infinite values: replace them (e.g. by 0)")
    return vol


def check_affine(affine: np.ndarray) -> np.ndarray:
    aff = np.asarray(affine, float)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise ConfigError(f"'affine' must be a finite (4, 4) array, got shape {aff.shape}")
    if abs(np.linalg.det(aff[:3, :3])) < 1e-6:
        raise ConfigError("'affine' is singular: its 3 x 3 part must map voxels to millimetres")
    return aff


def check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != shape:
        raise ConfigError(f"'mask' must have the reference's shape {shape}, got {m.shape}")
    if m.dtype != bool:
        raise ConfigError(f"'mask' must be a bool array, got dtype {m.dtype}")
    return m


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(check_number(f, "levels", minimum=1, integer=True)) for f in levels)
    except TypeError:
        raise ConfigError(
            f"'levels' must be a sequence of block sizes like (4, 2, 1), got {levels!r}"
        ) from None
    if not out or any(a <= b for a, b in zip(out, out[1:], strict=False)):
        raise ConfigError(
            f"'levels' must be strictly decreasing positive block sizes like (4, 2, 1), got {levels!r}"
        )
    return out
