"""Low-level path: tiny autoencoder training, voxel-to-latent head, local diffusers VAE loading
(the interface every autoencoder shares is checked in test_autoencoder_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindeye_models.autoencoders import (
    AutoencoderConfig,
    TinyAutoencoder,
    load_autoencoder,
    load_tiny_autoencoder,
    save_autoencoder,
    train_autoencoder,
)
from mindeye_models.lowlevel import LowLevelConfig, LowLevelHead, train_lowlevel_head
from rt_base.errors import ConfigError, WeightsError


def blob_images(n=48, size=64, seed=0):
    """Smooth images: a coloured background and one coloured Gaussian blob each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.1, 0.3)]
        w = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))[..., None]
        bg, fg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        out[i] = np.round(255 * (bg * (1 - w) + fg * w)).astype(np.uint8)
    return out


def test_autoencoder_shapes_and_config_checks():
    ae = TinyAutoencoder()
    assert ae.latent_shape == (4, 8, 8)
    z = ae.encode_images(blob_images(3, size=80))  # resized to 32 first
    assert z.shape == (3, 4, 8, 8)
    img = ae.decode_latents(z)
    assert img.shape == (3, 32, 32, 3) and img.dtype == np.uint8
    assert AutoencoderConfig(image_size=32, channels=(8, 8)).latent_shape == (4, 8, 8)
    with pytest.raises(ConfigError, match="divisible"):
        AutoencoderConfig(image_size=30)
    with pytest.raises(ConfigError, match="'images'"):
        ae.encode_images(np.zeros((2, 64, 64), np.uint8))


def test_autoencoder_learns_a_round_trip(tmp_path):
    images = blob_images()
    cfg = AutoencoderConfig(image_size=32, channels=(16, 32))  # 32 x 32 -> 4 x 8 x 8, fast
    ae, history = train_autoencoder(images, cfg, epochs=25, batch_size=16, lr=3e-3)
    assert history[-1] < 0.5 * history[0], history
    x = images.astype(np.float32) / 255
    small = ae.decode_latents(ae.encode_images(images)).astype(np.float32) / 255
    up = torch.nn.functional.interpolate(
        torch.from_numpy(small).permute(0, 3, 1, 2), size=64, mode="bilinear"
    )
    err = float(((up.permute(0, 2, 3, 1).numpy() - x) ** 2).mean())
    baseline = float(((x - x.mean(0)) ** 2).mean())  # the mean image
    assert err < 0.5 * baseline, (err, baseline)
    path = save_autoencoder(ae, tmp_path / "ae")
    back = load_tiny_autoencoder(path)
    assert back.config == cfg
    z = torch.randn(2, 4, 8, 8)
    assert np.array_equal(back.decode_latents(z), ae.decode_latents(z))
    with pytest.raises(WeightsError, match="missing.safetensors"):
        load_tiny_autoencoder(tmp_path / "missing")


def test_lowlevel_head_learns_linear_latents():
    g = torch.Generator().manual_seed(0)
    v, n = 40, 256
    a = torch.randn(v, 4 * 8 * 8, generator=g) / v**0.5
    voxels = torch.randn(n, v, generator=g)
    latents = (voxels @ a).view(n, 4, 8, 8) * 3 + 1
    voxels = voxels * 5 + 100  # scanner units: the head normalizes its input
    head = LowLevelHead(LowLevelConfig(n_voxels=v, hidden=128, dropout=0.0))
    history = train_lowlevel_head(head, voxels[:200], latents[:200], epochs=30, lr=3e-3)
    assert history[-1] < 0.3 * history[0], history
    with torch.no_grad():
        pred = head(voxels[200:])
    assert pred.shape == (56, 4, 8, 8)
    err = float(((pred - latents[200:]) ** 2).mean())
    assert err < 0.5 * float(latents[200:].var()), err
    with pytest.raises(ConfigError, match="'voxels'"):
        head(torch.zeros(2, v + 1))
    with pytest.raises(ConfigError, match="'latents'"):
        train_lowlevel_head(head, voxels[:10], latents[:9])


def test_missing_vae_directory_raises_weights_error(tmp_path):
    missing = tmp_path / "no-vae"
    with pytest.raises(WeightsError) as info:
        load_autoencoder(missing)
    assert str(missing) in str(info.value)
    assert "diffusion_pytorch_model.safetensors" in str(info.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="broken"):
        load_autoencoder(broken)


def test_local_diffusers_vae_directory_loads(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )
    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    ae = load_autoencoder(tmp_path / "vae", image_size=32)
    assert ae.latent_shape == (4, 16, 16)
    z = ae.encode_images(blob_images(2, size=32))
    assert z.shape == (2, 4, 16, 16)
    assert ae.decode_latents(z).shape == (2, 32, 32, 3)
