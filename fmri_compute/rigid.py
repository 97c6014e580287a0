"""Rigid head motion: the six parameters, their 4x4 transform, reslicing, framewise displacement.

One convention for the whole project (the simulator that moves its subject, the registration
that estimates the motion, the recording and the summary):

- Parameters ``p = (tx, ty, tz, rx, ry, rz)``: translations in mm along the scanner's world
  axes (the volume affine's output space, RAS for NIfTI), rotations in degrees about those
  axes, applied x first, then y, then z (``R = Rz @ Ry @ Rx``), about the centre of the field of
  view (:func:`grid_center`), so that a rotation does not also shift the head by the distance
  from the scanner's origin.
- The motion ``M(p)`` maps a point of the head at the reference position to where that point is
  in the moved volume: ``x_moved = R (x_ref - c) + c + t``.  So ``moved(M x) = reference(x)``;
  a moved volume is *corrected* by sampling it at ``M x`` for every reference grid point ``x``
  (:func:`reslice`), and a reference is *moved* by sampling it at ``M^-1 y``
  (:func:`move_volume`, used by the simulator and the tests).
- Framewise displacement (Power et al. 2012): ``|dtx| + |dty| + |dtz| + r (|drx| + |dry| + |drz|)``
  between consecutive volumes, rotations in radians, ``r = 50 mm`` (a sphere the size of a head);
  the first volume's FD is 0.

This module is numpy and scipy; :mod:`fmri_compute.motion` estimates the parameters in torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "PARAM_NAMES",
    "framewise_displacement",
    "grid_center",
    "move_volume",
    "params_from_matrix",
    "reslice",
    "reslice_points",
    "rigid_matrix",
    "voxel_matrix",
]

#: names of the six parameters, in order (mm, mm, mm, degrees, degrees, degrees)
PARAM_NAMES: tuple[str, ...] = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")

#: Power et al.'s head radius for framewise displacement (mm)
FD_RADIUS_MM = 50.0


def _rotation(angles_deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, float))
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def grid_center(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """(3,) world coordinates (mm) of the centre of a grid of ``shape`` with ``affine``."""
    centre = (np.asarray(shape[:3], float) - 1) / 2
    return np.asarray(affine, float)[:3, :3] @ centre + np.asarray(affine, float)[:3, 3]


def rigid_matrix(params: Sequence[float], center: Sequence[float]) -> np.ndarray:
    """(4, 4) world transform ``M(p)`` of the six parameters about ``center`` (mm)."""
    p = np.asarray(params, float)
    if p.shape != (6,):
        raise ValueError(f"rigid parameters must be 6 numbers, got shape {p.shape}")
    c = np.asarray(center, float)
    rot = _rotation(p[3:])
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = c - rot @ c + p[:3]
    return m


def params_from_matrix(matrix: np.ndarray, center: Sequence[float]) -> np.ndarray:
    """The six parameters of a rigid world transform about ``center`` (inverse of
    :func:`rigid_matrix` for rotations under 90 degrees about y)."""
    m = np.asarray(matrix, float)
    rot = m[:3, :3]
    ry = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    rx = np.arctan2(rot[2, 1], rot[2, 2])
    rz = np.arctan2(rot[1, 0], rot[0, 0])
    c = np.asarray(center, float)
    t = m[:3, 3] - (c - rot @ c)
    return np.concatenate([t, np.rad2deg([rx, ry, rz])])


def voxel_matrix(params: Sequence[float], affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(4, 4) voxel-to-voxel map ``A^-1 M(p) A``: reference grid index -> moved volume index."""
    aff = np.asarray(affine, float)
    return np.linalg.inv(aff) @ rigid_matrix(params, grid_center(shape, aff)) @ aff


def _sample(volume: np.ndarray, vox: np.ndarray, order: int) -> np.ndarray:
    from scipy.ndimage import affine_transform

    out = affine_transform(
        np.asarray(volume, np.float32), vox, order=order, mode="constant", cval=0.0
    )
    return out.astype(np.float32, copy=False)


def reslice(
    moved: np.ndarray, affine: np.ndarray, params: Sequence[float], order: int = 1
) -> np.ndarray:
    """Correct a volume that moved by ``params``: ``out(x) = moved(M x)`` on the same grid.

    Points that fall outside the moved volume's grid are 0.  ``order`` is the spline order
    (1 trilinear, 3 cubic).
    """
    return _sample(moved, voxel_matrix(params, affine, moved.shape), order)


def reslice_points(
    moved: np.ndarray,
    affine: np.ndarray,
    params: Sequence[float],
    points: np.ndarray,
    order: int = 1,
) -> np.ndarray:
    """:func:`reslice` at some grid points only: ``out[i] = moved(M x_i)`` for the (N, 3) voxel
    indices ``points`` of the reference grid (e.g. an ROI's voxels: far cheaper than a whole
    volume).  Points that fall outside the moved volume are 0."""
    from scipy.ndimage import map_coordinates

    vox = voxel_matrix(params, affine, moved.shape)
    pts = np.asarray(points, float)
    coords = vox[:3, :3] @ pts.T + vox[:3, 3:4]
    out = map_coordinates(np.asarray(moved, np.float32), coords, order=order, mode="constant")
    return out.astype(np.float32, copy=False)


def move_volume(
    reference: np.ndarray, affine: np.ndarray, params: Sequence[float], order: int = 3
) -> np.ndarray:
    """The volume a head at ``reference`` gives after moving by ``params``: ``out(y) =
    reference(M^-1 y)`` (the simulator's motion; cubic by default)."""
    vox = np.linalg.inv(voxel_matrix(params, affine, reference.shape))
    return _sample(reference, vox, order)


def framewise_displacement(params: np.ndarray, radius: float = FD_RADIUS_MM) -> np.ndarray:
    """(T,) framewise displacement (mm) of a (T, 6) parameter series; FD of the first is 0."""
    p = np.asarray(params, float)
    if p.ndim != 2 or p.shape[1] != 6:
        raise ValueError(f"motion parameters must be (T, 6), got shape {p.shape}")
    if len(p) == 0:
        return np.zeros(0)
    d = np.abs(np.diff(p, axis=0))
    fd = d[:, :3].sum(1) + radius * np.deg2rad(d[:, 3:]).sum(1)
    return np.concatenate([[0.0], fd])
