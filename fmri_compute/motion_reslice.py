"""Resampling a moved volume onto the reference grid (whole, or at chosen voxels) for
:class:`fmri_compute.motion.RigidRegistration`: trilinear, 0 outside the volume's grid."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fmri_compute.motion_pyramid import normalizer
from fmri_compute.rigid import rigid_matrix
from rt_base.errors import ConfigError

__all__ = ["check_params", "reslice_grid", "sample_points", "voxel_transform"]


def check_params(params) -> np.ndarray:
    """(6,) float64 rigid parameters, or a ConfigError."""
    p = np.asarray(params, float)
    if p.shape != (6,) or not np.all(np.isfinite(p)):
        raise ConfigError(f"'params' must be 6 finite numbers, got {params!r}")
    return p


def voxel_transform(
    params: np.ndarray, center: np.ndarray, affine: np.ndarray, shape, device
) -> torch.Tensor:
    """(3, 4) float32 map from reference voxel index to the moved volume's ``grid_sample``
    coordinates under ``params``."""
    voxel_map = np.linalg.inv(affine) @ rigid_matrix(params, center) @ affine
    return torch.as_tensor((normalizer(shape) @ voxel_map)[:3], dtype=torch.float32, device=device)


def reslice_grid(
    moved: torch.Tensor, transform: torch.Tensor, axes: list[torch.Tensor]
) -> np.ndarray:
    """(X, Y, Z) float32 ``moved`` sampled at every voxel of the reference grid (``axes``: the
    voxel indices along each axis)."""
    # the (X, Y, Z, 3) grid of an affine map is a sum of one term per axis: built so, it
    # costs a fifth of F.affine_grid's general construction
    i, j, k = (axis[:, None] * transform[:, n] for n, axis in enumerate(axes))
    grid = (i[:, None, :] + j[None, :, :] + transform[:, 3])[:, :, None, :] + k
    out = F.grid_sample(moved, grid[None], mode="bilinear", align_corners=True)
    return out[0, 0].cpu().numpy()


def sample_points(
    moved: torch.Tensor, transform: torch.Tensor, homogeneous: torch.Tensor
) -> np.ndarray:
    """(N,) float32 ``moved`` sampled at the (4, N) homogeneous reference voxel indices."""
    coords = transform @ homogeneous
    out = F.grid_sample(moved, coords.T[None, None, None], mode="bilinear", align_corners=True)
    return out.view(-1).cpu().numpy()
