"""MindEye's low-level head: voxels -> image-autoencoder latents (-> a blurry image).

In MindEye (Scotti et al. 2023, arXiv 2305.18274) a second network maps the voxels onto the
latents of Stable Diffusion's VAE; decoding them with the autoencoder
(:mod:`mindeye_models.autoencoders`) gives a blurry picture with the right layout and colours,
which then seeds img2img in the reconstruction.

:class:`LowLevelHead` is an MLP (per-voxel input normalization, one hidden layer) from voxels to
the flattened latents, trained with MSE (:func:`train_lowlevel_head`).  The paper's head is
bigger (an MLP to 64 x 16 x 16 and a convolutional upsampler to 4 x 64 x 64); only the target
shape is taken from its autoencoder here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mindeye_models.fitting import fit_epochs
from rt_base.checks import check_number
from rt_base.errors import ConfigError


@dataclass(frozen=True)
class LowLevelConfig:
    """Sizes of :class:`LowLevelHead`.

    Parameters
    ----------
    n_voxels : number of input voxels.
    latent_shape : ``(C, h, w)`` of the autoencoder latents it predicts (paper: 4 x 64 x 64).
    hidden : width of the hidden layer.
    dropout : dropout after the hidden layer.
    """

    n_voxels: int
    latent_shape: tuple[int, int, int] = (4, 8, 8)
    hidden: int = 512
    dropout: float = 0.3

    def __post_init__(self) -> None:
        check_number(self.n_voxels, "n_voxels", minimum=1, integer=True)
        check_number(self.hidden, "hidden", minimum=1, integer=True)
        object.__setattr__(
            self, "dropout", float(check_number(self.dropout, "dropout", minimum=0, maximum=0.99))
        )
        shape = tuple(int(s) for s in self.latent_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"'latent_shape' must be (C, h, w) positive, got {self.latent_shape}")
        object.__setattr__(self, "latent_shape", shape)


class LowLevelHead(nn.Module):
    """MLP ``(B, V) voxels -> (B, C, h, w)`` autoencoder latents.

    Voxels are normalized with the ``input_mean``/``input_std`` buffers (identity until
    :meth:`fit_input_normalization`); the latents are predicted in units of
    ``latent_mean``/``latent_std`` buffers (set by :func:`train_lowlevel_head`).
    """

    def __init__(self, config: LowLevelConfig) -> None:
        super().__init__()
        self.config = config
        n_out = int(np.prod(config.latent_shape))
        self.mlp = nn.Sequential(
            nn.Linear(config.n_voxels, config.hidden),
            nn.LayerNorm(config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, n_out),
        )
        self.register_buffer("input_mean", torch.zeros(config.n_voxels))
        self.register_buffer("input_std", torch.ones(config.n_voxels))
        self.register_buffer("latent_mean", torch.zeros(config.latent_shape))
        self.register_buffer("latent_std", torch.ones(()))

    @torch.no_grad()
    def fit_input_normalization(self, voxels: torch.Tensor) -> None:
        """Per-voxel mean/std of (N >= 2, V) training voxels."""
        self._check(voxels)
        if len(voxels) < 2:
            raise ConfigError("need at least 2 training rows to fit the input normalization")
        self.input_mean.copy_(voxels.float().mean(0))
        std = voxels.float().std(0)
        self.input_std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))

    def _check(self, voxels: torch.Tensor) -> None:
        if voxels.ndim != 2 or voxels.shape[1] != self.config.n_voxels:
            raise ConfigError(
                f"'voxels' must be a (batch, {self.config.n_voxels}) tensor, got shape "
                f"{tuple(voxels.shape)}: pass one response vector per row, in ROI order"
            )

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        """(B, V) raw voxels -> (B, C, h, w) latents."""
        self._check(voxels)
        x = (voxels - self.input_mean) / self.input_std
        z = self.mlp(x).view(len(x), *self.config.latent_shape)
        return z * self.latent_std + self.latent_mean


def train_lowlevel_head(
    head: LowLevelHead,
    voxels: torch.Tensor,
    latents: torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Fit ``head`` (MSE on standardized latents); sets its normalization buffers first.

    Parameters
    ----------
    head : LowLevelHead
    voxels : (N, V) training responses.
    latents : (N, C, h, w) autoencoder latents of the seen images.
    progress : show a progress bar (epochs and loss).

    Returns
    -------
    Per-epoch mean training loss; ``head`` is left in eval mode.
    """
    head._check(voxels)
    if tuple(latents.shape) != (len(voxels), *head.config.latent_shape):
        raise ConfigError(
            f"'latents' must be ({len(voxels)}, {', '.join(map(str, head.config.latent_shape))}) "
            f"to match the voxels and the head, got shape {tuple(latents.shape)}"
        )
    voxels, latents = voxels.float(), latents.float()
    head.fit_input_normalization(voxels)
    with torch.no_grad():
        head.latent_mean.copy_(latents.mean(0))
        head.latent_std.fill_(float((latents - head.latent_mean).std()) or 1.0)
    target = (latents - head.latent_mean) / head.latent_std
    opt = torch.optim.AdamW(head.mlp.parameters(), lr=lr, weight_decay=weight_decay)
    head.train()

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        x = (voxels[idx] - head.input_mean) / head.input_std
        pred = head.mlp(x).view(len(idx), *head.config.latent_shape)
        return F.mse_loss(pred, target[idx])

    history = fit_epochs(
        loss_of,
        len(voxels),
        opt,
        epochs=epochs,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
        desc="train low-level head",
        progress=progress,
    )
    head.eval()
    return history
