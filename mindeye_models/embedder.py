"""Image embedders: CLIP image tokens through open_clip.

MindEye1 regresses voxels onto the CLIP ViT-L/14 image tokens of the last layer (the 257 tokens,
class token first, after the post-layernorm and the visual projection: 257 x 768).  MindEye2
uses OpenCLIP ViT-bigG/14's 256 patch tokens after the post-layernorm, class token dropped and
not projected (256 x 1664: ``tokens="patches"``).  With a local weights file the real model is
used (built with the geometry below, then ``load_state_dict``; nothing is downloaded).  With none (no model hub is reachable at a
scanner console, nor here) a small open_clip ViT with deterministic random weights stands in:
same code path, fewer and narrower tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rt_base.checks import check_choice
from rt_base.errors import ConfigError, WeightsError
from rt_base.hashing import array_sha256, cache_key

_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's image normalization
_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class EmbedderConfig:
    """Geometry of an open_clip vision tower and which of its tokens are the targets.

    ``tokens="all"``: every token (class first) after ``ln_post`` and the projection,
    ``(patches + 1, output_dim)``; ``tokens="patches"``: the patch tokens after ``ln_post``,
    not projected, ``(patches, width)``.
    """

    name: str
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    output_dim: int
    seed: int = 0
    mlp_ratio: float = 4.0
    tokens: str = "all"

    def __post_init__(self) -> None:
        check_choice(self.tokens, "tokens", ["all", "patches"])

    @property
    def n_tokens(self) -> int:
        patches = (self.image_size // self.patch_size) ** 2
        return patches + 1 if self.tokens == "all" else patches

    @property
    def token_shape(self) -> tuple[int, int]:
        return (self.n_tokens, self.output_dim if self.tokens == "all" else self.width)


EMBEDDERS: dict[str, EmbedderConfig] = {
    # The paper's target space: 257 x 768.
    "ViT-L-14": EmbedderConfig("ViT-L-14", 224, 14, 1024, 24, 16, 768),
    # MindEye2's target space: 256 x 1664 (open_clip's ViT-bigG-14: heads of 104, MLP 8192).
    "ViT-bigG-14": EmbedderConfig(
        "ViT-bigG-14", 224, 14, 1664, 48, 16, 1280, mlp_ratio=8192 / 1664, tokens="patches"
    ),
    # Offline stand-in: 17 x 128 tokens, deterministic random weights, fast on 2 cores.
    "tiny-random": EmbedderConfig("tiny-random", 64, 16, 128, 2, 4, 128),
}


class ImageEmbedder:
    """CLIP image tokens for batches of RGB images.

    Parameters
    ----------
    config : EmbedderConfig
    weights : path to an open_clip / OpenAI CLIP state dict of this architecture (``.bin``,
        ``.pt`` or ``.safetensors``, e.g. ``open_clip_pytorch_model.bin`` of
        laion/CLIP-ViT-bigG-14-laion2B-39B-b160k), or None for deterministic random weights
        (only for ``tiny-random``).
    device : torch device string.
    """

    def __init__(
        self, config: EmbedderConfig, weights: str | Path | None = None, device: str = "cpu"
    ) -> None:
        from open_clip.transformer import VisionTransformer

        self.config = config
        self.device = torch.device(device)
        if weights is None and config.name != "tiny-random":
            raise WeightsError(
                f"embedder {config.name!r} needs its weights: pass --clip-weights PATH to a local "
                f"open_clip {config.name} checkpoint (e.g. open_clip_pytorch_model.bin of "
                "laion/CLIP-ViT-L-14 or laion/CLIP-ViT-bigG-14-laion2B-39B-b160k, or OpenAI's "
                "ViT-L-14.pt state dict); nothing is downloaded"
            )
        if weights is not None and not Path(weights).is_file():  # before building the tower
            raise WeightsError(f"CLIP weights file {str(weights)!r} does not exist")
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(config.seed)
        try:
            self.visual = VisionTransformer(
                image_size=config.image_size,
                patch_size=config.patch_size,
                width=config.width,
                layers=config.layers,
                heads=config.heads,
                mlp_ratio=config.mlp_ratio,
                output_dim=config.output_dim,
            )
        finally:
            torch.random.set_rng_state(gen_state)
        if weights is not None:
            self._load(Path(weights))
        self.weights = None if weights is None else str(weights)
        self.visual.eval().to(self.device)
        self.identity = self._identity()

    def _load(self, path: Path) -> None:
        from mindeye_models.state_dicts import load_exactly, read_state_dict

        if not path.is_file():
            raise WeightsError(f"CLIP weights file {str(path)!r} does not exist")
        state = read_state_dict(path)
        visual = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
        if not visual:
            raise WeightsError(
                f"{str(path)!r} holds no 'visual.*' tensors: expected an open_clip CLIP state dict"
            )
        load_exactly(
            self.visual,
            visual,
            f"the 'visual.*' tensors of {str(path)!r}",
            f"pass the weights of open_clip's {self.config.name}, or pick the embedder that "
            "matches the file",
        )

    def _identity(self) -> str:
        """A short hash that changes when the weights change (for caches)."""
        with torch.no_grad():
            heads = [
                p.detach().float().cpu().numpy().reshape(-1)[:1024]  # 4 KiB of each
                for p in list(self.visual.parameters())[:4]
            ]
        geometry = asdict(self.config)
        for key, default in (("mlp_ratio", 4.0), ("tokens", "all")):  # keys of older caches
            if geometry[key] == default:
                del geometry[key]
        return cache_key(geometry, array_sha256(*heads))

    @property
    def token_shape(self) -> tuple[int, int]:
        return self.config.token_shape

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, S, S) normalized float tensor (bicubic resize)."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got shape {images.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        s = self.config.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_STD).view(1, 3, 1, 1)
        return ((x.clamp(0, 1) - mean) / std).to(self.device)

    @torch.no_grad()
    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """CLIP image tokens.

        Parameters
        ----------
        images : (N, H, W, 3) uint8 array

        Returns
        -------
        tokens : (N, n_tokens, output_dim) float32 array, class token first.
        """
        out = []
        for i in range(0, len(images), batch_size):
            x = self.preprocess(images[i : i + batch_size])
            v = self.visual
            h = v.ln_post(v.transformer(v._embeds(x)))
            if self.config.tokens == "patches":
                h = h[:, 1:]
            elif v.proj is not None:
                h = h @ v.proj
            out.append(h.float().cpu().numpy())
        if not out:
            return np.zeros((0, *self.token_shape), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)


def load_embedder(
    name: str = "tiny-random", weights: str | Path | None = None, device: str = "cpu"
) -> ImageEmbedder:
    """The embedder called ``name`` (see :data:`EMBEDDERS`)."""
    if name not in EMBEDDERS:
        raise ConfigError(f"'embedder' must be one of {sorted(EMBEDDERS)}, got {name!r}")
    return ImageEmbedder(EMBEDDERS[name], weights=weights, device=device)
