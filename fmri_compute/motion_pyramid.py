"""The reference side of rigid registration: brain mask, resolution pyramid, Jacobians.

:class:`fmri_compute.motion.RigidRegistration` fits the six rigid parameters of
:mod:`fmri_compute.rigid` by inverse-compositional Gauss-Newton: the residual of every mask point
``x`` is ``gain * moved(M x) - reference(x)`` and its derivative with respect to a small update
is that of the *reference*, which does not change from volume to volume.  So everything here is
computed once per reference: for each pyramid level, the points that drive the fit, their
reference intensities, their Jacobian rows (7 columns: 3 translations in mm, 3 rotations in
radians about the field-of-view centre, 1 relative gain) and the Gauss-Newton matrix.

A level of factor ``f`` is the volume averaged over ``f x f x f`` blocks
(:func:`torch.nn.functional.avg_pool3d`); its voxel ``i`` sits at full-grid index
``f i + (f - 1) / 2``, which :func:`level_affine` puts into the level's affine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = [
    "COARSEST_VOXEL_MM",
    "default_levels",
    "Level",
    "auto_mask",
    "build_level",
    "downsample",
    "level_affine",
    "normalizer",
    "pyramid",
]

#: the automatic mask keeps voxels above this fraction of the 99th intensity percentile
MASK_FRACTION = 0.2
#: the default pyramid's coarsest level has voxels of at most this size (mm)
COARSEST_VOXEL_MM = 8.0


def auto_mask(reference: np.ndarray, fraction: float = MASK_FRACTION) -> np.ndarray:
    """(X, Y, Z) bool brain mask of an EPI-like reference.

    Voxels above ``fraction`` of a robust maximum (the 99th percentile of the positive voxels),
    the largest connected part, holes filled, dilated by one voxel so the brain's edge (where
    most of the alignment information is) is inside.
    """
    ref = np.asarray(reference, np.float32)
    positive = ref[ref > 0]
    if positive.size == 0:
        return np.zeros(ref.shape, bool)
    mask = ref > fraction * np.percentile(positive, 99)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == np.argmax(sizes)
    mask = ndimage.binary_fill_holes(mask)
    return ndimage.binary_dilation(mask, iterations=1)


def level_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    """(4, 4) affine of the grid averaged over ``factor``-voxel blocks."""
    scale = np.diag([factor, factor, factor, 1.0])
    scale[:3, 3] = (factor - 1) / 2
    return np.asarray(affine, float) @ scale


def downsample(volume: torch.Tensor, factor: int) -> torch.Tensor:
    """(1, 1, X, Y, Z) tensor averaged over ``factor``-voxel blocks (the tail is dropped)."""
    if factor == 1:
        return volume
    return F.avg_pool3d(volume, kernel_size=factor, stride=factor)


def pyramid(volume: torch.Tensor, factors: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """``{factor: downsample(volume, factor)}``, each level pooled from the finest one already
    made whose block size divides it (a mean of block means is the block mean, and the shapes
    agree: ``(n // a) // b == n // (a b)``), which is several times cheaper."""
    levels = {1: volume}
    for factor in sorted(factors):
        if factor not in levels:
            base = max(f for f in levels if factor % f == 0)
            levels[factor] = downsample(levels[base], factor // base)
    return levels


def normalizer(shape: tuple[int, ...]) -> np.ndarray:
    """(4, 4) map from voxel index ``(i, j, k, 1)`` to :func:`~torch.nn.functional.grid_sample`'s
    coordinates ``(k, j, i, 1)`` in ``[-1, 1]`` (``align_corners=True``; the last array axis is
    the grid's first coordinate)."""
    n = np.zeros((4, 4))
    for out_axis, in_axis in enumerate((2, 1, 0)):
        size = max(shape[in_axis] - 1, 1)
        n[out_axis, in_axis] = 2.0 / size
        n[out_axis, 3] = -1.0
    n[3, 3] = 1.0
    return n


@dataclass(frozen=True)
class Level:
    """One pyramid level of the reference, ready for Gauss-Newton.

    Attributes
    ----------
    factor : block size of this level (1 is the full grid).
    affine : (4, 4) voxel -> world mm of this level's grid.
    shape : (X, Y, Z) of this level's grid.
    points : (4, N) float32 tensor, homogeneous voxel indices of the points that drive the fit
        (one row per coordinate: ``transform @ points`` is one small fast product).
    values : (N,) float32 tensor, the reference at those points.
    jacobian_t : (7, N) float32 tensor, d reference(W(delta) x) / d delta at delta = 0.
    hessian : (7, 7) float64 Gauss-Newton matrix ``J^T J`` of all the points.
    tolerance : parameter change (mm and degrees) below which this level has converged.
    """

    factor: int
    affine: np.ndarray
    shape: tuple[int, int, int]
    points: torch.Tensor
    values: torch.Tensor
    jacobian_t: torch.Tensor
    hessian: np.ndarray
    tolerance: float

    @property
    def n_points(self) -> int:
        return int(self.values.shape[0])


def build_level(
    reference: torch.Tensor,
    mask: np.ndarray,
    affine: np.ndarray,
    center: np.ndarray,
    factor: int,
    *,
    max_points: int | None,
    tolerance: float,
    seed: int = 0,
) -> Level:
    """The :class:`Level` of ``factor`` for a (1, 1, X, Y, Z) float32 ``reference``.

    Parameters
    ----------
    reference : (1, 1, X, Y, Z) float32 tensor on the registration's device.
    mask : (X, Y, Z) bool, the full-resolution mask; a level voxel is in when at least half of
        its block is.
    affine : (4, 4) voxel -> world of the full grid; center : (3,) world rotation centre (mm).
    max_points : keep at most this many mask points (a fixed random subset; ``None``: all).
    """
    device = reference.device
    ref = downsample(reference, factor)
    shape = tuple(int(s) for s in ref.shape[2:])
    mask_t = torch.as_tensor(mask, dtype=torch.float32, device=device)[None, None]
    inside = (downsample(mask_t, factor)[0, 0] >= 0.5).cpu().numpy()
    ref_np = ref[0, 0].cpu().numpy().astype(np.float64)
    idx = np.argwhere(inside)
    aff = level_affine(affine, factor)
    # reference gradient per voxel index (central differences), then per world mm: d/dx = A^-T d/di
    grads = np.gradient(ref_np) if min(shape) > 1 else [np.zeros_like(ref_np)] * 3
    g_index = np.stack([g[tuple(idx.T)] for g in grads], axis=1)
    g_world = g_index @ np.linalg.inv(aff[:3, :3])
    if max_points is not None and len(idx) > max_points:
        # a uniform subset: measured at NSD size, keeping the strongest gradients instead was
        # no more accurate, and the error of 40 000 points is within 2x of all 350 000
        keep = np.sort(np.random.default_rng(seed).choice(len(idx), max_points, replace=False))
        idx, g_world = idx[keep], g_world[keep]
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    values = ref_np[tuple(idx.T)]
    # W(delta) x = x + omega x (x - c) + t: the rotation columns are (x - c) x grad
    jac = np.concatenate([g_world, np.cross(world - center, g_world), values[:, None]], axis=1)
    points = np.concatenate([idx.T, np.ones((1, len(idx)))], axis=0)
    return Level(
        factor=factor,
        affine=aff,
        shape=shape,  # type: ignore[arg-type]
        points=torch.as_tensor(points, dtype=torch.float32, device=device),
        values=torch.as_tensor(values, dtype=torch.float32, device=device),
        jacobian_t=torch.as_tensor(np.ascontiguousarray(jac.T), dtype=torch.float32, device=device),
        hessian=jac.T @ jac,
        tolerance=tolerance,
    )


def default_levels(affine: np.ndarray, coarsest_mm: float = COARSEST_VOXEL_MM) -> tuple[int, ...]:
    """Block sizes 1, 2, 4, ... while a block's smallest side stays within ``coarsest_mm``,
    coarse to fine: ``(4, 2, 1)`` for 1.8 or 2 mm voxels, ``(2, 1)`` for 3 mm."""
    voxel_mm = float(np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0).min())
    factors = [1]
    while voxel_mm * factors[-1] * 2 <= coarsest_mm:
        factors.append(factors[-1] * 2)
    return tuple(reversed(factors))
