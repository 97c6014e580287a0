"""One API suite run over every autoencoder of the low-level path (as nibabel runs one suite over
every image class): :class:`TinyAutoencoder` and :class:`DiffusersAutoencoder` around a tiny
random diffusers ``AutoencoderKL``.

The contract the low-level head, the reconstruction bundle and the Reconstructor rely on:
``latent_shape`` and ``image_size``; ``encode_images`` takes (N, H, W, 3) uint8 images of any
size and gives (N, C, h, w) float32 latents; ``decode_latents`` gives (N, S, S, 3) uint8 images;
both are deterministic and do not depend on the batch; ``to(device)`` returns the autoencoder;
a wrong input shape is a :class:`ConfigError` naming the argument; the weights survive a save
and load, alone and inside a reconstruction bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mindeye_models.autoencoders import (
    AutoencoderConfig,
    DiffusersAutoencoder,
    TinyAutoencoder,
    load_autoencoder,
    load_tiny_autoencoder,
    save_autoencoder,
)
from mindeye_models.lowlevel import LowLevelConfig, LowLevelHead
from mindeye_models.recon_bundle import ReconBundle, load_bundle
from rt_base.errors import ConfigError

SIZE = 16


def _make_tiny() -> TinyAutoencoder:
    torch.manual_seed(0)
    return TinyAutoencoder(AutoencoderConfig(image_size=SIZE, channels=(8, 8))).eval()


def _round_trip_tiny(ae: TinyAutoencoder, folder: Path) -> TinyAutoencoder:
    return load_tiny_autoencoder(save_autoencoder(ae, folder / "ae"))


def _make_diffusers(folder: Path | None = None) -> DiffusersAutoencoder:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=SIZE,
    )
    return DiffusersAutoencoder(vae, image_size=SIZE, path=folder)


def _round_trip_diffusers(ae: DiffusersAutoencoder, folder: Path) -> DiffusersAutoencoder:
    ae.vae.save_pretrained(folder / "vae", safe_serialization=True)
    return load_autoencoder(folder / "vae", image_size=ae.image_size)


@dataclass(frozen=True)
class Kind:
    """How to make an autoencoder of one class and save and load it again."""

    name: str
    make: Any
    round_trip: Any
    latent_shape: tuple[int, int, int]


KINDS = [
    Kind("tiny", _make_tiny, _round_trip_tiny, (4, 4, 4)),
    Kind("diffusers", _make_diffusers, _round_trip_diffusers, (4, 8, 8)),
]


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request) -> Kind:
    return request.param


def images(n: int = 3, size: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_sizes_are_declared(kind):
    ae = kind.make()
    assert ae.latent_shape == kind.latent_shape
    assert all(isinstance(s, int) for s in ae.latent_shape)
    assert ae.image_size == SIZE
    assert ae.to("cpu") is ae


@pytest.mark.parametrize("side", [SIZE, 24, 9])
def test_encode_takes_any_image_size(kind, side):
    z = kind.make().encode_images(images(2, side))
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float32
    assert tuple(z.shape) == (2, *kind.latent_shape)
    assert torch.isfinite(z).all() and not z.requires_grad


def test_decode_gives_uint8_images_of_its_size(kind):
    ae = kind.make()
    z = ae.encode_images(images(2))
    out = ae.decode_latents(z)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.shape == (2, SIZE, SIZE, 3)
    extreme = ae.decode_latents(torch.full((1, *kind.latent_shape), 50.0))  # clipped, no NaN
    assert extreme.dtype == np.uint8 and extreme.shape == (1, SIZE, SIZE, 3)


def test_outputs_are_deterministic_and_batch_independent(kind):
    ae = kind.make()
    x = images(4)
    z = ae.encode_images(x)
    assert torch.equal(z, ae.encode_images(x))
    one_by_one = torch.cat([ae.encode_images(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(one_by_one, z, atol=1e-5, rtol=1e-4)
    assert np.array_equal(ae.decode_latents(z), ae.decode_latents(z))
    parts = np.concatenate([ae.decode_latents(z[:1]), ae.decode_latents(z[1:])])
    assert np.abs(parts.astype(int) - ae.decode_latents(z).astype(int)).max() <= 1


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 16, 16), np.uint8),  # no channel axis
        np.zeros((2, 16, 16, 4), np.uint8),  # RGBA
        np.zeros((16, 16, 3), np.uint8),  # one image without the batch axis
        [[0, 1, 2]],  # not an array
    ],
)
def test_a_wrong_image_shape_is_named(kind, bad):
    with pytest.raises(ConfigError, match=r"'images' must be an \(N, H, W, 3\) uint8 array"):
        kind.make().encode_images(bad)


def test_a_wrong_latent_shape_is_named(kind):
    ae = kind.make()
    c, h, w = kind.latent_shape
    for bad in (torch.zeros(2, c + 1, h, w), torch.zeros(c, h, w), np.zeros((2, c, h, w))):
        with pytest.raises(ConfigError, match=r"'latents' must be an \(N, 4, "):
            ae.decode_latents(bad)


def test_weights_survive_a_save_and_load(kind, tmp_path):
    ae = kind.make()
    z = torch.randn(2, *kind.latent_shape, generator=torch.Generator().manual_seed(1))
    back = kind.round_trip(ae, tmp_path)
    assert type(back) is type(ae) and back.latent_shape == ae.latent_shape
    assert np.array_equal(back.decode_latents(z), ae.decode_latents(z))
    assert torch.equal(back.encode_images(images(2)), ae.encode_images(images(2)))


def test_a_bundle_stores_it_with_the_head(kind, tmp_path):
    ae = kind.make()
    if isinstance(ae, DiffusersAutoencoder):  # a bundle refers to the VAE's folder
        ae = kind.round_trip(ae, tmp_path)
    torch.manual_seed(0)
    head = LowLevelHead(LowLevelConfig(n_voxels=5, latent_shape=kind.latent_shape, hidden=8))
    voxels = torch.randn(3, 5, generator=torch.Generator().manual_seed(2))
    bundle = ReconBundle((17, 128), head=head.eval(), autoencoder=ae)
    back = load_bundle(bundle.save(tmp_path / "bundle.safetensors"))
    assert type(back.autoencoder) is type(ae) and back.parts == ("lowlevel",)
    assert np.array_equal(back.blurry(voxels), bundle.blurry(voxels))
