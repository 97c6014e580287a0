"""Building and loading Stable unCLIP image-variation pipelines (diffusers).

The generator of MindEye's reconstructions (:mod:`mindeye_models.generator`) is diffusers'
``StableUnCLIPImg2ImgPipeline`` (Stable Diffusion 2.1 unCLIP), which takes ``image_embeds``
directly: the ``-small`` checkpoint is conditioned on CLIP ViT-L/14 image embeddings (768-d,
i.e. the class token of the paper's 257 x 768 tokens), the other on ViT-H/14 (1024-d).

* :func:`load_unclip_pipeline` loads a local snapshot directory (never downloads) and switches
  its sampler to a few-step one (DPM-Solver++ with trailing timesteps by default).
* :func:`build_tiny_unclip_pipeline` assembles a tiny pipeline with random weights entirely in
  code (its tokenizer is built from the BPE vocabulary that ships inside open_clip), so the
  whole path runs in tests and demos without any weights.

The image encoder and feature extractor of a snapshot are not loaded: the reconstruction loop
only ever passes ``image_embeds``.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError, WeightsError

SCHEDULERS = ("dpm", "ddim", "euler")
_REQUIRED = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer",
    "image_normalizer/config.json",
    "image_noising_scheduler",
    "scheduler",
)
_EXPECTED = (
    "a diffusers StableUnCLIPImg2ImgPipeline snapshot (e.g. stable-diffusion-2-1-unclip-small) "
    "with model_index.json and the folders unet/, vae/, text_encoder/, tokenizer/, "
    "image_normalizer/, image_noising_scheduler/ and scheduler/ (image_encoder/ and "
    "feature_extractor/ are not needed); nothing is downloaded"
)


def make_scheduler(kind: str, config: Any) -> Any:
    """A few-step sampler built from a scheduler config (prediction type etc. are kept).

    Parameters
    ----------
    kind : ``"dpm"`` (DPM-Solver++ multistep), ``"ddim"`` or ``"euler"`` (Euler discrete).
    config : the pipeline's scheduler config.

    Timesteps are spaced ``"trailing"`` so that even one step starts from pure noise (the
    Stable Diffusion 2 default, ``"leading"``, would start 1 step before the end).
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    check_choice(kind, "scheduler", SCHEDULERS)
    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(
            config,
            algorithm_type="dpmsolver++",
            timestep_spacing="trailing",
            final_sigmas_type="zero",
        )
    if kind == "ddim":
        return DDIMScheduler.from_config(config, timestep_spacing="trailing")
    return EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing")


def sd21_scheduler_config() -> Any:
    """Stable Diffusion 2.1's (v-prediction, scaled-linear betas) DDIM scheduler config, the
    base the few-step samplers of :func:`make_scheduler` are built from."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        set_alpha_to_one=False,
        steps_offset=1,
        clip_sample=False,
    ).config


def embed_dim(pipe: Any) -> int:
    """Width of the CLIP image embeddings the pipeline is conditioned on."""
    return int(pipe.image_normalizer.mean.shape[-1])


def image_size(pipe: Any) -> int:
    """Side of the images the pipeline generates."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def _check_compatible(pipe: Any, where: str) -> None:
    cfg = pipe.unet.config
    dim = embed_dim(pipe)
    if cfg.class_embed_type != "projection" or cfg.projection_class_embeddings_input_dim != 2 * dim:
        raise WeightsError(
            f"{where}: the UNet is not an unCLIP UNet for {dim}-d image embeddings (needs "
            f"class_embed_type='projection' with input dim {2 * dim}, has "
            f"{cfg.class_embed_type!r} / {cfg.projection_class_embeddings_input_dim}); expected "
            + _EXPECTED
        )
    if pipe.vae.config.latent_channels != cfg.in_channels:
        raise WeightsError(
            f"{where}: VAE latent channels ({pipe.vae.config.latent_channels}) differ from the "
            f"UNet input channels ({cfg.in_channels}); expected " + _EXPECTED
        )


def check_snapshot(path: str | Path) -> Path:
    """The snapshot directory ``path`` if it has every part a pipeline needs.

    Raises
    ------
    WeightsError
        Naming the directory and what is missing.
    """
    path = Path(path)
    if not path.is_dir():
        raise WeightsError(f"unCLIP directory {str(path)!r} does not exist: expected " + _EXPECTED)
    missing = [p for p in _REQUIRED if not (path / p).exists()]
    if missing:
        raise WeightsError(
            f"unCLIP directory {str(path)!r} lacks {', '.join(missing)}: expected " + _EXPECTED
        )
    return path


