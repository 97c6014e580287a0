"""Image autoencoders of the low-level reconstruction: images <-> latents.

In MindEye (Scotti et al. 2023, arXiv 2305.18274) the low-level head predicts the latents of
Stable Diffusion's VAE (4 x 64 x 64 for a 512 x 512 image); decoding them gives a blurry picture
with the right layout and colours.  Two autoencoders fit here, behind one interface
(``latent_shape``, ``image_size``, ``encode_images``, ``decode_latents``):

* :class:`DiffusersAutoencoder`, a local diffusers ``AutoencoderKL`` directory (the real SD VAE),
  loaded with :func:`load_autoencoder` and never downloaded, and
* :class:`TinyAutoencoder`, a small convolutional autoencoder (32 x 32 RGB -> 4 x 8 x 8) that is
  trained offline on the stimulus images themselves (:func:`train_autoencoder`), so that the
  blurry reconstructions of the simulated subject are meaningful without any weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mindeye_models.fitting import fit_epochs
from mindeye_models.images import resize_square
from rt_base.atomic import write_with
from rt_base.checks import check_number
from rt_base.errors import ConfigError, WeightsError

_VAE_FILES = "config.json + diffusion_pytorch_model.safetensors"


def _images_to_tensor(images: np.ndarray, size: int | None, name: str = "images") -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, S, S) float in [0, 1] (area/bilinear resize to ``size``)."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
        shape = getattr(images, "shape", None)
        raise ConfigError(f"'{name}' must be an (N, H, W, 3) uint8 array, got shape {shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if size is not None:
        x = resize_square(x, size)
    return x.clamp(0, 1)


def _check_latents(latents: Any, shape: tuple[int, int, int]) -> torch.Tensor:
    """``latents`` if it is an (N, C, h, w) tensor of ``shape`` per row, else ConfigError."""
    if not isinstance(latents, torch.Tensor) or tuple(latents.shape[1:]) != shape:
        got = tuple(getattr(latents, "shape", ())) or type(latents).__name__
        raise ConfigError(
            f"'latents' must be an (N, {', '.join(map(str, shape))}) tensor of this "
            f"autoencoder's latents, got {got}"
        )
    return latents


def _tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8."""
    x = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class AutoencoderConfig:
    """Sizes of :class:`TinyAutoencoder`.

    Parameters
    ----------
    image_size : side of the (square) RGB images it encodes.
    latent_channels : channels of the latent (4, as SD's VAE).
    channels : widths of the encoder stages; each stage halves the resolution, so the latent
        side is ``image_size / 2 ** len(channels)``.
    """

    image_size: int = 32
    latent_channels: int = 4
    channels: tuple[int, ...] = (32, 64)

    def __post_init__(self) -> None:
        check_number(self.image_size, "image_size", minimum=4, integer=True)
        check_number(self.latent_channels, "latent_channels", minimum=1, integer=True)
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"'channels' must be positive widths, got {self.channels}")
        if self.image_size % 2 ** len(self.channels):
            raise ConfigError(
                f"'image_size' must be divisible by 2 ** len(channels) = "
                f"{2 ** len(self.channels)}, got {self.image_size}"
            )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of a latent."""
        side = self.image_size // 2 ** len(self.channels)
        return (self.latent_channels, side, side)


def _block(cin: int, cout: int) -> nn.Sequential:
    groups = math.gcd(8, cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU())


class TinyAutoencoder(nn.Module):
    """Convolutional autoencoder ``(N, 3, S, S) <-> (N, C, S / 2^k, S / 2^k)``.

    Encoder: per stage a stride-2 conv and a conv block; decoder mirrors it with stride-2
    transposed convs; the output goes through a sigmoid (images in [0, 1]).  The default,
    32 x 32 -> 4 x 8 x 8, trains in about a minute on one CPU core (a 64 x 64 one with the same
    latent took 4x longer per step and reconstructed worse after the same time).
    """

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or AutoencoderConfig()
        enc: list[nn.Module] = []
        cin = 3
        for c in config.channels:
            enc += [nn.Conv2d(cin, c, 4, stride=2, padding=1), nn.SiLU(), _block(c, c)]
            cin = c
        enc.append(nn.Conv2d(cin, config.latent_channels, 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(config.latent_channels, cin, 3, padding=1), nn.SiLU()]
        for c in reversed(config.channels):
            dec += [nn.ConvTranspose2d(cin, c, 4, stride=2, padding=1), nn.SiLU(), _block(c, c)]
            cin = c
        dec.append(nn.Conv2d(cin, 3, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of a latent."""
        return self.config.latent_shape

    @property
    def image_size(self) -> int:
        """Side of the images it encodes and decodes."""
        return self.config.image_size

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) in [0, 1] -> (N, C, h, w) latents."""
        return self.encoder(x * 2 - 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) latents -> (N, 3, S, S) in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, C, h, w) float latents (images resized to ``image_size``)."""
        return self.encode(_images_to_tensor(images, self.config.image_size))

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """(N, C, h, w) latents -> (N, S, S, 3) uint8 images."""
        return _tensor_to_images(self.decode(_check_latents(latents, self.latent_shape)))


