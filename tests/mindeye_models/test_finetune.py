"""Fine-tuning on a session's trials: held-out split, the swap rule, what is trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindeye_models.bank import ImageBank
from mindeye_models.finetune import finetune_step, held_out_split, is_better, validate
from mindeye_models.finetune_config import FinetuneConfig
from mindeye_models.model import MindEye
from mindeye_models.presets import get_preset
from rt_base.errors import ConfigError

N_VOXELS, N_IMAGES = 40, 8


def _problem(n_trials: int = 64, seed: int = 0):
    """A learnable session: each trial's response is a fixed linear code of its image plus a
    little noise; the targets are random tokens."""
    rng = np.random.default_rng(seed)
    cfg = get_preset("tiny", n_voxels=N_VOXELS)
    tokens = rng.normal(size=(N_IMAGES, cfg.n_tokens, cfg.clip_dim)).astype(np.float32)
    bank = ImageBank(np.arange(100, 100 + N_IMAGES), tokens)
    codes = rng.normal(size=(N_IMAGES, N_VOXELS)).astype(np.float32)
    image_rows = rng.integers(0, N_IMAGES, n_trials)
    voxels = codes[image_rows] + 0.1 * rng.normal(size=(n_trials, N_VOXELS)).astype(np.float32)
    torch.manual_seed(seed)
    return MindEye(cfg).eval(), voxels, bank.ids[image_rows], bank


def test_the_last_trials_are_held_out():
    train, val = held_out_split(10, 0.2)
    assert train.tolist() == list(range(8)) and val.tolist() == [8, 9]
    train, val = held_out_split(3, 0.2)
    assert len(val) == 1 and len(train) == 2


def test_holding_out_by_image_keeps_every_showing_of_the_held_out_images_out():
    ids = np.array([5, 6, 7, 5, 8, 6, 9, 7, 6, 8])  # the last 2 trials show images 6 and 8
    train, val = held_out_split(10, 0.2, ids)
    assert val.tolist() == [1, 4, 5, 8, 9] and train.tolist() == [0, 2, 3, 6, 7]
    assert not set(ids[train]) & set(ids[val])
    model, voxels, image_ids, bank = _problem()
    cfg = FinetuneConfig(epochs=2, holdout="images")
    result = finetune_step(model, voxels, image_ids, bank, cfg)
    held = set(image_ids[-13:].tolist())  # the images of the last 20 % of the 64 trials
    assert result.n_val == int(np.isin(image_ids, sorted(held)).sum()) > 13
    assert result.n_train + result.n_val == len(voxels)
    with pytest.raises(ConfigError, match="holdout"):
        FinetuneConfig(holdout="random")


def test_the_swap_rule_needs_one_measure_better_and_neither_worse():
    assert is_better({"top1": 0.5, "mean_rank": 1.5}, {"top1": 0.25, "mean_rank": 1.5})
    assert is_better({"top1": 0.5, "mean_rank": 1.2}, {"top1": 0.25, "mean_rank": 1.5})
    # a higher top-1 with worse ranks is not better (a one-trial gain on a small held-out set)
    assert not is_better({"top1": 0.5, "mean_rank": 3.0}, {"top1": 0.25, "mean_rank": 1.5})
    assert is_better({"top1": 0.5, "mean_rank": 1.4}, {"top1": 0.5, "mean_rank": 1.5})
    assert not is_better({"top1": 0.5, "mean_rank": 1.5}, {"top1": 0.5, "mean_rank": 1.5})
    assert not is_better({"top1": 0.25, "mean_rank": 1.0}, {"top1": 0.5, "mean_rank": 3.0})


def test_a_step_on_the_input_layer_improves_held_out_retrieval():
    model, voxels, ids, bank = _problem()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lin0" not in k}
    cfg = FinetuneConfig(params="lin0", epochs=60, lr=3e-3, batch_size=16, holdout="trials")
    result = finetune_step(model, voxels, ids, bank, cfg)
    assert result.n_train + result.n_val == len(voxels) and result.n_val == 13
    assert result.accepted, result
    assert result.after["top1"] > result.before["top1"]
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # only lin0 was trained
    assert result.epochs_run == 60 and len(result.losses) == 60
    # what the step reports is what the returned model does
    assert validate(model, voxels[-13:], ids[-13:], bank) == result.after


def test_a_step_that_validates_worse_is_not_accepted():
    model, voxels, ids, bank = _problem()
    # first make a good model, then ruin it with an absurd learning rate
    # (held out by trials: the problem has 8 images, so by image the last trials' images would
    # hold out nearly every trial)
    good = FinetuneConfig(params="all", epochs=60, lr=3e-3, holdout="trials")
    finetune_step(model, voxels, ids, bank, good)
    ruin = FinetuneConfig(params="lin0", lr=50.0, holdout="trials")
    result = finetune_step(model, voxels, ids, bank, ruin)
    assert not result.accepted
    assert "did not improve" in result.reason or "not finite" in result.reason


def test_too_few_trials_is_a_skipped_step():
    model, voxels, ids, bank = _problem(n_trials=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune_step(model, voxels, ids, bank, FinetuneConfig())
    assert not result.accepted and "too few trials" in result.reason
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="params"):
        FinetuneConfig(params="lin1")
    with pytest.raises(ConfigError, match="unknown fine-tune options"):
        FinetuneConfig.from_dict({"epochs": 3, "speed": 1})


def test_a_step_ends_within_its_budget():
    import time

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # its first call imports dynamo
    model, voxels, ids, bank = _problem()
    cfg = FinetuneConfig(epochs=100_000, budget_s=1.5, holdout="trials")
    start = time.perf_counter()
    result = finetune_step(model, voxels, ids, bank, cfg)
    took = time.perf_counter() - start
    assert 2 <= result.epochs_run < 100_000 and len(result.losses) == result.epochs_run
    assert took <= 1.5 + 0.3, took  # the validations included; an epoch here takes ms


def test_validation_reports_the_mean_reciprocal_rank():
    model, voxels, ids, bank = _problem()
    v = validate(model, voxels[:10], ids[:10], bank)
    assert 1 / v["mean_rank"] <= v["mrr"] <= 1 and v["mrr"] >= v["top1"]


def test_the_mrr_verdict_needs_a_higher_mrr_and_top1_not_lower():
    before = {"top1": 0.25, "mean_rank": 2.0, "mrr": 0.5}
    assert is_better({"top1": 0.25, "mean_rank": 3.0, "mrr": 0.55}, before, "mrr")
    assert not is_better({"top1": 0.2, "mean_rank": 1.5, "mrr": 0.6}, before, "mrr")
    assert not is_better({"top1": 0.3, "mean_rank": 1.5, "mrr": 0.5}, before, "mrr")
    with pytest.raises(ConfigError, match="verdict"):
        FinetuneConfig(verdict="loss")


def test_select_alpha_keeps_the_best_passing_point_and_the_smaller_on_a_tie():
    from mindeye_models.finetune import select_alpha

    before = {"top1": 0.5, "mean_rank": 2.0, "mrr": 0.6}
    grid = [
        {"alpha": 0.25, "top1": 0.5, "mean_rank": 1.8, "mrr": 0.65},
        {"alpha": 0.5, "top1": 0.5, "mean_rank": 1.7, "mrr": 0.7},
        {"alpha": 0.75, "top1": 0.5, "mean_rank": 1.6, "mrr": 0.7},
        {"alpha": 1.0, "top1": 0.4, "mean_rank": 1.5, "mrr": 0.8},  # top-1 lower: fails both
    ]
    assert select_alpha(grid, before)["alpha"] == 0.5
    assert select_alpha(grid, before, "mrr")["alpha"] == 0.5
    assert select_alpha(grid[3:], before) is None and select_alpha([], before) is None


def test_alphas_are_checked_and_sorted():
    assert FinetuneConfig().alphas == (0.25, 0.5, 0.75, 1.0)  # chosen on the dev subjects
    assert FinetuneConfig(alphas=[1, 0.5, 0.5]).alphas == (0.5, 1.0)
    assert FinetuneConfig(alphas="0.25, 1").alphas == (0.25, 1.0)
    assert FinetuneConfig.from_dict({"alphas": [0.5, 1.0]}).alphas == (0.5, 1.0)
    for bad in ([], [0.0, 1.0], [1.5], "half", None):
        with pytest.raises(ConfigError, match="alphas"):
            FinetuneConfig(alphas=bad)


def test_a_step_with_an_alpha_grid_keeps_a_point_between_start_and_trained_weights():
    model, voxels, ids, bank = _problem()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    base = dict(params="lin0", epochs=60, lr=3e-3, batch_size=16, holdout="trials")
    trained = MindEye(model.config).eval()
    trained.load_state_dict(start)
    only_one = finetune_step(trained, voxels, ids, bank, FinetuneConfig(**base, alphas=(1,)))
    assert only_one.alpha == 1.0 and [r["alpha"] for r in only_one.grid] == [1.0]
    result = finetune_step(model, voxels, ids, bank, FinetuneConfig(**base, alphas=(0.25, 0.5)))
    assert result.accepted and result.alpha in (0.25, 0.5), result
    assert [r["alpha"] for r in result.grid] == [0.25, 0.5]
    # the model holds start + alpha * (trained - start) in lin0, the rest untouched
    now, end = model.state_dict(), trained.state_dict()
    for key, w0 in start.items():
        expected = torch.lerp(w0, end[key], result.alpha) if "lin0" in key else w0
        assert torch.allclose(now[key], expected, atol=1e-6), key
    assert validate(model, voxels[-13:], ids[-13:], bank) == result.after
    assert is_better(result.after, result.before)


def test_the_clock_is_read_every_batch_not_only_every_epoch():
    """One epoch of 2,475 batches takes longer than the budget: the step stops inside it."""
    import time

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # its first call imports dynamo
    model, voxels, ids, bank = _problem(n_trials=5000)
    cfg = FinetuneConfig(epochs=3, batch_size=2, budget_s=1.0, holdout="trials", val_fraction=0.01)
    start = time.perf_counter()
    result = finetune_step(model, voxels, ids, bank, cfg)
    took = time.perf_counter() - start
    assert result.stopped_early and result.epochs_run == 1, result.epochs_run
    assert 1 <= result.batches_run < 2475 and len(result.losses) == 1
    assert len(result.grid) >= 1  # validated after training (fewer alphas when time ran out)
    assert took <= 1.0 + 0.4, took


def test_a_step_without_time_to_train_keeps_the_current_model():
    model, voxels, ids, bank = _problem()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune_step(model, voxels, ids, bank, FinetuneConfig(budget_s=1e-6))
    assert not result.accepted and result.batches_run == 0 and "no time" in result.reason
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
