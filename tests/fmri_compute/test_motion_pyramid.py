"""The reference side of rigid registration: mask, pyramid levels, grid coordinates, Jacobian."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from fmri_compute import rigid
from fmri_compute.motion_pyramid import (
    auto_mask,
    build_level,
    downsample,
    level_affine,
    normalizer,
    pyramid,
)

SHAPE = (30, 34, 26)


def blob(shape=SHAPE) -> np.ndarray:
    idx = np.indices(shape, dtype=float)
    c = (np.asarray(shape, float) - 1)[:, None, None, None] / 2
    width = np.array([8.0, 10.0, 7.0])[:, None, None, None]
    return (500 * np.exp(-((((idx - c) / width) ** 2).sum(0)))).astype(np.float32)


def oblique_affine() -> np.ndarray:
    rot = rigid.rigid_matrix([0, 0, 0, 10.0, -5.0, 20.0], [0, 0, 0])[:3, :3]
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([2.0, 2.2, 2.5])
    aff[:3, 3] = [-20.0, 5.0, 30.0]
    return aff


def test_auto_mask_keeps_the_head_and_drops_the_background():
    vol = blob()
    rng = np.random.default_rng(0)
    noisy = vol + rng.normal(0, 5, vol.shape).astype(np.float32)
    noisy[0, 0, 0] = 2.0 * vol.max()  # one hot voxel must not make the threshold
    mask = auto_mask(noisy)
    assert mask.dtype == bool
    assert mask[tuple((np.asarray(SHAPE) - 1) // 2)]
    assert not mask[0, 0, 0]  # the hot voxel is not connected to the head
    assert mask[vol > 0.25 * vol.max()].all()
    assert not mask[vol < 0.05 * vol.max()].any()
    assert not auto_mask(np.zeros(SHAPE)).any()


def test_pyramid_pools_like_downsampling_from_the_full_grid():
    rng = np.random.default_rng(1)
    vol = torch.as_tensor(rng.standard_normal((1, 1, 33, 29, 21)), dtype=torch.float32)
    levels = pyramid(vol, (8, 4, 2, 1))
    for factor in (2, 4, 8):
        direct = F.avg_pool3d(vol, factor, factor)
        assert levels[factor].shape == direct.shape
        torch.testing.assert_close(levels[factor], direct, atol=1e-5, rtol=1e-5)
    assert downsample(vol, 1) is vol


def test_level_affine_puts_a_block_at_its_centre():
    aff = oblique_affine()
    for factor in (2, 3, 4):
        lvl = level_affine(aff, factor)
        block_centre = aff @ np.r_[np.full(3, (factor - 1) / 2), 1]
        np.testing.assert_allclose(lvl @ [0, 0, 0, 1], block_centre)
        np.testing.assert_allclose(lvl @ [1, 0, 0, 1] - lvl @ [0, 0, 0, 1], factor * aff[:, 0])


def test_normalizer_maps_grid_corners_to_grid_sample_corners():
    shape = (5, 7, 9)
    n = normalizer(shape)
    np.testing.assert_allclose(n @ [0, 0, 0, 1], [-1, -1, -1, 1])
    np.testing.assert_allclose(n @ [4, 6, 8, 1], [1, 1, 1, 1])
    # the array's last axis is grid_sample's first coordinate
    vol = torch.arange(np.prod(shape), dtype=torch.float32).reshape(1, 1, *shape)
    point = n @ [1, 2, 3, 1]
    grid = torch.as_tensor(point[:3], dtype=torch.float32).view(1, 1, 1, 1, 3)
    assert F.grid_sample(vol, grid, align_corners=True).item() == vol[0, 0, 1, 2, 3].item()


def test_jacobian_predicts_the_reference_under_a_small_motion():
    ref = blob()
    aff = oblique_affine()
    center = rigid.grid_center(SHAPE, aff)
    mask = ref > 0.1 * ref.max()
    level = build_level(
        torch.as_tensor(ref)[None, None], mask, aff, center, 1, max_points=None, tolerance=1e-3
    )
    assert level.n_points == mask.sum()
    np.testing.assert_allclose(level.values.numpy(), ref[mask], rtol=1e-6)
    idx = level.points.numpy()
    eps = 1e-3
    for k in range(6):  # each parameter: finite difference of ref(W(eps e_k) x)
        params = np.zeros(6)
        params[k] = eps if k < 3 else np.rad2deg(eps)  # the Jacobian's rotations are radians
        vox = np.linalg.inv(aff) @ rigid.rigid_matrix(params, center) @ aff
        moved = ndimage.map_coordinates(
            ref.astype(np.float64), (vox @ idx)[:3], order=3, mode="nearest"
        )
        numeric = (moved - ref[mask]) / eps
        predicted = level.jacobian_t[k].numpy()
        scale = np.abs(numeric).max()
        assert scale > 1.0  # the blob does respond to this parameter
        assert np.abs(predicted - numeric).max() < 0.05 * scale, k
    np.testing.assert_allclose(level.jacobian_t[6].numpy(), ref[mask], rtol=1e-6)  # the gain
    jt = level.jacobian_t.double().numpy()
    np.testing.assert_allclose(level.hessian, jt @ jt.T, atol=1e-5 * np.abs(jt @ jt.T).max())


def test_max_points_keeps_a_fixed_subset():
    ref = blob()
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    ref_t = torch.as_tensor(ref)[None, None]
    mask = ref > 0.05 * ref.max()
    center = rigid.grid_center(SHAPE, aff)
    a, b = (build_level(ref_t, mask, aff, center, 1, max_points=500, tolerance=1e-3) for _ in "ab")
    assert a.n_points == 500
    torch.testing.assert_close(a.points, b.points)
    coarse = build_level(ref_t, mask, aff, center, 2, max_points=None, tolerance=2e-3)
    assert coarse.shape == (15, 17, 13) and coarse.tolerance == 2e-3
    assert coarse.n_points < mask.sum() / 6