def train_autoencoder(
    images: np.ndarray,
    config: AutoencoderConfig | None = None,
    *,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[TinyAutoencoder, list[float]]:
    """Fit a :class:`TinyAutoencoder` to the stimulus images (MSE in pixel space).

    Parameters
    ----------
    images : (N, H, W, 3) uint8 stimulus images.
    config : sizes; default 32 x 32 -> 4 x 8 x 8.
    epochs, batch_size, lr, seed : the recipe (AdamW, cosine decay).
    progress : show a progress bar (epochs and loss).

    Returns
    -------
    (autoencoder in eval mode, per-epoch mean training loss)
    """
    epochs = check_number(epochs, "epochs", minimum=1, integer=True)
    batch_size = check_number(batch_size, "batch_size", minimum=1, integer=True)
    lr = check_number(lr, "lr", minimum=0, strict_min=True)
    x = _images_to_tensor(images, (config or AutoencoderConfig()).image_size)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = TinyAutoencoder(config)
    finally:
        torch.random.set_rng_state(gen_state)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx]
        return F.mse_loss(model(xb), xb)

    history = fit_epochs(
        loss_of,
        len(x),
        opt,
        epochs=epochs,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
        scheduler=sched,
        desc="train autoencoder",
        progress=progress,
    )
    return model.eval(), history


def save_autoencoder(model: TinyAutoencoder, path: str | Path) -> Path:
    """Write a :class:`TinyAutoencoder` to ``path`` (safetensors, config in the metadata)."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "mindeye-rt-tiny-autoencoder", "config": json.dumps(asdict(model.config))}
    return write_with(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def load_tiny_autoencoder(path: str | Path) -> TinyAutoencoder:
    """Inverse of :func:`save_autoencoder`.

    Raises
    ------
    WeightsError
        When the file is missing or is not a tiny-autoencoder file.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path).with_suffix(".safetensors")
    if not path.is_file():
        raise WeightsError(
            f"tiny autoencoder file {str(path)!r} does not exist: train one with "
            "mindeye_models.autoencoders.train_autoencoder and save_autoencoder"
        )
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "mindeye-rt-tiny-autoencoder":
        raise WeightsError(f"{str(path)!r} is not a tiny-autoencoder file (no format tag)")
    model = TinyAutoencoder(AutoencoderConfig(**json.loads(meta["config"])))
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as err:
        raise WeightsError(f"{str(path)!r} does not fit its config: {err}") from None
    return model.eval()


class DiffusersAutoencoder:
    """A diffusers ``AutoencoderKL`` behind the :class:`TinyAutoencoder` image interface.

    Latents are the posterior means times the VAE's ``scaling_factor`` (the Stable Diffusion
    convention); images are resized to ``image_size`` (512 for SD: 4 x 64 x 64 latents).

    Parameters
    ----------
    vae : a diffusers ``AutoencoderKL``.
    image_size : image side the latents are computed at.
    path : the local directory it was loaded from (recorded in reconstruction bundles).
    """

    def __init__(self, vae: Any, image_size: int = 512, path: str | Path | None = None) -> None:
        self.vae = vae.eval()
        self.path = None if path is None else Path(path)
        self.image_size = check_number(image_size, "image_size", minimum=8, integer=True)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        side = self.image_size // factor
        self.latent_shape = (vae.config.latent_channels, side, side)
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", 1.0))

    def to(self, device: str | torch.device) -> DiffusersAutoencoder:
        """Move the VAE to ``device`` (as ``nn.Module.to``); returns ``self``."""
        self.vae.to(device)
        return self

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, C, h, w) scaled latents."""
        x = _images_to_tensor(images, self.image_size).to(self.vae.device, self.vae.dtype)
        post = self.vae.encode(x * 2 - 1).latent_dist
        return post.mean * self.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """(N, C, h, w) scaled latents -> (N, S, S, 3) uint8 images."""
        z = (
            _check_latents(latents, self.latent_shape).to(self.vae.device, self.vae.dtype)
            / self.scaling_factor
        )
        return _tensor_to_images((self.vae.decode(z).sample + 1) / 2)


def load_autoencoder(path: str | Path, image_size: int = 512) -> DiffusersAutoencoder:
    """Load a local diffusers ``AutoencoderKL`` directory (never downloads).

    Parameters
    ----------
    path : directory holding ``config.json`` and ``diffusion_pytorch_model.safetensors`` (for
        SD's VAE: the ``vae`` folder of a Stable Diffusion snapshot).
    image_size : image side the latents are computed at.

    Raises
    ------
    WeightsError
        When the directory or its files are missing or do not load as an AutoencoderKL.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise WeightsError(
            f"autoencoder directory {str(path)!r} is missing or has no config.json: expected a "
            f"diffusers AutoencoderKL folder with {_VAE_FILES} (e.g. the 'vae' folder of a "
            "Stable Diffusion snapshot); nothing is downloaded"
        )
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise WeightsError(
            f"could not load an AutoencoderKL from {str(path)!r} (expected {_VAE_FILES}): {err}"
        ) from None
    return DiffusersAutoencoder(vae, image_size=image_size, path=path.resolve())


def encode_rows(autoencoder: Any, images: Any, ids: np.ndarray, batch: int = 64) -> torch.Tensor:
    """(N, C, h, w) float32 latents of ``images[ids]``, each distinct image encoded once.

    Parameters
    ----------
    autoencoder : any autoencoder of this module (``encode_images``).
    images : (M, H, W, 3) uint8 array indexed by image id (a memmap is fine).
    ids : (N,) image id of each row (repeats allowed: one row per trial).
    """
    uniq = np.unique(ids)
    by_id: dict[int, torch.Tensor] = {}
    for i in range(0, len(uniq), batch):
        z = autoencoder.encode_images(np.asarray(images[uniq[i : i + batch]])).float().cpu()
        by_id.update(zip(uniq[i : i + batch].tolist(), z, strict=True))
    return torch.stack([by_id[int(i)] for i in ids])
