"""The reconstruction-bundle format: parts, round trips, the checkpoint check and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mindeye_models.recon_bundle import (
    BUNDLE_VERSION,
    ReconBundle,
    check_bundle_for,
    load_bundle,
    read_bundle_sidecar,
    sidecar_path,
)
from rt_base.errors import ConfigError, WeightsError


def _voxels(n: int = 3, v: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g)


def test_bundle_round_trips_with_both_parts(tiny_recon):
    bundle = load_bundle(tiny_recon)
    assert isinstance(bundle, ReconBundle) and bundle.parts == ("lowlevel", "prior")
    assert bundle.token_shape == (17, 128) and bundle.head.config.latent_shape == (4, 8, 8)
    assert bundle.path == tiny_recon
    x = _voxels(v=bundle.head.config.n_voxels)
    a, b = bundle.blurry(x), load_bundle(tiny_recon).blurry(x)
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert check_bundle_for(tiny_recon, bundle.info["checkpoint"]) == tiny_recon
    meta = read_bundle_sidecar(tiny_recon)
    assert meta["version"] == BUNDLE_VERSION and meta["token_shape"] == [17, 128]


def test_a_bundle_holds_either_part_alone(tiny_recon, tmp_path):
    full = load_bundle(tiny_recon)
    x = _voxels(v=full.head.config.n_voxels)
    low = ReconBundle(full.token_shape, head=full.head, autoencoder=full.autoencoder, info={"a": 1})
    low.save(tmp_path / "low.safetensors")
    back = load_bundle(tmp_path / "low.safetensors")
    assert back.parts == ("lowlevel",) and back.prior is None and back.info == {"a": 1}
    assert np.array_equal(back.blurry(x), full.blurry(x))
    prior_only = ReconBundle(full.token_shape, prior=full.prior)
    prior_only.save(tmp_path / "prior.safetensors")
    back = load_bundle(tmp_path / "prior.safetensors")
    assert back.parts == ("prior",)
    for name, value in full.prior.state_dict().items():
        assert torch.equal(back.prior.state_dict()[name], value)
    with pytest.raises(WeightsError, match="prior.safetensors' holds no low-level head"):
        back.blurry(x)


def test_parts_must_be_whole_and_fit_the_token_shape(tiny_recon):
    full = load_bundle(tiny_recon)
    with pytest.raises(ConfigError, match="both 'head' and 'autoencoder'"):
        ReconBundle(full.token_shape, head=full.head)
    with pytest.raises(ConfigError, match="denoises"):
        ReconBundle((257, 768), prior=full.prior)


def test_the_checkpoint_check_names_the_missing_part(tiny_model, tiny_recon, tmp_path):
    full = load_bundle(tiny_recon)
    low = ReconBundle(full.token_shape, head=full.head, autoencoder=full.autoencoder)
    low.info = dict(full.info)
    path = low.save(tmp_path / "low.safetensors")
    assert check_bundle_for(path, tiny_model) == path  # a lowlevel session's models
    with pytest.raises(WeightsError, match="holds no diffusion prior") as err:
        check_bundle_for(path, tiny_model, parts=("lowlevel", "prior"))
    assert "low.safetensors" in str(err.value) and "leave --recon-models out" in str(err.value)


def test_bundle_errors_name_the_file(tiny_model, tiny_recon, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_bundle(tmp_path / "nothing.safetensors")
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_model.read_bytes() + b"x")  # another checkpoint's bytes
    with pytest.raises(WeightsError, match="were trained for checkpoint"):
        check_bundle_for(tiny_recon, other)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"")
    sidecar_path(foreign).write_text('{"format": "something else"}')
    with pytest.raises(WeightsError, match="not a reconstruction-bundle"):
        load_bundle(foreign)
    old = tmp_path / "old.safetensors"
    old.write_bytes(tiny_recon.read_bytes())
    meta = json.loads(sidecar_path(tiny_recon).read_text())
    sidecar_path(old).write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(WeightsError, match="bundle version 1, this version reads 2"):
        load_bundle(old)


def test_save_leaves_no_temporary_files(tiny_recon, tmp_path):
    full = load_bundle(tiny_recon)
    full.save(tmp_path / "copy.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "copy.safetensors",
        "copy.safetensors.json",
    ]
