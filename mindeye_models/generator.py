"""Image generation from CLIP image embeddings with a Stable unCLIP image-variation pipeline.

MindEye (Scotti et al. 2023, arXiv 2305.18274) turns the diffusion prior's CLIP image
embeddings into a picture with an image-variation diffusion model, starting (img2img) from the
low-level head's blurry image with a strength of 0.85.  The pipelines are built or loaded by
:mod:`mindeye_models.unclip_pipeline`.

:func:`reconstruct` runs the denoising loop of the pipeline, optionally from an init image
(img2img: the init latents are noised to the ``strength`` point of the schedule).  Its loop
reproduces ``pipe(image_embeds=..., prompt="")`` exactly when no init image is given, and unlike
``pipe(...)`` it needs no image encoder (only ``image_embeds`` are ever passed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mindeye_models.images import resize_square
from mindeye_models.unclip_pipeline import embed_dim, image_size
from rt_base.checks import check_number
from rt_base.errors import ConfigError


def _prompt_embeds(pipe: Any, device: torch.device) -> torch.Tensor:
    """(1, L, C) text-encoder states of the empty prompt, cached on the pipeline."""
    cache = pipe.__dict__.setdefault("_mindeye_prompt_cache", {})
    key = (str(device), pipe.text_encoder.dtype)
    if key not in cache:
        embeds, _ = pipe.encode_prompt("", device, 1, False)
        cache[key] = embeds
    return cache[key]


def _init_latents(pipe: Any, init_image: np.ndarray, n: int) -> torch.Tensor:
    """(n, H, W, 3) or (H, W, 3) uint8 -> (n, 4, h, w) scaled VAE latents (posterior means)."""
    img = np.asarray(init_image)
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[-1] != 3 or len(img) not in (1, n):
        raise ConfigError(
            f"'init_image' must be an (H, W, 3) or ({n}, H, W, 3) uint8 array, got shape "
            f"{img.shape}: pass one blurry image per embedding"
        )
    vae = pipe.vae
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(0, 3, 1, 2).float() / 127.5 - 1
    size = image_size(pipe)
    x = resize_square(x, size).to(vae.device, vae.dtype)
    z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    return z.expand(n, -1, -1, -1) if len(z) == 1 else z


@torch.no_grad()
def reconstruct(
    pipe: Any,
    image_embeds: torch.Tensor | np.ndarray,
    init_image: np.ndarray | None = None,
    *,
    steps: int = 4,
    strength: float = 0.85,
    guidance: float = 1.0,
    noise_level: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Images from CLIP image embeddings, optionally img2img from an init image.

    Parameters
    ----------
    pipe : a StableUnCLIPImg2ImgPipeline
        (:func:`~mindeye_models.unclip_pipeline.load_unclip_pipeline`,
        :func:`~mindeye_models.unclip_pipeline.build_tiny_unclip_pipeline`).
    image_embeds : (B, E) or (E,) CLIP image embeddings, ``E = embed_dim(pipe)``.
    init_image : None, or (H, W, 3) / (B, H, W, 3) uint8 images to start from (the low-level
        head's blurry reconstruction); resized to the pipeline's image size.
    steps : sampler steps of the full schedule; with an init image only the last
        ``round(steps * strength)`` (at least 1) of them are run.
    strength : how much of the schedule the init image is noised into, in (0, 1]; MindEye
        uses 0.85.  Ignored without an init image.
    guidance : classifier-free guidance scale against zero image embeddings; 1 or less runs
        the conditional pass only (half the UNet work).
    noise_level : noise added to the image embeddings (0 .. 999), unCLIP's variation knob.
    seed : seeds every random draw (embedding noise, then the initial latents).

    Returns
    -------
    (B, S, S, 3) uint8 images, ``S = image_size(pipe)``.
    """
    steps = check_number(steps, "steps", minimum=1, maximum=1000, integer=True)
    strength = float(check_number(strength, "strength", minimum=0, maximum=1, strict_min=True))
    guidance = float(check_number(guidance, "guidance", minimum=0))
    noise_level = check_number(noise_level, "noise_level", minimum=0, maximum=999, integer=True)
    embeds = _check_embeds(pipe, image_embeds)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    cfg = guidance > 1.0
    prompt, cond = _conditioning(pipe, embeds, noise_level, generator, cfg)
    latents, timesteps = _start_latents(pipe, len(embeds), steps, strength, init_image, generator)
    latents = _denoise(pipe, latents, timesteps, prompt, cond, guidance, generator)
    return _decode(pipe, latents)


