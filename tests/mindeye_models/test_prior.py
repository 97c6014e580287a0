"""Diffusion prior: training on a toy task, sampling, guidance, presets."""

from __future__ import annotations

import pytest
import torch

from mindeye_models.prior import (
    DiffusionPrior,
    PriorConfig,
    cosine_alphas_cumprod,
    get_prior_preset,
    prior_parameter_count,
)
from rt_base.errors import ConfigError

T, D = 17, 128


def toy_task(n=256, seed=0):
    """Targets are a fixed token pattern plus a scaled copy of the condition."""
    pattern = torch.randn(1, T, D, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(n, T, D, generator=g)
    return cond, 2.0 * pattern + 0.5 * cond


def train(prior, cond, target, steps=150, seed=0):
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    prior.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(cond), (32,), generator=g)
        loss = prior.loss(cond[idx], target[idx], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return prior.eval(), losses


def test_cosine_schedule_is_monotone_and_ends_near_zero():
    a = cosine_alphas_cumprod(100)
    assert a.shape == (100,)
    assert torch.all(a[1:] < a[:-1])
    assert 0.99 < a[0] <= 1.0 and a[-1] < 1e-3


def test_loss_decreases_and_samples_approach_targets():
    torch.manual_seed(0)
    cond, target = toy_task()
    prior = DiffusionPrior(get_prior_preset("tiny"))
    prior.fit_scale(target)
    prior, losses = train(prior, cond, target)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)
    c, y = toy_task(n=8, seed=1)
    out = prior.sample(c, steps=10, generator=torch.Generator().manual_seed(0))
    err = (out - y).pow(2).mean()
    assert err < 0.25 * y.var(), (float(err), float(y.var()))


def test_sample_shapes_determinism_and_guidance():
    torch.manual_seed(0)
    prior = DiffusionPrior(get_prior_preset("tiny")).eval()
    cond = torch.randn(3, T, D)

    def draw(**kw):
        return prior.sample(cond, generator=torch.Generator().manual_seed(7), **kw)

    a = draw(steps=5)
    assert a.shape == (3, T, D) and torch.isfinite(a).all()
    assert torch.equal(a, draw(steps=5))
    assert not torch.equal(
        a, prior.sample(cond, steps=5, generator=torch.Generator().manual_seed(8))
    )
    guided = draw(steps=5, guidance=3.0)
    assert guided.shape == a.shape and not torch.allclose(guided, a)
    # guidance 0 is the unconditional model: the condition no longer matters
    u1 = draw(steps=3, guidance=0.0)
    u2 = prior.sample(
        torch.randn(3, T, D), steps=3, guidance=0.0, generator=torch.Generator().manual_seed(7)
    )
    assert torch.allclose(u1, u2, atol=1e-5)
    assert not torch.allclose(draw(steps=5, eta=0.0), a)  # ancestral noise is used
    assert draw(steps=1).shape == (3, T, D)
    assert draw(steps=100, eta=0.0).shape == (3, T, D)


def test_bad_inputs_raise_config_error():
    prior = DiffusionPrior(get_prior_preset("tiny"))
    with pytest.raises(ConfigError, match="cond_tokens"):
        prior.sample(torch.randn(1, 257, 768), steps=2)
    with pytest.raises(ConfigError, match="'steps'"):
        prior.sample(torch.randn(1, T, D), steps=101)
    with pytest.raises(ConfigError, match="multiple of 'heads'"):
        PriorConfig(dim=100, heads=12)
    with pytest.raises(ConfigError, match="prior preset"):
        get_prior_preset("huge")
    with pytest.raises(ConfigError, match="unknown"):
        get_prior_preset("tiny", depth_=3)
    assert PriorConfig.from_dict(get_prior_preset("small").to_dict()) == get_prior_preset("small")


def test_paper_preset_sizes_and_parameter_count():
    cfg = get_prior_preset("paper")
    assert cfg.token_shape == (257, 768)
    assert (cfg.depth, cfg.heads, cfg.dim // cfg.heads, cfg.timesteps) == (6, 12, 64, 100)
    n = prior_parameter_count("paper")
    assert 40e6 < n < 55e6, n  # about 46 M, counted without allocating
    assert prior_parameter_count("tiny") < prior_parameter_count("small") < n
