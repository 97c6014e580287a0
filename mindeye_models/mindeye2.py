"""The MindEye2 network (Scotti et al. 2024, arXiv 2403.11207): shared-subject voxels -> CLIP.

Per trial: the subject's ridge maps its voxels into the shared ``hidden``-wide space; a residual
MLP-mixer backbone (blocks that mix along the hidden width, then along the short sequence)
predicts the ``n_tokens x clip_dim`` CLIP tokens (the diffusion prior's condition); a per-token
projector gives the retrieval (contrastive) space; the optional blurry head turns the same
features into 4 x 28 x 28 latents of the image-variation autoencoder (a blurry picture of the
layout and colours) and 49 x 512 maps for its auxiliary contrastive loss.

This is an independent implementation with the official layout: submodule names follow the
official ``BrainNetwork`` where the structure is the same (``mixer_blocks1``, ``mixer_blocks2``,
``backbone_linear``), and :mod:`mindeye_models.official_keys` maps the rest.  The blurry head's
upsampler is diffusers' VAE ``Decoder``, as in the official model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mindeye_models.model import build_projector
from mindeye_models.presets import MindEye2Config
from rt_base.errors import ConfigError

BLURRY_LATENT_SHAPE = (4, 28, 28)  # image-variation VAE latents of a 224 x 224 image
_BLURRY_SEED = (64, 7, 7)  # the head's linear output, reshaped before upsampling
_BLURRY_CHANNELS = (32, 64, 128)
_BLURRY_MAPS = (49, 512)


class Ridge(nn.Module):
    """One linear map per subject into the shared space: ``(B, V_s) -> (B, seq_len, hidden)``."""

    def __init__(self, config: MindEye2Config) -> None:
        super().__init__()
        self.config = config
        width = config.hidden * config.seq_len
        self.linears = nn.ModuleList(nn.Linear(v, width) for v in config.n_voxels)

    def forward(self, voxels: torch.Tensor, subject: int) -> torch.Tensor:
        cfg = self.config
        if not 0 <= subject < len(self.linears):
            raise ConfigError(
                f"'subject' must be a ridge index 0..{len(self.linears) - 1} (one per subject the "
                f"model was trained on), got {subject}"
            )
        expected = cfg.n_voxels[subject]
        if voxels.ndim != 2 or voxels.shape[1] != expected:
            raise ConfigError(
                f"'voxels' must be a (batch, {expected}) tensor for subject index {subject}, got "
                f"shape {tuple(voxels.shape)}: pass that subject's responses in ROI order"
            )
        return self.linears[subject](voxels).view(len(voxels), cfg.seq_len, cfg.hidden)


def _mlp(width: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, width)
    )


class MixerBackbone(nn.Module):
    """Residual mixer blocks, then one linear layer to the tokens: ``(B, S, H) -> (B, T, D)``.

    Each block is LayerNorm + MLP over the hidden width (``mixer_blocks1``), then LayerNorm +
    MLP over the sequence (``mixer_blocks2``), each with a residual connection to the previous
    output of its own kind.
    """

    def __init__(self, config: MindEye2Config) -> None:
        super().__init__()
        self.config = config
        h, s, p = config.hidden, config.seq_len, config.dropout
        self.mixer_blocks1 = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(h), _mlp(h, p)) for _ in range(config.n_blocks)
        )
        self.mixer_blocks2 = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(s), _mlp(s, p)) for _ in range(config.n_blocks)
        )
        self.backbone_linear = nn.Linear(h * s, config.n_tokens * config.clip_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The mixed features, flattened: ``(B, S, H) -> (B, S * H)``."""
        # Two residual streams, as in the official model: each block type adds the previous
        # output of the same block type (the first ones add the input).
        skip_hidden, skip_seq = x, x.transpose(1, 2)
        for hidden_mix, seq_mix in zip(self.mixer_blocks1, self.mixer_blocks2, strict=True):
            x = skip_hidden = hidden_mix(x) + skip_hidden
            skip_seq = seq_mix(x.transpose(1, 2)) + skip_seq
            x = skip_seq.transpose(1, 2)
        return x.reshape(len(x), -1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Tokens from :meth:`features`' output."""
        out = self.backbone_linear(features)
        return out.view(len(features), self.config.n_tokens, self.config.clip_dim)


class BlurryHead(nn.Module):
    """Backbone features -> (latents ``(B, 4, 28, 28)``, maps ``(B, 49, 512)``)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Decoder

        c = _BLURRY_SEED[0]
        self.lin = nn.Linear(in_features, c * _BLURRY_SEED[1] * _BLURRY_SEED[2])
        self.dropout = nn.Dropout(0.3)
        self.norm = nn.GroupNorm(1, c)
        self.upsampler = Decoder(
            in_channels=c,
            out_channels=BLURRY_LATENT_SHAPE[0],
            up_block_types=["UpDecoderBlock2D"] * len(_BLURRY_CHANNELS),
            block_out_channels=list(_BLURRY_CHANNELS),
            layers_per_block=1,
        )
        m = _BLURRY_MAPS[1]
        self.maps_projector = nn.Sequential(
            nn.Conv2d(c, m, 1, bias=False),
            nn.GroupNorm(1, m),
            nn.ReLU(True),
            nn.Conv2d(m, m, 1, bias=False),
            nn.GroupNorm(1, m),
            nn.ReLU(True),
            nn.Conv2d(m, m, 1, bias=True),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout(self.lin(features)).view(len(features), *_BLURRY_SEED)
        x = self.norm(x)
        maps = self.maps_projector(x).flatten(2).transpose(1, 2)
        return self.upsampler(x), maps


@dataclass
class MindEye2Output:
    """What :class:`MindEye2` predicts for a batch of B trials.

    tokens : (B, T, D) backbone tokens (the diffusion prior's condition).
    clip : (B, T, D) projected tokens (the retrieval space).
    blurry_latents : (B, 4, 28, 28) autoencoder latents, or None without the blurry head.
    blurry_maps : (B, 49, 512) the blurry head's auxiliary maps, or None.
    """

    tokens: torch.Tensor
    clip: torch.Tensor
    blurry_latents: torch.Tensor | None = None
    blurry_maps: torch.Tensor | None = None


class MindEye2(nn.Module):
    """MindEye2: per-subject ridge, mixer backbone, CLIP projector, optional blurry head.

    Parameters
    ----------
    config : MindEye2Config

    Examples
    --------
    Count the paper model without allocating its 7.9 GB::

        with torch.device("meta"):
            model = MindEye2(get_mindeye2_preset("mindeye2-subj01"))
    """

    def __init__(self, config: MindEye2Config) -> None:
        super().__init__()
        self.config = config
        self.ridge = Ridge(config)
        self.backbone = MixerBackbone(config)
        self.clip_proj = build_projector(config.clip_dim, config.clip_dim)
        self.blurry = BlurryHead(config.hidden * config.seq_len) if config.blurry else None

    def forward(self, voxels: torch.Tensor, subject: int = 0) -> MindEye2Output:
        """Predict the tokens of a batch of one subject's trials.

        Parameters
        ----------
        voxels : (B, V) responses of subject index ``subject`` (z-scored per voxel as in
            training; the official data are z-scored per session upstream).
        subject : index of the subject's ridge (0 for a single-subject model).
        """
        features = self.backbone.features(self.ridge(voxels, subject))
        tokens = self.backbone(features)
        out = MindEye2Output(tokens=tokens, clip=self.clip_proj(tokens))
        if self.blurry is not None:
            out.blurry_latents, out.blurry_maps = self.blurry(features)
        return out
