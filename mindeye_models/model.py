"""The MindEye voxel-to-CLIP network: residual MLP backbone and per-token projector.

Module names and the order inside each ``nn.Sequential`` follow the official MindEye1
``BrainNetwork`` (LayerNorm before GELU), so its state dicts map onto ours by renaming only
(``lin0`` -> ``backbone.lin0``, ``mlp`` -> ``backbone.blocks``, ``lin1`` -> ``backbone.lin1``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mindeye_models.presets import MindEyeConfig
from rt_base.errors import ConfigError

_MIN_STD = 1e-6  # voxels with a smaller training std are only centred, not scaled


class Backbone(nn.Module):
    """Residual MLP: ``(B, V) -> (B, T * D)``."""

    def __init__(self, config: MindEyeConfig) -> None:
        super().__init__()
        h = config.hidden
        self.lin0 = nn.Sequential(
            nn.Linear(config.n_voxels, h),
            nn.LayerNorm(h),
            nn.GELU(),
            nn.Dropout(config.dropout_in),
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Linear(h, h),
                nn.LayerNorm(h),
                nn.GELU(),
                nn.Dropout(config.dropout_block),
            )
            for _ in range(config.n_blocks)
        )
        self.lin1 = nn.Linear(h, config.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lin0(x)
        for block in self.blocks:
            x = block(x) + x
        return self.lin1(x)


def build_projector(clip_dim: int, proj_hidden: int) -> nn.Sequential:
    """Per-token MLP ``D -> proj_hidden -> proj_hidden -> D`` with LayerNorm/GELU before each
    linear layer (the MindEye1 projector)."""
    return nn.Sequential(
        nn.LayerNorm(clip_dim),
        nn.GELU(),
        nn.Linear(clip_dim, proj_hidden),
        nn.LayerNorm(proj_hidden),
        nn.GELU(),
        nn.Linear(proj_hidden, proj_hidden),
        nn.LayerNorm(proj_hidden),
        nn.GELU(),
        nn.Linear(proj_hidden, clip_dim),
    )


class MindEye(nn.Module):
    """MindEye voxel-to-CLIP network.

    The input responses are normalized per voxel inside :meth:`forward` with the buffers
    ``input_mean`` and ``input_std`` (identity until :meth:`fit_input_normalization` sets them
    from training data); they are saved with the weights.

    Parameters
    ----------
    config : MindEyeConfig

    Examples
    --------
    Count the paper model's parameters without allocating its 3.8 GB::

        with torch.device("meta"):
            model = MindEye(get_preset("mindeye1-subj01"))
    """

    def __init__(self, config: MindEyeConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.projector = build_projector(config.clip_dim, config.proj_hidden)
        self.register_buffer("input_mean", torch.zeros(config.n_voxels))
        self.register_buffer("input_std", torch.ones(config.n_voxels))

    @torch.no_grad()
    def fit_input_normalization(self, voxels: np.ndarray | torch.Tensor) -> None:
        """Set ``input_mean``/``input_std`` to the per-voxel mean and std of ``voxels``.

        Parameters
        ----------
        voxels : (N, V) float array of training responses, N >= 2.
        """
        shape = tuple(voxels.shape)
        if len(shape) != 2 or shape[1] != self.config.n_voxels or shape[0] < 2:
            raise ConfigError(
                f"'voxels' must be (N >= 2, {self.config.n_voxels}) to fit the input "
                f"normalization, got shape {shape}"
            )
        shift = None  # shifted sums keep float64 precise for large offsets (scanner units)
        total = torch.zeros(shape[1], dtype=torch.float64)
        sq = torch.zeros(shape[1], dtype=torch.float64)
        for i in range(0, shape[0], 1024):  # chunked: no float64 copy of the whole array
            rows = voxels[i : i + 1024]
            if isinstance(rows, torch.Tensor):
                rows = rows.detach().cpu().numpy()
            chunk = torch.from_numpy(np.array(rows, dtype=np.float64))  # a copy
            shift = chunk[0].clone() if shift is None else shift
            chunk -= shift
            total += chunk.sum(0)
            sq += (chunk * chunk).sum(0)
        n = shape[0]
        mean = total / n
        var = (sq / n - mean * mean).clamp_min(0) * n / (n - 1)
        mean += shift
        std = var.sqrt()
        std[std < _MIN_STD] = 1.0
        self.input_mean.copy_(mean.float())
        self.input_std.copy_(std.float())

    def forward(self, voxels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict CLIP image tokens.

        Parameters
        ----------
        voxels : (B, V) float tensor of raw (un-normalized) responses.

        Returns
        -------
        backbone : (B, T, D) tensor, the backbone's token prediction (input of a diffusion
            prior).
        projected : (B, T, D) tensor, the projector's output (the contrastive/retrieval space).
        """
        if voxels.ndim != 2 or voxels.shape[1] != self.config.n_voxels:
            raise ConfigError(
                f"'voxels' must be a (batch, {self.config.n_voxels}) tensor, got shape "
                f"{tuple(voxels.shape)}: pass one response vector per row, in ROI order"
            )
        x = (voxels - self.input_mean) / self.input_std
        tokens = self.backbone(x).view(len(x), self.config.n_tokens, self.config.clip_dim)
        return tokens, self.projector(tokens)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (buffers excluded); works on the meta device."""
    return sum(p.numel() for p in module.parameters())
