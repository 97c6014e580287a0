"""Our safetensors checkpoints and the official MindEye1 state dicts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mindeye_models.checkpoint import (
    load_checkpoint,
    load_official_mindeye1,
    read_sidecar,
    save_checkpoint,
)
from mindeye_models.model import MindEye
from mindeye_models.presets import get_preset
from rt_base.errors import WeightsError


class NotATensor:
    """Pickled objects must be refused (torch.load with weights_only=True)."""


def trained_like_tiny(n_voxels: int = 30) -> MindEye:
    torch.manual_seed(0)
    model = MindEye(get_preset("tiny", n_voxels=n_voxels))
    model.fit_input_normalization(np.random.default_rng(0).normal(5, 2, (20, n_voxels)))
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    model = trained_like_tiny()
    extra = {"dataset": "subj01-sim", "train": {"epochs": 3}}
    path = save_checkpoint(model, tmp_path / "m.safetensors", extra)
    assert path.is_file() and (tmp_path / "m.json").is_file()
    loaded, got = load_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    assert got["dataset"] == "subj01-sim" and got["train"] == {"epochs": 3}
    assert got["embedder"] == "tiny-random" and got["n_voxels"] == 30
    x = torch.randn(4, 30)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert read_sidecar(tmp_path / "m")["config"]["hidden"] == 64  # suffix-less path works


def test_missing_checkpoint_names_the_path_and_the_remedy(tmp_path):
    with pytest.raises(WeightsError, match=r"nothere.*mindeye-rt train"):
        load_checkpoint(tmp_path / "nothere.safetensors")


def test_shape_mismatch_is_a_weights_error(tmp_path):
    path = save_checkpoint(trained_like_tiny(), tmp_path / "m.safetensors")
    sidecar = tmp_path / "m.json"
    meta = json.loads(sidecar.read_text())
    meta["config"]["hidden"] = 32
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="shape mismatches"):
        load_checkpoint(path)


def test_foreign_sidecar_is_a_weights_error(tmp_path):
    path = save_checkpoint(trained_like_tiny(), tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text('{"hello": 1}')
    with pytest.raises(WeightsError, match="not a mindeye-rt-checkpoint"):
        load_checkpoint(path)


# --- official MindEye1 format: a BrainNetwork state dict made here by hand ---------------


def official_state(n_voxels=30, h=16, n_blocks=2, tokens=17, clip=128, proj=24, seed=0):
    g = torch.Generator().manual_seed(seed)

    def lin(prefix, n_in, n_out):
        return {
            f"{prefix}.weight": torch.randn(n_out, n_in, generator=g) / n_in**0.5,
            f"{prefix}.bias": 0.1 * torch.randn(n_out, generator=g),
        }

    def ln(prefix, n):
        return {
            f"{prefix}.weight": 1 + 0.1 * torch.randn(n, generator=g),
            f"{prefix}.bias": 0.1 * torch.randn(n, generator=g),
        }

    sd = {**lin("lin0.0", n_voxels, h), **ln("lin0.1", h)}
    for i in range(n_blocks):
        sd.update(lin(f"mlp.{i}.0", h, h))
        sd.update(ln(f"mlp.{i}.1", h))
    sd.update(lin("lin1", h, tokens * clip))
    sd.update(ln("projector.0", clip))
    sd.update(lin("projector.2", clip, proj))
    sd.update(ln("projector.3", proj))
    sd.update(lin("projector.5", proj, proj))
    sd.update(ln("projector.6", proj))
    sd.update(lin("projector.8", proj, clip))
    return sd


def reference_forward(sd, x, n_blocks=2, clip=128):
    """MindEye1's BrainNetwork forward written out with functional ops."""

    def lnorm(p, y):
        return F.layer_norm(y, y.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"])

    def lin(p, y):
        return F.linear(y, sd[f"{p}.weight"], sd[f"{p}.bias"])

    y = F.gelu(lnorm("lin0.1", lin("lin0.0", x)))
    for i in range(n_blocks):
        y = F.gelu(lnorm(f"mlp.{i}.1", lin(f"mlp.{i}.0", y))) + y
    y = lin("lin1", y).reshape(len(x), -1, clip)
    p = lin("projector.2", F.gelu(lnorm("projector.0", y)))
    p = lin("projector.5", F.gelu(lnorm("projector.3", p)))
    p = lin("projector.8", F.gelu(lnorm("projector.6", p)))
    return y, p


def test_official_state_dict_loads_and_matches_the_reference(tmp_path):
    sd = official_state()
    torch.save({"epoch": 3, "model_state_dict": sd}, tmp_path / "v2c.pth")
    model = load_official_mindeye1(tmp_path / "v2c.pth")
    cfg = model.config
    assert (cfg.n_voxels, cfg.hidden, cfg.n_blocks, cfg.proj_hidden) == (30, 16, 2, 24)
    assert cfg.embedder == "tiny-random" and cfg.token_shape == (17, 128)
    x = torch.randn(5, 30)
    with torch.no_grad():
        got = model(x)
        ref = reference_forward(sd, x)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_official_prior_checkpoint_uses_only_voxel2clip(tmp_path):
    sd = {f"voxel2clip.{k}": v for k, v in official_state().items()}
    sd["net.some_prior_weight"] = torch.zeros(3)
    model = load_official_mindeye1({"model_state_dict": sd})
    x = torch.randn(2, 30)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[1], reference_forward(official_state(), x)[1])


def test_official_loader_errors(tmp_path):
    with pytest.raises(WeightsError, match="no official MindEye checkpoint"):
        load_official_mindeye1(tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="no MindEye1 voxel2clip tensors"):
        load_official_mindeye1({"foo.weight": torch.zeros(2)})
    bn = official_state()
    bn["lin0.1.running_mean"] = torch.zeros(16)
    with pytest.raises(WeightsError, match="BatchNorm"):
        load_official_mindeye1(bn)
    odd = official_state(tokens=3, clip=10)
    with pytest.raises(WeightsError, match="no known embedder"):
        load_official_mindeye1(odd)
    torch.save({"model_state_dict": NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_official_mindeye1(tmp_path / "pickled.pth")
