"""The simulated subject's anatomy: brain, tissue baseline and ROI on the dataset grid.

Geometry follows NSD's 1.8 mm functional space: an 81 x 104 x 83 grid whose brain comes from
nilearn's bundled MNI152 masks, scaled to fill the field of view; the ``nsdgeneral``-like ROI
is exactly ``n_roi`` posterior grey-matter voxels (occipital, posterior parietal and ventral
temporal cortex).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from rt_base.errors import ConfigError

__all__ = ["Geometry", "make_geometry"]


@dataclass
class Geometry:
    """The subject's anatomy on the dataset grid.

    Attributes
    ----------
    brain, roi : (X, Y, Z) bool masks (roi is inside brain).
    baseline : (X, Y, Z) float32 baseline image (0 outside the brain).
    roi_mni : (V, 3) float MNI coordinates (mm) of the ROI voxels, ROI order.
    roi_in_brain : (V,) int positions of the ROI voxels among the brain voxels (C order).
    mni_spacing : MNI millimetres per grid voxel (the MNI brain is scaled to fit the grid).
    """

    brain: np.ndarray
    roi: np.ndarray
    baseline: np.ndarray
    roi_mni: np.ndarray
    roi_in_brain: np.ndarray
    mni_spacing: float


@lru_cache(maxsize=1)
def _mni_masks() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """nilearn's bundled MNI152 brain, grey- and white-matter masks (float32) and affine."""
    # nilearn.datasets takes seconds to import: only when a subject is drawn.
    from nilearn import datasets

    imgs = [
        datasets.load_mni152_brain_mask(),
        datasets.load_mni152_gm_mask(),
        datasets.load_mni152_wm_mask(),
    ]
    return tuple(np.asarray(im.dataobj, np.float32) for im in imgs), imgs[0].affine


@lru_cache(maxsize=2)
def _smoothed_masks(sigma: float) -> tuple[np.ndarray, ...]:
    return tuple(gaussian_filter(m, sigma) for m in _mni_masks()[0])


def make_geometry(shape: tuple[int, int, int], n_roi: int, rng: np.random.Generator) -> Geometry:
    """Brain, tissue baseline and an exact-size posterior grey-matter ROI on a ``shape`` grid."""
    masks, aff = _mni_masks()
    vox = np.argwhere(masks[0] > 0)
    lo, hi = (aff[:3, :3] @ vox.min(0) + aff[:3, 3]), (aff[:3, :3] @ vox.max(0) + aff[:3, 3])
    size = np.asarray(shape, float)
    spacing = float(np.max((hi - lo + 1) / (size - 4)))  # 2-voxel margin on each side
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    mni = (lo + hi) / 2 + (ijk - (size - 1) / 2) * spacing
    src = (np.linalg.inv(aff) @ np.c_[mni, np.ones(len(mni))].T)[:3]
    sigma = max(spacing / 2.355 / float(np.abs(aff[0, 0])), 0.0)
    brain, gm, wm = (
        map_coordinates(m, src, order=1).reshape(shape).clip(0, 1)
        for m in _smoothed_masks(round(sigma, 2))
    )
    inside = brain >= 0.5
    tissue = np.maximum(gm + wm, 1e-6)
    over = np.maximum(tissue / np.maximum(brain, 1e-6), 1.0)
    gm, wm = gm / over, wm / over
    csf = np.clip(brain - gm - wm, 0, 1)
    bias = 1 + 0.08 * (np.linalg.norm((ijk - (size - 1) / 2) / size, axis=1) ** 2).reshape(shape)
    texture = 1 + 0.03 * gaussian_filter(rng.standard_normal(shape), 1.0) / 0.2
    baseline = (1050 * gm + 850 * wm + 1300 * csf) * bias * texture
    baseline = np.where(inside, baseline, 0).astype(np.float32)

    x, y, z = (mni[:, k].reshape(shape) for k in range(3))
    cerebellum = (z < -20) | ((y < -40) & (np.abs(x) < 25) & (z < -5))
    candidate = inside & (gm >= 0.5) & ~cerebellum
    n_cand = int(candidate.sum())
    if n_roi > n_cand:
        raise ConfigError(
            f"'n_roi' must be at most the {n_cand} posterior grey-matter voxels of a {shape} "
            f"grid, got {n_roi}: lower 'n_roi' or enlarge 'shape'"
        )
    smooth = gaussian_filter(rng.standard_normal(shape), 2.0)
    score = -y + 1.2 * np.maximum(-z, 0) + 0.15 * np.maximum(z - 20, 0) + 4 * smooth / smooth.std()
    flat = np.flatnonzero(candidate)
    keep = flat[np.argsort(-score.ravel()[flat], kind="stable")[:n_roi]]
    roi = np.zeros(shape, bool)
    roi.ravel()[keep] = True
    roi_idx = np.flatnonzero(roi)
    return Geometry(
        brain=inside,
        roi=roi,
        baseline=baseline,
        roi_mni=mni[roi_idx].astype(np.float64),
        roi_in_brain=np.searchsorted(np.flatnonzero(inside), roi_idx),
        mni_spacing=spacing,
    )
