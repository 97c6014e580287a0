"""Training recipe and retrieval evaluation (with and without a joint prior)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mindeye_models.bank import ImageBank
from mindeye_models.inference import evaluate_retrieval
from mindeye_models.model import MindEye
from mindeye_models.presets import get_preset
from mindeye_models.train import TrainConfig, one_cycle, train_mindeye
from rt_base.errors import ConfigError

V, T, D = 48, 17, 128


def linear_task(n_train=400, n_test=100, noise=0.5, seed=0):
    """Targets are a fixed linear map of the voxels plus noise; voxels carry an offset."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((V, T * D)).astype(np.float32) / V**0.5
    x = rng.standard_normal((n_train + n_test, V)).astype(np.float32)
    y = x @ a + noise * rng.standard_normal((len(x), T * D)).astype(np.float32)
    x = 3 * x + 50  # raw "scanner" scale: the model's input normalization must cope
    y = y.reshape(-1, T, D)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def tiny(seed=0) -> MindEye:
    torch.manual_seed(seed)
    return MindEye(get_preset("tiny", n_voxels=V))


QUICK = TrainConfig(epochs=12, batch_size=32, max_lr=1e-3, seed=1)


def test_tiny_model_learns_a_linear_map_far_above_chance():
    (xtr, ytr), (xte, yte) = linear_task()
    model = tiny()
    history = train_mindeye(model, xtr, ytr, QUICK, progress=False, val=(xte, yte))
    ids = np.arange(1000, 1000 + len(xte))
    res = evaluate_retrieval(model, xte, ids, ImageBank(ids, yte))
    assert res["ways"] == 100 and res["n"] == 100
    assert res["top1"] > 0.3  # chance is 0.01
    assert res["top5"] >= res["top1"]
    assert history["val_top1"][-1] > 0.3
    assert history["loss"][-1] < history["loss"][0]
    assert not model.training


def test_recipe_phases_schedule_and_normalization():
    (xtr, ytr), _ = linear_task(n_train=96, n_test=0)
    cfg = TrainConfig(epochs=6, batch_size=32, max_lr=1e-3, mixup_pct=0.33, seed=0)
    model = tiny()
    h = train_mindeye(model, xtr, ytr, cfg, progress=False)
    assert h["phase"] == ["bimixco"] * 1 + ["softclip"] * 5  # int(0.33 * 6) = 1
    assert h["temperature"][0] == cfg.mixco_temp
    assert h["temperature"][1] == pytest.approx(cfg.softclip_temp_start)
    assert h["temperature"][-1] == pytest.approx(cfg.softclip_temp_end)
    assert max(h["lr"]) <= cfg.max_lr and h["lr"][-1] < cfg.max_lr / 100
    assert len(h["loss"]) == len(h["seconds"]) == 6 and h["n_train"] == 96
    np.testing.assert_allclose(model.input_mean.numpy(), xtr.mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.input_std.numpy(), xtr.std(0, ddof=1), rtol=1e-4)


def test_training_is_deterministic_under_a_seed():
    (xtr, ytr), _ = linear_task(n_train=64, n_test=0)
    cfg = replace(QUICK, epochs=3, backbone_mse=0.1)
    runs = []
    for _ in range(2):
        model = tiny()
        runs.append((train_mindeye(model, xtr, ytr, cfg, progress=False), model.state_dict()))
    assert runs[0][0]["loss"] == runs[1][0]["loss"]
    for k, v in runs[0][1].items():
        assert torch.equal(v, runs[1][1][k]), k
    other = train_mindeye(tiny(), xtr, ytr, replace(cfg, seed=2), progress=False)
    assert other["loss"] != runs[0][0]["loss"]


