"""Low-level reconstruction metrics (PixCorr, SSIM, 2-way identification, shuffled baseline)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from mindeye_models.metrics import (
    low_level_metrics,
    pixcorr,
    pixel_two_way,
    shuffled_baseline,
    ssim,
    two_way_identification,
)
from rt_base.errors import ConfigError


def noise_images(n, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_identical_images_score_one():
    imgs = noise_images(4, size=40)
    assert pixcorr(imgs, imgs) == pytest.approx(1.0, abs=1e-9)
    assert ssim(imgs, imgs, size=64) == pytest.approx(1.0, abs=1e-9)
    out = low_level_metrics(imgs, imgs, size=64)
    assert out["PixCorr"] == pytest.approx(1.0) and out["SSIM"] == pytest.approx(1.0)
    assert out["PixelID"] == 1.0


def test_pixcorr_is_pearson_of_flattened_resized_pixels():
    a, b = noise_images(3, seed=1), noise_images(3, seed=2)
    b[:, :16] = a[:, :16]  # half shared: a clearly positive correlation
    x = a.reshape(3, -1).astype(float)
    y = b.reshape(3, -1).astype(float)
    expected = np.mean([np.corrcoef(x[i], y[i])[0, 1] for i in range(3)])
    assert pixcorr(a, b, size=32) == pytest.approx(expected, abs=1e-9)  # no resize at 32
    assert 0.3 < expected < 0.7
    # float input in [0, 1] is the same as uint8
    assert pixcorr(a / 255.0, b, size=32) == pytest.approx(expected, abs=1e-6)
    # the default resizes to 425 first
    assert 0.3 < pixcorr(a, b) < 0.8


def test_ssim_matches_skimage_with_the_paper_settings():
    a, b = noise_images(2, seed=3), noise_images(2, seed=4)
    b[:, 8:24] = a[:, 8:24]
    want = np.mean(
        [
            structural_similarity(
                rgb2gray(a[i] / 255.0),
                rgb2gray(b[i] / 255.0),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            for i in range(2)
        ]
    )
    assert ssim(a, b, size=32) == pytest.approx(want, abs=1e-9)
    assert 0.2 < want < 0.9


def test_two_way_identification_matched_vs_shuffled():
    rng = np.random.default_rng(5)
    real = noise_images(12, seed=5)
    noisy = np.clip(real + rng.normal(0, 60, real.shape), 0, 255).astype(np.uint8)
    assert pixel_two_way(noisy, real, size=32) == 1.0
    perm = np.roll(np.arange(12), 1)
    # shuffled: chance (0.5), less the one trial against the true image that each one loses
    assert 0.3 < pixel_two_way(noisy, real[perm], size=32) < 0.55
    # hand-made case: pred 0 is closer to real 1 than to real 0 -> 1 of 2 trials lost
    r = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    p = np.array([[0.0, 1.0, 1.0, 0.1], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.1]])
    assert two_way_identification(p, r) == pytest.approx((0 + 2 + 2) / 3 / 2)


def test_shuffled_baseline_is_near_zero_for_random_images():
    imgs = noise_images(8, seed=6)
    recons = np.clip(imgs + np.random.default_rng(7).normal(0, 40, imgs.shape), 0, 255)
    recons = recons.astype(np.uint8)
    out = shuffled_baseline("PixCorr", recons, imgs, n_shuffles=5, size=32)
    assert out["matched"] > 0.8
    assert abs(out["mean"]) < 0.05 and out["std"] < 0.05
    out = shuffled_baseline(pixel_two_way, recons, imgs, n_shuffles=3, size=32)
    assert out["matched"] == 1.0 and out["mean"] < 0.8


def test_bad_inputs_raise_config_error():
    imgs = noise_images(3)
    with pytest.raises(ConfigError, match="same number"):
        pixcorr(imgs, imgs[:2])
    with pytest.raises(ConfigError, match="'recons'"):
        ssim(imgs[..., 0], imgs)
    with pytest.raises(ConfigError, match="aspect"):
        pixcorr(imgs, noise_images(3, size=32)[:, :16], size=32)
    with pytest.raises(ConfigError, match="'metric'"):
        shuffled_baseline("LPIPS", imgs, imgs)
    with pytest.raises(ConfigError, match=">= 2"):
        two_way_identification(np.zeros((1, 4)), np.zeros((1, 4)))
