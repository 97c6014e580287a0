"""What a rigid fit's Gauss-Newton steps share (:mod:`fmri_compute.motion`,
:mod:`fmri_compute.motion_refine`): the fit's state and answer, and an update's size in
parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmri_compute.motion_pyramid import Level, normalizer
from fmri_compute.rigid import FD_RADIUS_MM

__all__ = ["FitState", "MotionEstimate", "displacement", "small_update", "to_grid", "update_params"]


@dataclass(frozen=True)
class MotionEstimate:
    """The rigid motion of one volume relative to the reference.

    Attributes
    ----------
    params : (6,) float64, ``(tx, ty, tz mm, rx, ry, rz degrees)`` in the
        :mod:`fmri_compute.rigid` convention.
    iterations : Gauss-Newton iterations spent, all levels together (and the final step over
        all mask points, when the levels used a subset).
    converged : the finest level stopped on its tolerance before its iteration budget ran out.
    cost : mean squared residual ``gain * moved(M x) - reference(x)`` over the finest level's
        points (all its mask points after a subset) at the last evaluated parameters
        (reference units squared).
    """

    params: np.ndarray
    iterations: int
    converged: bool
    cost: float


@dataclass
class FitState:
    """The state of one estimate as it goes through the levels and steps."""

    matrix: np.ndarray
    gain: float = 1.0
    iterations: int = 0
    converged: bool = False
    cost: float = float("nan")


def to_grid(level: Level) -> np.ndarray:
    """(4, 4) world mm -> ``grid_sample`` coordinates of ``level``'s grid."""
    return normalizer(level.shape) @ np.linalg.inv(level.affine)


def update_params(delta: np.ndarray) -> np.ndarray:
    """Rigid parameters (mm, degrees) of a Gauss-Newton update (mm, radians, gain)."""
    return np.concatenate([delta[:3], np.rad2deg(delta[3:6])])


def displacement(delta: np.ndarray) -> float:
    """Framewise-displacement size (mm) of a Gauss-Newton update (mm, radians)."""
    return float(np.abs(delta[:3]).sum() + FD_RADIUS_MM * np.abs(delta[3:6]).sum())


def small_update(delta: np.ndarray, tolerance: float) -> bool:
    """Every translation of the update under ``tolerance`` mm and every rotation under
    ``tolerance`` degrees."""
    return bool(np.all(np.abs(update_params(delta)) < tolerance))
