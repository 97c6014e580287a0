"""MixCo mixup, BiMixCo and SoftCLIP losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindeye_models.losses import (
    cosine_anneal,
    flat_normalize,
    mixco,
    mixco_nce,
    soft_clip_loss,
)
from rt_base.errors import ConfigError


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(16, 17, 8, generator=g)
    preds = targets + 0.3 * torch.randn(16, 17, 8, generator=g)
    shuffled = preds[torch.randperm(16, generator=g)]
    return preds, targets, shuffled


def test_flat_normalize_gives_unit_rows():
    x = flat_normalize(torch.randn(4, 3, 5))
    assert x.shape == (4, 15)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(4))


def test_losses_are_lower_for_aligned_than_shuffled_pairs(pair):
    preds, targets, shuffled = pair
    for temp in (0.006, 0.1):
        assert mixco_nce(preds, targets, temperature=temp) < mixco_nce(
            shuffled, targets, temperature=temp
        )
        assert soft_clip_loss(preds, targets, temperature=temp) < soft_clip_loss(
            shuffled, targets, temperature=temp
        )


def test_bimixco_prefers_predictions_that_follow_the_mix(pair):
    _, targets, _ = pair
    rng = np.random.default_rng(1)
    perm = torch.from_numpy(rng.permutation(16))
    w = torch.from_numpy(rng.uniform(0.3, 0.7, 16)).float()
    mixed_targets = w[:, None, None] * targets + (1 - w[:, None, None]) * targets[perm]
    good = mixco_nce(mixed_targets, targets, temperature=0.05, perm=perm, weights=w)
    bad = mixco_nce(targets, targets, temperature=0.05, perm=perm, weights=w)
    worse = mixco_nce(mixed_targets.flip(0), targets, temperature=0.05, perm=perm, weights=w)
    assert good < bad < worse


def test_mixco_nce_soft_targets_reduce_to_clip_without_mixing(pair):
    preds, targets, _ = pair
    plain = mixco_nce(preds, targets, temperature=0.1)
    ones = torch.ones(16)
    shuffle = torch.randperm(16)
    torch.testing.assert_close(
        mixco_nce(preds, targets, temperature=0.1, perm=shuffle, weights=ones), plain
    )
    # Mixing a sample with itself is no mix at all, whatever the weight.
    w = torch.rand(16)
    torch.testing.assert_close(
        mixco_nce(preds, targets, temperature=0.1, perm=torch.arange(16), weights=w), plain
    )
    one_way = mixco_nce(preds, targets, temperature=0.1, bidirectional=False)
    assert one_way.ndim == 0 and torch.isfinite(one_way)


def test_soft_clip_equals_clip_for_orthogonal_targets():
    targets = torch.eye(8).reshape(8, 2, 4)
    preds = targets + 0.1 * torch.randn(8, 2, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        soft_clip_loss(preds, targets, temperature=0.05),
        mixco_nce(preds, targets, temperature=0.05),
    )


def test_mixco_mixes_a_fraction_with_partners():
    x = torch.randn(400, 6)
    before = x.clone()
    mixed, perm, w = mixco(x, beta=0.15, select_frac=0.5, rng=np.random.default_rng(0))
    assert torch.equal(x, before)  # input untouched
    assert mixed.shape == x.shape and perm.shape == w.shape == (400,)
    torch.testing.assert_close(mixed, w[:, None] * x + (1 - w[:, None]) * x[perm])
    assert ((w >= 0) & (w <= 1)).all()
    frac = (w < 1).float().mean().item()
    assert 0.4 < frac < 0.6
    # Beta(0.15, 0.15) is U-shaped: most weights near 0 or 1.
    mixed_w = w[w < 1]
    assert ((mixed_w < 0.1) | (mixed_w > 0.9)).float().mean() > 0.5
    again = mixco(x, rng=np.random.default_rng(0))
    assert torch.equal(again[0], mixed) and torch.equal(again[1], perm)
    untouched, _, w0 = mixco(x, select_frac=0.0, rng=np.random.default_rng(0))
    assert torch.equal(untouched, x) and (w0 == 1).all()


def test_mixco_rejects_bad_options():
    with pytest.raises(ConfigError, match="'beta'"):
        mixco(torch.randn(4, 2), beta=0)
    with pytest.raises(ConfigError, match="'select_frac'"):
        mixco(torch.randn(4, 2), select_frac=1.5)


def test_cosine_anneal_endpoints():
    temps = cosine_anneal(0.004, 0.0075, 5)
    assert len(temps) == 5
    assert temps[0] == pytest.approx(0.004) and temps[-1] == pytest.approx(0.0075)
    assert all(a <= b for a, b in zip(temps, temps[1:], strict=False))
    assert cosine_anneal(0.004, 0.0075, 1) == [0.0075]
    assert cosine_anneal(0.004, 0.0075, 0) == []