def test_one_cycle_shape():
    assert one_cycle(0, 100, 10) == pytest.approx(1 / 25)
    assert one_cycle(10, 100, 10) == pytest.approx(1.0)
    assert one_cycle(99, 100, 10) == pytest.approx(1 / 25000)
    values = [one_cycle(s, 100, 10) for s in range(100)]
    assert max(values) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1}, "batch_size"),
        ({"max_lr": -3e-4}, "max_lr"),
        ({"weight_decay": -1}, "weight_decay"),
        ({"mixup_pct": 1.5}, "mixup_pct"),
        ({"mixco_temp": 0}, "mixco_temp"),
        ({"softclip_temp_end": float("nan")}, "softclip_temp_end"),
        ({"seed": 1.5}, "seed"),
        ({"device": "warp-drive"}, "device"),
    ],
)
def test_bad_train_options_name_the_argument(kwargs, name):
    with pytest.raises(ConfigError, match=f"'{name}'"):
        TrainConfig(**kwargs)


def test_bad_training_data_is_a_config_error():
    (xtr, ytr), _ = linear_task(n_train=8, n_test=0)
    with pytest.raises(ConfigError, match="'training voxels'"):
        train_mindeye(tiny(), xtr[:, :-1], ytr, QUICK, progress=False)
    with pytest.raises(ConfigError, match="'training targets'"):
        train_mindeye(tiny(), xtr, ytr[:, :5], QUICK, progress=False)
    with pytest.raises(ConfigError, match="'image_ids'"):
        evaluate_retrieval(tiny(), xtr, np.arange(3), ImageBank(np.arange(8), ytr))


def test_joint_prior_training_trains_the_prior_and_the_backbone_through_it():
    """MindEye's joint recipe: the prior's loss (x prior_mult) is added to the contrastive one;
    the prior learns to denoise the targets and its gradient reaches the backbone."""
    from mindeye_models.prior import DiffusionPrior, get_prior_preset

    (xtr, ytr), (xte, yte) = linear_task(n_train=192, n_test=64)
    cfg = TrainConfig(epochs=6, batch_size=32, max_lr=1e-3, seed=2)
    torch.manual_seed(0)
    prior = DiffusionPrior(get_prior_preset("tiny"))
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    with_prior = train_mindeye(tiny(), xtr, ytr, cfg, progress=False, prior=prior)
    alone = train_mindeye(tiny(), xtr, ytr, cfg, progress=False)
    assert not prior.training
    assert float(prior.data_scale) == pytest.approx(1 / float(np.std(ytr)), rel=1e-3)
    changed = [k for k, v in prior.state_dict().items() if not torch.equal(v, before[k])]
    assert "net.out.weight" in changed and "net.pos_x" in changed
    # the loss carries the prior term (x30), so it is larger than the contrastive loss alone
    assert with_prior["loss"][0] > alone["loss"][0] + 1.0
    # the prior trained jointly denoises held-out targets given the backbone's tokens
    model = tiny()
    torch.manual_seed(0)
    joint = DiffusionPrior(get_prior_preset("tiny"))
    train_mindeye(model, xtr, ytr, replace(cfg, epochs=10), progress=False, prior=joint)
    with torch.no_grad():
        cond = model(torch.from_numpy(xte))[0]
        target = torch.from_numpy(yte)
        g = torch.Generator().manual_seed(0)
        trained = float(joint.loss(cond, target, generator=g))
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        fresh = DiffusionPrior(get_prior_preset("tiny"))
        fresh.fit_scale(torch.from_numpy(ytr))
        untrained = float(fresh.loss(cond, target, generator=g))
    assert trained < 0.8 * untrained, (trained, untrained)


def test_a_prior_of_another_token_shape_is_refused():
    from mindeye_models.prior import DiffusionPrior, get_prior_preset

    (xtr, ytr), _ = linear_task(n_train=64, n_test=0)
    prior = DiffusionPrior(get_prior_preset("tiny", n_tokens=5))
    with pytest.raises(ConfigError, match="use a matching prior preset"):
        train_mindeye(tiny(), xtr, ytr, QUICK, progress=False, prior=prior)
