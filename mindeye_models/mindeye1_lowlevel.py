"""MindEye1's low-level network: voxels -> Stable Diffusion VAE latents (the official layout).

MindEye1 (Scotti et al. 2023, arXiv 2305.18274) predicts the 4 x 64 x 64 latents of Stable
Diffusion's VAE from the voxels with a residual MLP (Linear without bias, LayerNorm, SiLU) to
a 64 x 16 x 16 map and a convolutional upsampler (diffusers' VAE ``Decoder``, 3 up blocks); an
optional 1 x 1 convolutional "maps projector" served its auxiliary contrastive loss.  The
latents are in the VAE's scaled units (divide by 0.18215 before decoding).  This is an
independent implementation of the released "4x" variant whose names follow the official
state dict, so :func:`mindeye_models.official_mindeye1.load_official_mindeye1_lowlevel`
loads it directly.  The project's own, smaller head is :mod:`mindeye_models.lowlevel`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rt_base.checks import check_number
from rt_base.errors import ConfigError

LATENT_SHAPE = (4, 64, 64)  # SD VAE latents of a 512 x 512 image
_SEED = (64, 16, 16)  # lin1's output, reshaped before upsampling
_UP_CHANNELS = (64, 128, 256)


@dataclass(frozen=True)
class Voxel2LatentsConfig:
    """Sizes of :class:`Voxel2Latents` (paper: 15,724 voxels, hidden 4096, 4 blocks)."""

    n_voxels: int
    hidden: int = 4096
    n_blocks: int = 4
    with_maps: bool = False

    def __post_init__(self) -> None:
        check_number(self.n_voxels, "n_voxels", minimum=1, integer=True)
        check_number(self.hidden, "hidden", minimum=1, integer=True)
        check_number(self.n_blocks, "n_blocks", minimum=0, integer=True)


class Voxel2Latents(nn.Module):
    """``(B, V)`` voxels -> ``(B, 4, 64, 64)`` scaled VAE latents (and ``(B, 256, 512)`` maps)."""

    def __init__(self, config: Voxel2LatentsConfig) -> None:
        from diffusers.models.autoencoders.vae import Decoder

        super().__init__()
        self.config = config
        h = config.hidden
        self.lin0 = nn.Sequential(
            nn.Linear(config.n_voxels, h, bias=False), nn.LayerNorm(h), nn.SiLU(), nn.Dropout(0.5)
        )
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(h, h, bias=False), nn.LayerNorm(h), nn.SiLU(), nn.Dropout(0.25))
            for _ in range(config.n_blocks)
        )
        c = _SEED[0]
        self.lin1 = nn.Linear(h, c * _SEED[1] * _SEED[2], bias=False)
        self.norm = nn.GroupNorm(1, c)
        self.upsampler = Decoder(
            in_channels=c,
            out_channels=LATENT_SHAPE[0],
            up_block_types=["UpDecoderBlock2D"] * len(_UP_CHANNELS),
            block_out_channels=list(_UP_CHANNELS),
            layers_per_block=1,
        )
        if config.with_maps:
            self.maps_projector = nn.Sequential(
                nn.Conv2d(c, 512, 1, bias=False),
                nn.GroupNorm(1, 512),
                nn.ReLU(True),
                nn.Conv2d(512, 512, 1, bias=False),
                nn.GroupNorm(1, 512),
                nn.ReLU(True),
                nn.Conv2d(512, 512, 1, bias=True),
            )
        else:
            self.maps_projector = None

    def seed_map(self, voxels: torch.Tensor) -> torch.Tensor:
        """The normalized ``(B, 64, 16, 16)`` map the upsampler starts from."""
        if voxels.ndim != 2 or voxels.shape[1] != self.config.n_voxels:
            raise ConfigError(
                f"'voxels' must be a (batch, {self.config.n_voxels}) tensor, got shape "
                f"{tuple(voxels.shape)}: pass one response vector per row, in ROI order"
            )
        x = self.lin0(voxels)
        for block in self.mlp:
            x = block(x) + x
        return self.norm(self.lin1(x).view(len(x), *_SEED))

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        """(B, V) voxels -> (B, 4, 64, 64) latents (times 0.18215, as SD scales them)."""
        return self.upsampler(self.seed_map(voxels))

    def maps(self, voxels: torch.Tensor) -> torch.Tensor:
        """(B, 256, 512) features of the auxiliary contrastive loss (``with_maps`` only)."""
        if self.maps_projector is None:
            raise ConfigError("this low-level network was built without its maps projector")
        return self.maps_projector(self.seed_map(voxels)).flatten(2).transpose(1, 2)
