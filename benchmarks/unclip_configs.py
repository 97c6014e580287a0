"""Real-size reconstruction models with random weights, built in code (nothing is downloaded).

Used by the benchmarks only (``bench_recon.py --size paper``), so it lives with them; the
scripts import it as a sibling (``import unclip_configs``), as ``python benchmarks/X.py`` runs.

For latency and memory figures without the weights, this module builds the models of the
paper-size reconstruction path at their real sizes:

* the Stable unCLIP 2.1 "small" image-variation pipeline (``stabilityai/stable-diffusion-2-1-
  unclip-small``, conditioned on 768-d CLIP ViT-L/14 image embeddings, 768 x 768 output):
  :func:`build_unclip_small_pipeline` and its parts :func:`build_unclip_small_unet`,
  :func:`build_sd_vae` and :func:`build_openclip_h_text_encoder`;
* MindEye1's low-level head (voxels -> 4 x 64 x 64 Stable Diffusion VAE latents):
  :class:`MindEye1LowLevelHead`, :func:`build_paper_lowlevel_head`.

Every builder takes ``device`` (``"meta"`` allocates nothing, for parameter counts: see
:func:`parameter_counts`), ``dtype`` and ``seed``.  Modules are created directly on ``device``
in float32 (the initializers' precision) and then cast, one component at a time, so the peak
memory is the largest component in float32 plus the rest in ``dtype`` (the UNet: ~3.5 GB).

Where the sizes come from
-------------------------
Stability AI's original inference config ``configs/stable-diffusion/v2-1-stable-unclip-l-
inference.yaml`` (github.com/Stability-AI/stablediffusion) gives the UNet (``model_channels``
320, ``channel_mult`` [1, 2, 4, 4], ``num_res_blocks`` 2, ``attention_resolutions`` [4, 2, 1],
``num_head_channels`` 64, ``context_dim`` 1024, linear transformer projections, v-prediction,
``num_classes: sequential`` with ``adm_in_channels`` 1536, latent ``image_size`` 96), the VAE
(``ch`` 128, ``ch_mult`` [1, 2, 4, 4], 2 res blocks, ``z_channels`` 4, ``scale_factor``
0.18215), the image-embedding noise augmentation (``timestep_dim`` 768, ``squaredcos_cap_v2``
over 1000 steps) and the text encoder (OpenCLIP ViT-H, penultimate layer).  diffusers'
``convert_from_ckpt.create_unet_diffusers_config`` maps these onto ``UNet2DConditionModel``:
``block_out_channels`` (320, 640, 1280, 1280), ``attention_head_dim`` = 320 / 64 x mult =
(5, 10, 20, 20), ``class_embed_type="projection"`` with input dim 1536, ``sample_size`` 96.
The text encoder is the SD 2.x ``CLIPTextModel`` (hidden 1024, 23 layers = ViT-H's 24 minus the
unused last one, 16 heads, MLP 4096, gelu, 77 positions, vocabulary 49,408; its config's
``projection_dim`` (512) is unused by ``CLIPTextModel``).  The parameter counts agree with the
float32 checkpoint files of the hub snapshot (unet 3.48 GB / 4 bytes ~ 870 M, vae 335 MB ~ 84 M,
the SD 2.1 text encoder's 1.36 GB ~ 340 M).  Not modelled: ``upcast_attention`` (no effect on the
parameters or on PyTorch's fused attention) and the ViT-L/14 image encoder, which the
reconstruction never runs (the prior supplies the image embeddings).

MindEye1's low-level head is ``Voxel2StableDiffusionModel`` (src/models.py of
github.com/MedARC-AI/fMRI-reconstruction-NSD, used as ``Voxel2StableDiffusionModel(in_dim=15724)``
with its defaults ``h=4096, n_blocks=4, ups_mode="4x"``); :class:`MindEye1LowLevelHead` is an
independent implementation with the same layers and sizes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from mindeye_models.presets import NSD_SUBJ01_VOXELS
from rt_base.checks import check_number
from rt_base.errors import ConfigError

#: Side of the images the unCLIP-small pipeline generates (96 latent pixels x 8).
UNCLIP_IMAGE_SIZE = 768
#: Width of the CLIP ViT-L/14 image embeddings the unCLIP-small UNet is conditioned on.
UNCLIP_EMBED_DIM = 768
#: Image side MindEye1 decodes its low-level latents at (4 x 64 x 64 SD latents).
LOWLEVEL_IMAGE_SIZE = 512

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def unclip_small_unet_config() -> dict[str, Any]:
    """``UNet2DConditionModel`` keyword arguments of Stable unCLIP 2.1 small (SD 2.1 UNet).

    Returns
    -------
    A fresh dict (safe to modify).
    """
    return {
        "sample_size": UNCLIP_IMAGE_SIZE // 8,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 2,
        "block_out_channels": (320, 640, 1280, 1280),
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 1024,
        "attention_head_dim": (5, 10, 20, 20),
        "use_linear_projection": True,
        "class_embed_type": "projection",
        # the noised image embedding concatenated with its noise-level embedding: 2 x 768
        "projection_class_embeddings_input_dim": 2 * UNCLIP_EMBED_DIM,
    }


def sd_vae_config(sample_size: int = UNCLIP_IMAGE_SIZE) -> dict[str, Any]:
    """``AutoencoderKL`` keyword arguments of the Stable Diffusion (1.x / 2.x) VAE.

    Parameters
    ----------
    sample_size : nominal image side recorded in the config (no effect on the weights).
    """
    return {
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": int(sample_size),
        "scaling_factor": 0.18215,
    }


def openclip_h_text_config(
    vocab_size: int = 49408, bos_token_id: int = 49406, eos_token_id: int = 49407
) -> dict[str, Any]:
    """``CLIPTextConfig`` keyword arguments of the SD 2.x text encoder (OpenCLIP ViT-H/14 text
    tower up to its penultimate layer).

    Parameters
    ----------
    vocab_size, bos_token_id, eos_token_id : of the tokenizer it is used with (CLIP's BPE).
    """
    return {
        "vocab_size": int(vocab_size),
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 23,
        "max_position_embeddings": 77,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 512,  # as in the SD 2.x config; CLIPTextModel has no projection
        "bos_token_id": int(bos_token_id),
        "eos_token_id": int(eos_token_id),
        "pad_token_id": int(eos_token_id),
    }


def _check_dtype(dtype: Any) -> torch.dtype:
    if dtype not in _DTYPES:
        raise ConfigError(
            f"'dtype' must be one of torch.float32, torch.float16, torch.bfloat16, got {dtype!r}"
        )
    return dtype


@contextlib.contextmanager
def _building(device: str | torch.device, seed: int) -> Iterator[torch.device]:
    """Create modules on ``device`` with the global RNGs seeded by ``seed`` and restored after."""
    dev = torch.device(device)
    seed = check_number(seed, "seed", minimum=0, integer=True)
    cuda = []
    if dev.type == "cuda":
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda), torch.device(dev):
        torch.manual_seed(seed)
        yield dev


def _finish(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    module = module.eval().requires_grad_(False)
    if dtype != torch.float32:
        # the plain nn.Module cast: diffusers' own .to() only adds a warning about modules to
        # keep in float32 when loading checkpoints, and these models have none
        nn.Module.to(module, dtype)
    return module


def build_unclip_small_unet(
    *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> Any:
    """The Stable unCLIP 2.1 small UNet (~870 M parameters) with random weights.

    Parameters
    ----------
    device : where to create it; ``"meta"`` allocates nothing.
    dtype : torch.float32, torch.float16 or torch.bfloat16.
    seed : seeds the random weights (the global RNG state is restored afterwards).

    Returns
    -------
    ``UNet2DConditionModel`` in eval mode without gradients.
    """
    from diffusers import UNet2DConditionModel

    dtype = _check_dtype(dtype)
    with _building(device, seed):
        unet = UNet2DConditionModel(**unclip_small_unet_config())
    return _finish(unet, dtype)


def build_sd_vae(
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    sample_size: int = UNCLIP_IMAGE_SIZE,
) -> Any:
    """The Stable Diffusion VAE (~84 M parameters, 8x downsampling, 4 latent channels).

    Parameters
    ----------
    device, dtype, seed : as for :func:`build_unclip_small_unet`.
    sample_size : nominal image side stored in its config.

    Returns
    -------
    ``AutoencoderKL`` in eval mode without gradients.
    """
    from diffusers import AutoencoderKL

    dtype = _check_dtype(dtype)
    with _building(device, seed):
        vae = AutoencoderKL(**sd_vae_config(sample_size))
    return _finish(vae, dtype)


def build_openclip_h_text_encoder(
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    tokenizer: Any = None,
) -> Any:
    """The SD 2.x text encoder (OpenCLIP ViT-H text tower, ~340 M parameters).

    Parameters
    ----------
    device, dtype, seed : as for :func:`build_unclip_small_unet`.
    tokenizer : the tokenizer it serves (for the vocabulary size and special ids); None uses
        CLIP's standard ids.

    Returns
    -------
    ``transformers.CLIPTextModel`` in eval mode without gradients.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    dtype = _check_dtype(dtype)
    ids = {}
    if tokenizer is not None:
        ids = {
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
    with _building(device, seed):
        model = CLIPTextModel(CLIPTextConfig(**openclip_h_text_config(**ids)))
    return _finish(model, dtype)


def _ddim_v_config() -> dict[str, Any]:
    """The SD 2.1 (v-prediction) DDIM scheduler config that the few-step samplers start from."""
    from mindeye_models.unclip_pipeline import sd21_scheduler_config

    return sd21_scheduler_config()


def build_unclip_small_pipeline(
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    scheduler: str = "dpm",
    vae: Any = None,
) -> Any:
    """A real-size ``StableUnCLIPImg2ImgPipeline`` (Stable unCLIP 2.1 small) with random weights.

    Parameters
    ----------
    device : where to build it; ``"meta"`` gives a pipeline whose models hold no data (for
        inspecting sizes only).
    dtype : torch.float32, torch.float16 (GPU) or torch.bfloat16.
    seed : seeds the random weights; the components get ``seed``, ``seed + 1``, ... so that
        they differ.
    scheduler : few-step sampler, one of :data:`mindeye_models.unclip_pipeline.SCHEDULERS`.
    vae : an ``AutoencoderKL`` to share (e.g. the one the low-level path decodes with); None
        builds one.

    Returns
    -------
    The pipeline without image encoder (like :func:`mindeye_models.unclip_pipeline.
    load_unclip_pipeline`), progress bar off; use it with
    :func:`mindeye_models.generator.reconstruct`.
    """
    from diffusers import DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )

    from mindeye_models.unclip_pipeline import _open_clip_tokenizer, make_scheduler

    dtype = _check_dtype(dtype)
    tokenizer = _open_clip_tokenizer()
    unet = build_unclip_small_unet(device=device, dtype=dtype, seed=seed)
    text_encoder = build_openclip_h_text_encoder(
        device=device, dtype=dtype, seed=seed + 1, tokenizer=tokenizer
    )
    if vae is None:
        vae = build_sd_vae(device=device, dtype=dtype, seed=seed + 2)
    with _building(device, seed + 3):
        normalizer = StableUnCLIPImageNormalizer(embedding_dim=UNCLIP_EMBED_DIM)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=None,
        image_encoder=None,
        image_normalizer=_finish(normalizer, dtype),
        image_noising_scheduler=DDPMScheduler(
            num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"
        ),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=make_scheduler(scheduler, _ddim_v_config()),
        vae=vae,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class MindEye1LowLevelHead(nn.Module):
    """MindEye1's low-level head: voxels -> 4 x 64 x 64 Stable Diffusion VAE latents.

    Same layers and sizes as ``Voxel2StableDiffusionModel`` of MindEye1 (4x upsampling mode):

    * ``Linear(n_voxels, hidden, bias=False)``, LayerNorm, SiLU, Dropout(0.5);
    * ``n_blocks`` residual blocks ``Linear(hidden, hidden, bias=False)``, LayerNorm, SiLU,
      Dropout(0.25), each added to its input;
    * ``Linear(hidden, 64 * 16 * 16, bias=False)`` reshaped to a 64 x 16 x 16 map,
      ``GroupNorm(1, 64)``;
    * a diffusers VAE ``Decoder`` (64 -> 4 channels, block widths (64, 128, 256), one res block
      per stage plus the mid block with attention) that upsamples 16 x 16 -> 64 x 64.

    At the paper's sizes that is 205.5 M parameters (198.7 M in the MLP, 6.8 M in the
    upsampler).

    Simplified: MindEye1's optional contrastive ``maps_projector`` (a training-only branch,
    off by default) is left out, and there is no input normalization (MindEye1 z-scores the
    voxels before the network).  The output is in the VAE's scaled latent units (decode with
    ``latents / 0.18215``).

    Parameters
    ----------
    n_voxels : input voxels (NSD subject 1: 15,724).
    hidden : width of the residual MLP (4096).
    n_blocks : residual blocks (4).
    """

    MAP_CHANNELS = 64
    MAP_SIDE = 16
    DECODER_CHANNELS = (64, 128, 256)
    LATENT_SHAPE = (4, 64, 64)

    def __init__(
        self, n_voxels: int = NSD_SUBJ01_VOXELS, hidden: int = 4096, n_blocks: int = 4
    ) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Decoder

        self.n_voxels = check_number(n_voxels, "n_voxels", minimum=1, integer=True)
        hidden = check_number(hidden, "hidden", minimum=1, integer=True)
        n_blocks = check_number(n_blocks, "n_blocks", minimum=0, integer=True)

        def layer(n_in: int, drop: float) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(n_in, hidden, bias=False),
                nn.LayerNorm(hidden),
                nn.SiLU(),
                nn.Dropout(drop),
            )

        self.lin0 = layer(self.n_voxels, 0.5)
        self.blocks = nn.ModuleList(layer(hidden, 0.25) for _ in range(n_blocks))
        c, s = self.MAP_CHANNELS, self.MAP_SIDE
        self.lin1 = nn.Linear(hidden, c * s * s, bias=False)
        self.norm = nn.GroupNorm(1, c)
        self.upsampler = Decoder(
            in_channels=c,
            out_channels=self.LATENT_SHAPE[0],
            up_block_types=("UpDecoderBlock2D",) * len(self.DECODER_CHANNELS),
            block_out_channels=self.DECODER_CHANNELS,
            layers_per_block=1,
        )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(4, 64, 64)``."""
        return self.LATENT_SHAPE

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        """(B, V) voxels -> (B, 4, 64, 64) scaled SD latents."""
        if voxels.ndim != 2 or voxels.shape[1] != self.n_voxels:
            raise ConfigError(
                f"'voxels' must be a (batch, {self.n_voxels}) tensor, got shape "
                f"{tuple(voxels.shape)}: pass one response vector per row, in ROI order"
            )
        x = self.lin0(voxels)
        for block in self.blocks:
            x = block(x) + x
        x = self.lin1(x).view(len(x), self.MAP_CHANNELS, self.MAP_SIDE, self.MAP_SIDE)
        return self.upsampler(self.norm(x))


def build_paper_lowlevel_head(
    *,
    n_voxels: int = NSD_SUBJ01_VOXELS,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> MindEye1LowLevelHead:
    """:class:`MindEye1LowLevelHead` at the paper's size, random weights, eval mode.

    Parameters
    ----------
    n_voxels : input voxels (15,724 for NSD subject 1).
    device, dtype, seed : as for :func:`build_unclip_small_unet`.
    """
    dtype = _check_dtype(dtype)
    with _building(device, seed):
        head = MindEye1LowLevelHead(n_voxels)
    return _finish(head, dtype)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(n_voxels: int = NSD_SUBJ01_VOXELS) -> dict[str, int]:
    """Parameters of the real-size models, counted on the meta device (nothing is allocated).

    Returns
    -------
    dict with ``unet``, ``unet.class_embedding`` (the image-embedding projection unCLIP adds to
    SD 2.1), ``vae``, ``vae.encoder``, ``vae.decoder`` (incl. ``post_quant_conv``),
    ``text_encoder``, ``image_normalizer``, ``unclip_pipeline`` (their sum),
    ``lowlevel_head``, ``lowlevel_head.mlp`` and ``lowlevel_head.upsampler``.
    """
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )

    unet = build_unclip_small_unet(device="meta")
    vae = build_sd_vae(device="meta")
    text = build_openclip_h_text_encoder(device="meta")
    with torch.device("meta"):
        normalizer = StableUnCLIPImageNormalizer(embedding_dim=UNCLIP_EMBED_DIM)
    head = build_paper_lowlevel_head(n_voxels=n_voxels, device="meta")
    counts = {
        "unet": _count(unet),
        "unet.class_embedding": _count(unet.class_embedding),
        "vae": _count(vae),
        "vae.encoder": _count(vae.encoder) + _count(vae.quant_conv),
        "vae.decoder": _count(vae.decoder) + _count(vae.post_quant_conv),
        "text_encoder": _count(text),
        "image_normalizer": _count(normalizer),
    }
    counts["unclip_pipeline"] = (
        counts["unet"] + counts["vae"] + counts["text_encoder"] + counts["image_normalizer"]
    )
    counts["lowlevel_head"] = _count(head)
    counts["lowlevel_head.upsampler"] = _count(head.upsampler)
    counts["lowlevel_head.mlp"] = counts["lowlevel_head"] - counts["lowlevel_head.upsampler"]
    return counts