def load_unclip_pipeline(
    path: str | Path,
    *,
    scheduler: str = "dpm",
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Any:
    """Load a local Stable unCLIP image-variation snapshot.

    Parameters
    ----------
    path : snapshot directory (see the module docstring for its expected contents).
    scheduler : few-step sampler, one of :data:`SCHEDULERS`.
    device, dtype : where and in which precision to run (float16 on a GPU).

    Returns
    -------
    ``StableUnCLIPImg2ImgPipeline`` without image encoder.

    Raises
    ------
    WeightsError
        When the directory or parts of it are missing, or its models do not fit together.
    ConfigError
        For an unknown ``scheduler``.
    """
    check_choice(scheduler, "scheduler", SCHEDULERS)
    path = check_snapshot(path)
    from diffusers import StableUnCLIPImg2ImgPipeline

    try:
        with warnings.catch_warnings():  # newer diffusers call torch_dtype "dtype"
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(
                str(path),
                local_files_only=True,
                image_encoder=None,
                feature_extractor=None,
                torch_dtype=dtype,
            )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise WeightsError(
            f"could not load the unCLIP pipeline from {str(path)!r} ({err}); expected " + _EXPECTED
        ) from None
    _check_compatible(pipe, f"unCLIP directory {str(path)!r}")
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _open_clip_tokenizer(max_length: int = 77) -> Any:
    """A ``CLIPTokenizer`` built from the BPE merges bundled with open_clip (no download).

    The vocabulary is derived from the merges exactly as CLIP's tokenizer derives it: the 256
    byte symbols, the same with ``</w>``, one entry per merge, then the two special tokens
    (49,408 entries).
    """
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    if not bpe.is_file():
        raise WeightsError(
            f"open_clip's BPE vocabulary {str(bpe)!r} is missing: reinstall open_clip_torch"
        )
    lines = gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(
            json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8"
        )
        (Path(tmp) / "merges.txt").write_text(
            "\n".join(["#version: 0.2", *merges]) + "\n", encoding="utf-8"
        )
        return CLIPTokenizer(
            str(Path(tmp) / "vocab.json"),
            str(Path(tmp) / "merges.txt"),
            model_max_length=max_length,
        )


def build_tiny_unclip_pipeline(seed: int = 0, embed_dim: int = 128, image_size: int = 64) -> Any:
    """A tiny ``StableUnCLIPImg2ImgPipeline`` with random weights, built in code.

    Parameters
    ----------
    seed : seeds the random weights (the global torch RNG is restored afterwards).
    embed_dim : width of the CLIP image embeddings it takes (128 = the "tiny-random"
        embedder's tokens).
    image_size : side of the generated images; a multiple of 16.

    Returns
    -------
    The pipeline (DPM-Solver++ sampler, progress bar off), with a tiny image encoder so that
    ``pipe(image_embeds=...)`` works too.
    """
    from diffusers import DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from transformers import CLIPImageProcessor

    embed_dim = check_number(embed_dim, "embed_dim", minimum=2, integer=True)
    image_size = check_number(image_size, "image_size", minimum=16, integer=True)
    if image_size % 16:
        raise ConfigError(f"'image_size' must be a multiple of 16, got {image_size}")
    tokenizer = _open_clip_tokenizer()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        modules = _tiny_modules(tokenizer, embed_dim, image_size)
    finally:
        torch.random.set_rng_state(gen_state)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
        image_noising_scheduler=DDPMScheduler(
            num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"
        ),
        tokenizer=tokenizer,
        scheduler=make_scheduler("dpm", sd21_scheduler_config()),
        **modules,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _tiny_modules(tokenizer: Any, embed_dim: int, image_size: int) -> dict[str, Any]:
    """The tiny pipeline's random-weight networks, drawn from the global torch RNG in a fixed
    order: text encoder, image encoder, VAE, UNet, image normalizer."""
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )

    text_encoder = _tiny_text_encoder(tokenizer)
    image_encoder = _tiny_image_encoder(embed_dim)
    vae = _tiny_vae()
    unet = _tiny_unet(embed_dim, image_size)
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=embed_dim)
    return {
        "text_encoder": text_encoder,
        "image_encoder": image_encoder,
        "vae": vae,
        "unet": unet,
        "image_normalizer": normalizer,
    }


def _tiny_text_encoder(tokenizer: Any) -> Any:
    """A 2-layer, 32-wide CLIP text encoder over the tokenizer's vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()


def _tiny_image_encoder(embed_dim: int) -> Any:
    """A 1-layer CLIP vision encoder projecting to ``embed_dim``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=1,
            projection_dim=embed_dim,
        )
    ).eval()


def _tiny_vae() -> Any:
    """A 3-level AutoencoderKL with 4 latent channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=16,
        layers_per_block=1,
    ).eval()


def _tiny_unet(embed_dim: int, image_size: int) -> Any:
    """A 2-level unCLIP UNet conditioned on ``embed_dim``-d image embeddings."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=image_size // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * embed_dim,
    ).eval()
