"""The rigid-motion convention: parameters <-> matrix, moving and reslicing, FD."""

import numpy as np
import pytest

from fmri_compute.rigid import (
    framewise_displacement,
    grid_center,
    move_volume,
    params_from_matrix,
    reslice,
    rigid_matrix,
)


def _affine(shape, size=2.0):
    aff = np.diag([size, size, size, 1.0])
    aff[:3, 3] = [-30.0, -40.0, 10.0]
    return aff


def test_matrix_round_trip():
    rng = np.random.default_rng(0)
    c = rng.normal(size=3) * 20
    for _ in range(20):
        p = np.concatenate([rng.uniform(-5, 5, 3), rng.uniform(-10, 10, 3)])
        np.testing.assert_allclose(params_from_matrix(rigid_matrix(p, c), c), p, atol=1e-9)


def test_rotation_order_and_centre():
    c = np.array([1.0, 2.0, 3.0])
    m = rigid_matrix([0, 0, 0, 0, 0, 90], c)
    # 90 degrees about z: x -> y, about the centre, which stays put
    np.testing.assert_allclose(m @ np.r_[c, 1], np.r_[c, 1], atol=1e-12)
    np.testing.assert_allclose(m[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    # x first, then z: the x axis is unchanged by rx, then turned to y by rz
    m2 = rigid_matrix([0, 0, 0, 90, 0, 90], c)
    np.testing.assert_allclose(m2[:3, :3] @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    with pytest.raises(ValueError, match="6 numbers"):
        rigid_matrix([1, 2, 3], c)


def test_grid_center_is_world_centre():
    shape = (11, 21, 31)
    aff = _affine(shape)
    np.testing.assert_allclose(grid_center(shape, aff), aff[:3, :3] @ [5, 10, 15] + aff[:3, 3])


def test_move_then_reslice_recovers_the_reference():
    shape = (32, 36, 30)
    aff = _affine(shape)
    idx = np.indices(shape).astype(float)
    c = (np.array(shape) - 1)[:, None, None, None] / 2
    ref = np.exp(-(((idx - c) / np.array([7, 9, 6])[:, None, None, None]) ** 2).sum(0))
    p = [1.5, -2.0, 0.7, 2.0, -1.0, 3.0]
    moved = move_volume(ref.astype(np.float32), aff, p)
    assert np.abs(moved - ref).max() > 0.1  # it did move
    back = reslice(moved, aff, p, order=3)
    inner = (slice(6, -6),) * 3
    assert np.abs(back[inner] - ref[inner]).max() < 0.02


def test_pure_translation_moves_the_blob_by_that_many_mm():
    shape = (30, 30, 30)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    ref = np.zeros(shape, np.float32)
    ref[10, 12, 14] = 1.0
    moved = move_volume(ref, aff, [4.0, 0, -2.0, 0, 0, 0], order=1)
    assert np.unravel_index(np.argmax(moved), shape) == (12, 12, 13)


def test_framewise_displacement():
    p = np.zeros((3, 6))
    p[1] = [0.1, -0.2, 0.0, 0.0, 0.0, 0.0]
    p[2] = p[1] + [0, 0, 0, np.rad2deg(0.01), 0, 0]
    np.testing.assert_allclose(framewise_displacement(p), [0.0, 0.3, 0.5])
    assert framewise_displacement(np.zeros((0, 6))).shape == (0,)
    with pytest.raises(ValueError, match=r"\(T, 6\)"):
        framewise_displacement(np.zeros((3, 5)))


def test_reslice_points_equals_reslice_at_those_points():
    from fmri_compute.rigid import reslice_points

    rng = np.random.default_rng(3)
    shape = (20, 22, 18)
    aff = _affine(shape)
    moved = rng.normal(size=shape).astype(np.float32)
    p = [0.8, -1.1, 0.4, 1.5, 0.5, -2.0]
    pts = np.argwhere(rng.random(shape) < 0.05)
    full = reslice(moved, aff, p, order=1)
    np.testing.assert_allclose(
        reslice_points(moved, aff, p, pts), full[tuple(pts.T)], rtol=1e-5, atol=1e-5
    )