def _check_embeds(pipe: Any, image_embeds: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(B, E) tensor of the image embeddings; raises ConfigError on the wrong shape."""
    embeds = torch.as_tensor(
        np.asarray(image_embeds) if not torch.is_tensor(image_embeds) else image_embeds
    )
    if embeds.ndim == 1:
        embeds = embeds[None]
    dim = embed_dim(pipe)
    if embeds.ndim != 2 or embeds.shape[1] != dim:
        raise ConfigError(
            f"'image_embeds' must be a (batch, {dim}) tensor for this pipeline, got shape "
            f"{tuple(embeds.shape)}: pass the CLIP image embedding (class token) per image"
        )
    return embeds


def _conditioning(
    pipe: Any, embeds: torch.Tensor, noise_level: int, generator: torch.Generator, cfg: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's text states (empty prompt) and class labels (noised image embeddings),
    doubled with zero embeddings for classifier-free guidance when ``cfg``."""
    device, dtype = pipe.unet.device, pipe.unet.dtype
    prompt = _prompt_embeds(pipe, device).to(dtype).expand(len(embeds), -1, -1)
    cond = pipe.noise_image_embeddings(
        embeds.to(device, dtype), noise_level=noise_level, generator=generator
    )
    if cfg:
        prompt = torch.cat([prompt, prompt])
        cond = torch.cat([torch.zeros_like(cond), cond])
    return prompt, cond


def _start_latents(
    pipe: Any,
    n: int,
    steps: int,
    strength: float,
    init_image: np.ndarray | None,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The initial latents and the timesteps to run: pure noise over the whole schedule, or
    the init image's latents noised to the ``strength`` point and the rest of the schedule."""
    from diffusers.utils.torch_utils import randn_tensor

    unet, scheduler = pipe.unet, pipe.scheduler
    device, dtype = unet.device, unet.dtype
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    size = image_size(pipe) // pipe.vae_scale_factor
    shape = (n, unet.config.in_channels, size, size)
    if init_image is None:
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        return latents * scheduler.init_noise_sigma, timesteps
    run = max(1, min(steps, round(steps * strength)))
    start = (steps - run) * scheduler.order
    timesteps = timesteps[start:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    z0 = _init_latents(pipe, init_image, n).to(dtype)
    noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    return scheduler.add_noise(z0, noise, timesteps[:1].repeat(n)), timesteps


def _denoise(
    pipe: Any,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt: torch.Tensor,
    cond: torch.Tensor,
    guidance: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The sampler loop over ``timesteps`` (classifier-free guidance when ``guidance > 1``)."""
    unet, scheduler = pipe.unet, pipe.scheduler
    cfg = guidance > 1.0
    extra = pipe.prepare_extra_step_kwargs(generator, 0.0)
    for t in timesteps:
        x = torch.cat([latents, latents]) if cfg else latents
        x = scheduler.scale_model_input(x, t)
        pred = unet(x, t, encoder_hidden_states=prompt, class_labels=cond, return_dict=False)[0]
        if cfg:
            uncond, text = pred.chunk(2)
            pred = uncond + guidance * (text - uncond)
        latents = scheduler.step(pred, t, latents, **extra, return_dict=False)[0]
    return latents


def _decode(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    """(B, S, S, 3) uint8 images of the final latents."""
    vae = pipe.vae
    image = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    image = ((image.float() + 1) / 2).clamp(0, 1)
    return (image * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
