"""The per-trial reconstruction the reconstruct stage runs, and the generator of ``full`` mode.

Modes (:data:`mindeye_models.recon_options.RECON_MODES`): ``lowlevel`` draws the decoded
low-level latents (a blurry image); ``full`` also samples CLIP tokens with the diffusion prior
and hands their class token (the CLIP image embedding) to a Stable unCLIP generator, img2img
from the blurry image.  The models come from a reconstruction bundle
(:mod:`mindeye_models.recon_bundle`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mindeye_models.generator import reconstruct
from mindeye_models.recon_bundle import ReconBundle
from mindeye_models.recon_options import ReconOptions, resolve_mode
from mindeye_models.unclip_pipeline import build_tiny_unclip_pipeline, load_unclip_pipeline
from mindeye_models.unclip_pipeline import embed_dim as pipe_embed_dim
from rt_base.errors import WeightsError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_generator(generator: str, *, embed_dim: int, device: str, dtype: str, seed: int = 0):
    """The image generator of ``full`` mode.

    Parameters
    ----------
    generator : a local Stable unCLIP snapshot directory, or ``"tiny-random"`` for a tiny
        pipeline with random weights (exercises the path; its images carry no content).
    embed_dim : width of the CLIP image embeddings the prior produces (the class token).
    device, dtype : where and in which precision (``float32``, ``float16``, ``bfloat16``) the
        generator runs.
    seed : seeds the tiny pipeline's random weights.

    Raises
    ------
    WeightsError
        Missing or incompatible snapshot, or one conditioned on another embedding width.
    """
    if generator == "tiny-random":
        pipe = build_tiny_unclip_pipeline(seed=seed, embed_dim=embed_dim).to(device)
        if dtype != "float32":
            pipe = pipe.to(dtype=DTYPES[dtype])
    else:
        pipe = load_unclip_pipeline(generator, device=device, dtype=DTYPES[dtype])
    if pipe_embed_dim(pipe) != embed_dim:
        raise WeightsError(
            f"generator {generator!r} takes {pipe_embed_dim(pipe)}-d image embeddings but the "
            f"prior produces {embed_dim}-d ones: use a Stable unCLIP snapshot conditioned on the "
            "checkpoint's CLIP (ViT-L/14: stable-diffusion-2-1-unclip-small)"
        )
    return pipe


@dataclass(frozen=True)
class ReconstructionOutput:
    """What :class:`Reconstructor` returns for one trial.

    Attributes
    ----------
    image : (S, S, 3) uint8 array
        The reconstruction: the generated image in ``full`` mode, the blurry image in
        ``lowlevel`` mode.
    blurry : (s, s, 3) uint8 array or None
        The low-level (blurry) image the generator started from; ``full`` mode only (in
        ``lowlevel`` mode it is ``image``).
    timings_ms : dict of str to float
        Milliseconds per part: ``lowlevel``, and in ``full`` mode ``prior`` and ``generator``.
    """

    image: np.ndarray
    blurry: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class Reconstructor:
    """Reconstructs one trial at a time: blurry image, and in ``full`` mode a generated one.

    Parameters
    ----------
    bundle : the checkpoint's :class:`~mindeye_models.recon_bundle.ReconBundle`; it must hold
        the ``lowlevel`` part, and for ``full`` mode the ``prior``.
    options : :class:`~mindeye_models.recon_options.ReconOptions`.
    pipe : the generator pipeline (``full`` mode; see :func:`load_generator`).

    Raises
    ------
    ConfigError
        ``full`` mode without a generator.
    WeightsError
        A bundle without a part the mode needs.
    """

    def __init__(self, bundle: ReconBundle, options: ReconOptions, pipe: Any = None) -> None:
        if pipe is None:
            resolve_mode(options.mode, None)  # full mode without a generator is refused there
        full = options.mode == "full"
        bundle.require("lowlevel", *(("prior",) if full else ()))
        self.options = options
        self.bundle = bundle.to(options.device)
        # the prior and the head stay in float32 (small); the generator runs in options.dtype
        self.pipe = pipe if full else None

    @torch.no_grad()
    def __call__(
        self, tokens: np.ndarray, response: np.ndarray, number: int
    ) -> ReconstructionOutput:
        """Reconstruct trial ``number`` from its backbone ``tokens`` (T, D) and ``response`` (V,).

        The generator's noise is seeded with ``options.seed + number``, so a replay reproduces
        each trial's images.
        """
        opt = self.options
        dev = torch.device(opt.device)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        x = torch.from_numpy(np.asarray(response, np.float32)).reshape(1, -1).to(dev)
        blurry = self.bundle.blurry(x)[0]
        sync()
        t1 = time.perf_counter()
        ms = {"lowlevel": 1e3 * (t1 - t0)}
        if self.pipe is None:
            return ReconstructionOutput(image=blurry, timings_ms=ms)
        seed = opt.seed + int(number)
        cond = torch.from_numpy(np.asarray(tokens, np.float32))[None].to(dev)
        g = torch.Generator().manual_seed(seed)
        clip = self.bundle.prior.sample(
            cond, steps=opt.prior_steps, guidance=opt.prior_guidance, generator=g
        )
        sync()
        t2 = time.perf_counter()
        image = reconstruct(
            self.pipe, clip[:, 0], blurry, steps=opt.steps, strength=opt.strength, seed=seed
        )[0]
        sync()
        ms.update(prior=1e3 * (t2 - t1), generator=1e3 * (time.perf_counter() - t2))
        return ReconstructionOutput(image=image, blurry=blurry, timings_ms=ms)
