from __future__ import annotations

import numpy as np
import pytest

from fmri_compute.normalize import (
    RunningZScore,
    check_volume,
    mask_indices,
    mask_volume,
    zscore_run,
)
from rt_base.errors import ConfigError


def scanner_run(seed=0, T=60, V=40):
    """Scanner-like data: large per-voxel baselines, drift, noise, and one constant voxel."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(500, 1500, V)
    Y = base + 5 * rng.standard_normal((T, V)) + np.linspace(0, 20, T)[:, None]
    Y[:, 3] = 1234.0
    return Y.astype(np.float32)


def test_running_zscore_matches_prefix_statistics():
    Y = scanner_run()
    rz = RunningZScore(Y.shape[1], warmup=3)
    for k, y in enumerate(Y):
        z = rz.update(y)
        assert z.dtype == np.float32 and z.shape == (Y.shape[1],)
        assert np.all(np.isfinite(z))
        prefix = Y[: k + 1].astype(np.float64)
        np.testing.assert_allclose(rz.mean, prefix.mean(0), rtol=1e-10)
        np.testing.assert_allclose(rz.std, prefix.std(0), rtol=1e-6, atol=1e-9)
        if k + 1 < 3:
            assert not rz.ready and np.all(z == 0)
        else:
            std = prefix.std(0)
            ok = std > 0
            expected = np.zeros_like(std)
            expected[ok] = (prefix[-1] - prefix.mean(0))[ok] / std[ok]
            np.testing.assert_allclose(z, expected, rtol=1e-4, atol=1e-4)
    # The last online volume is the offline z-score of the run's last volume.
    np.testing.assert_allclose(z, zscore_run(Y)[-1], rtol=1e-4, atol=1e-4)


def test_first_volumes_and_constant_voxels_give_no_nan():
    Y = scanner_run()
    rz = RunningZScore(Y.shape[1], warmup=2)
    Z = np.stack([rz.update(y) for y in Y])
    assert np.all(np.isfinite(Z))
    assert np.all(Z[0] == 0)  # one volume: no spread yet
    assert np.all(Z[:, 3] == 0)  # constant voxel


def test_no_look_ahead():
    Y = scanner_run()
    changed = Y.copy()
    changed[30:] = np.random.default_rng(9).uniform(-1e4, 1e4, changed[30:].shape)
    a, b = RunningZScore(Y.shape[1]), RunningZScore(Y.shape[1])
    za = np.stack([a.update(y) for y in Y])
    zb = np.stack([b.update(y) for y in changed])
    np.testing.assert_array_equal(za[:30], zb[:30])
    assert not np.allclose(za[30:], zb[30:])


def test_reset_starts_a_new_run():
    Y = scanner_run()
    rz = RunningZScore(Y.shape[1])
    first = [rz.update(y) for y in Y[:10]]
    rz.update(Y[20] + 100)
    rz.reset()
    assert rz.count == 0
    again = [rz.update(y) for y in Y[:10]]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_zscore_run():
    Y = scanner_run()
    Z = zscore_run(Y)
    assert Z.dtype == np.float32 and Z.shape == Y.shape
    live = np.ones(Y.shape[1], bool)
    live[3] = False
    np.testing.assert_allclose(Z[:, live].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(Z[:, live].std(0), 1, atol=1e-5)
    assert np.all(Z[:, 3] == 0)


@pytest.mark.parametrize("order", ["C", "F"])
def test_mask_volume_uses_c_order(order):
    rng = np.random.default_rng(1)
    mask = rng.random((6, 7, 5)) > 0.6
    volume = np.asarray(rng.standard_normal((6, 7, 5)), order=order)
    idx = mask_indices(mask)
    y = mask_volume(volume, idx)
    assert y.dtype == np.float32 and y.shape == (mask.sum(),)
    np.testing.assert_array_equal(y, volume[mask].astype(np.float32))
    np.testing.assert_array_equal(idx, np.flatnonzero(mask))


def test_volume_checks():
    mask = np.zeros((4, 5, 6), bool)
    check_volume(np.zeros((4, 5, 6), np.int16), mask.shape)
    with pytest.raises(ConfigError, match=r"'volume' has shape \(4, 5, 7\).*\(4, 5, 6\)"):
        check_volume(np.zeros((4, 5, 7)), mask.shape)
    with pytest.raises(ConfigError, match="'volume' must hold real numbers"):
        check_volume(np.zeros((4, 5, 6), complex), mask.shape)
    with pytest.raises(ConfigError, match="'mask_flat_indices'"):
        mask_volume(np.zeros((2, 2, 2)), np.array([0, 8]))
    with pytest.raises(ConfigError, match="'volume' must be a 3-D"):
        mask_volume(np.zeros((2, 2)), np.array([0]))
    with pytest.raises(ConfigError, match="'mask'"):
        mask_indices(np.zeros((3, 3)))


def test_bad_options_name_the_argument():
    with pytest.raises(ConfigError, match="'n_voxels'"):
        RunningZScore(0)
    with pytest.raises(ConfigError, match="'warmup'"):
        RunningZScore(10, warmup=1)
    rz = RunningZScore(10)
    with pytest.raises(ConfigError, match=r"'y' must have shape \(10,\)"):
        rz.update(np.zeros(11))
    with pytest.raises(ConfigError, match="'Y'"):
        zscore_run(np.zeros(5))
