"""MindEye presets, network shapes, input normalization and parameter counts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mindeye_models.info import format_counts, param_counts
from mindeye_models.model import MindEye, count_parameters
from mindeye_models.presets import PRESETS, MindEyeConfig, get_preset
from rt_base.errors import ConfigError


def tiny_model(n_voxels: int = 40, seed: int = 0) -> MindEye:
    torch.manual_seed(seed)
    return MindEye(get_preset("tiny", n_voxels=n_voxels)).eval()


def test_forward_shapes():
    model = tiny_model()
    backbone, projected = model(torch.randn(3, 40))
    assert backbone.shape == (3, 17, 128)
    assert projected.shape == (3, 17, 128)
    assert backbone.dtype == projected.dtype == torch.float32
    assert torch.isfinite(projected).all()


def test_forward_rejects_wrong_voxel_count():
    with pytest.raises(ConfigError, match="'voxels'.*40"):
        tiny_model()(torch.randn(2, 41))


def test_paper_preset_matches_mindeye1():
    cfg = get_preset("mindeye1-subj01")
    assert (cfg.n_voxels, cfg.hidden, cfg.n_blocks) == (15724, 4096, 4)
    assert (cfg.n_tokens, cfg.clip_dim, cfg.proj_hidden) == (257, 768, 2048)
    assert (cfg.dropout_in, cfg.dropout_block, cfg.embedder) == (0.5, 0.15, "ViT-L-14")


def test_paper_parameter_count_is_940m_without_allocating():
    counts = param_counts("mindeye1-subj01")
    h, v, out = 4096, 15724, 257 * 768
    lin0 = v * h + h + 2 * h
    blocks = 4 * (h * h + h + 2 * h)
    lin1 = h * out + out
    assert counts["backbone.lin0"] == lin0
    assert counts["backbone.blocks"] == blocks
    assert counts["backbone.lin1"] == lin1
    assert counts["backbone"] == lin0 + blocks + lin1
    assert abs(counts["backbone"] - 940e6) / 940e6 < 0.01
    proj = 2 * 768 + (768 * 2048 + 2048) + 2 * 2048 + (2048 * 2048 + 2048)
    proj += 2 * 2048 + (2048 * 768 + 768)
    assert counts["projector"] == proj
    assert counts["total"] == counts["backbone"] + counts["projector"]
    assert "940,225,280" in format_counts(counts)


def test_meta_device_model_has_no_storage():
    with torch.device("meta"):
        model = MindEye(get_preset("mindeye1-subj01"))
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) == param_counts("mindeye1-subj01")["total"]


def test_small_presets_are_small():
    assert param_counts("demo")["total"] < 25e6  # 20.6 M: trains in minutes on 2 cores
    assert param_counts("tiny", n_voxels=100)["total"] < 1e6
    assert get_preset("tiny", n_voxels=123).n_voxels == 123
    assert set(PRESETS) >= {"mindeye1-subj01", "demo", "tiny"}


def test_bad_preset_and_config_values_name_the_argument():
    with pytest.raises(ConfigError, match="'preset'.*'nope'"):
        get_preset("nope")
    with pytest.raises(ConfigError, match="'n_voxels'"):
        get_preset("tiny", n_voxels=0)
    base = get_preset("tiny", n_voxels=10)
    with pytest.raises(ConfigError, match="'hidden'"):
        replace(base, hidden=0)
    with pytest.raises(ConfigError, match="'dropout_in'"):
        replace(base, dropout_in=1.5)
    with pytest.raises(ConfigError, match="'embedder'"):
        replace(base, embedder="ViT-X")
    with pytest.raises(ConfigError, match="'n_tokens'"):
        replace(base, n_tokens=5)


def test_config_dict_round_trip_rejects_unknown_keys():
    cfg = get_preset("demo", n_voxels=77)
    assert MindEyeConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown keys.*'hiden'"):
        MindEyeConfig.from_dict({**cfg.to_dict(), "hiden": 3})


def test_input_normalization_is_applied_inside_forward():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 40)) * rng.uniform(1, 5, 40) + 1000).astype(np.float32)
    x[:, 3] = 7.0  # constant voxel: centred, not divided by zero
    model = tiny_model()
    model.fit_input_normalization(x)
    np.testing.assert_allclose(model.input_mean.numpy(), x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(model.input_std[5].item(), x[:, 5].std(ddof=1), rtol=1e-4)
    assert model.input_std[3].item() == 1.0
    ref = tiny_model()  # same weights, identity normalization
    z = (x - model.input_mean.numpy()) / model.input_std.numpy()
    with torch.no_grad():
        a = model(torch.from_numpy(x))[1]
        b = ref(torch.from_numpy(z.astype(np.float32)))[1]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert "input_mean" in model.state_dict() and "input_std" in model.state_dict()
