"""MindEye's low-level reconstruction metrics: PixCorr, SSIM and 2-way identification.

Computed as in MindEye's evaluation (Scotti et al. 2023, arXiv 2305.18274, following
Ozcelik & VanRullen's Brain-Diffuser protocol):

* both image sets are resized (bilinear, shorter side to 425 px, the size of the NSD stimuli)
  as float images in [0, 1];
* **PixCorr**: Pearson correlation between the flattened RGB pixels of each reconstruction and
  its seen image, averaged over images;
* **SSIM**: skimage's ``structural_similarity`` on the grayscale versions (``rgb2gray``) with
  Gaussian weights (sigma 1.5), population covariance and ``data_range=1``, averaged;
* **2-way identification**: for each reconstruction, the fraction of the other seen images
  whose features correlate less with it than its own seen image does (chance 0.5); the paper
  uses network features, :func:`pixel_two_way` uses the resized pixels.

:func:`shuffled_baseline` gives any of them with the pairing shuffled (no reconstruction paired
with its own image): the level a metric reaches without any image-specific information.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from rt_base.checks import check_number
from rt_base.errors import ConfigError

PAPER_SIZE = 425  # NSD stimuli are 425 x 425


def _as_float(images: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """(N, H, W, 3) uint8 or float in [0, 1] -> (N, 3, H, W) float32 tensor."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ConfigError(
            f"'{name}' must be an (N, H, W, 3) image array (uint8, or float in [0, 1]), got "
            f"shape {tuple(x.shape)}"
        )
    x = x.permute(0, 3, 1, 2)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to ``size`` (bilinear, antialiased, like torchvision's Resize(size))."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    if h <= w:
        shape = (size, int(size * w / h))
    else:
        shape = (int(size * h / w), size)
    return F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)


def _pair(recons, images, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    size = check_number(size, "size", minimum=8, integer=True)
    a, b = _as_float(recons, "recons"), _as_float(images, "images")
    if len(a) != len(b) or len(a) == 0:
        raise ConfigError(
            f"'recons' and 'images' must hold the same number (>= 1) of images, got "
            f"{len(a)} and {len(b)}: pass reconstruction i with seen image i"
        )
    a, b = _resize(a, size), _resize(b, size)
    if a.shape != b.shape:
        raise ConfigError(
            f"'recons' and 'images' have different aspect ratios ({tuple(a.shape[-2:])} vs "
            f"{tuple(b.shape[-2:])} after resizing): crop them the same way"
        )
    return a, b


def _zscore_rows(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1).double()
    x = x - x.mean(1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    return x / torch.where(norm > 0, norm, torch.ones_like(norm))


def pixcorr(recons, images, size: int = PAPER_SIZE) -> float:
    """Mean Pearson correlation of flattened, resized RGB pixels (MindEye's PixCorr).

    Parameters
    ----------
    recons, images : (N, H, W, 3) uint8 or float in [0, 1]; ``recons[i]`` pairs with
        ``images[i]``.
    size : side the shorter edge is resized to (425 in the paper).
    """
    a, b = _pair(recons, images, size)
    return float((_zscore_rows(a) * _zscore_rows(b)).sum(1).mean())


def ssim(recons, images, size: int = PAPER_SIZE) -> float:
    """Mean grayscale SSIM with the paper's settings (Gaussian sigma 1.5, data_range 1).

    Parameters
    ----------
    recons, images : (N, H, W, 3) uint8 or float in [0, 1].
    size : side the shorter edge is resized to (425 in the paper).
    """
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    a, b = _pair(recons, images, size)
    scores = []
    for rec, img in zip(a, b, strict=True):
        rec_g = rgb2gray(rec.permute(1, 2, 0).double().numpy())
        img_g = rgb2gray(img.permute(1, 2, 0).double().numpy())
        scores.append(
            structural_similarity(
                rec_g,
                img_g,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
        )
    return float(np.mean(scores))


def two_way_identification(
    pred_features: np.ndarray | torch.Tensor,
    real_features: np.ndarray | torch.Tensor,
    pred_image: np.ndarray | None = None,
) -> float:
    """2-way identification accuracy from per-image feature vectors (chance 0.5).

    For reconstruction ``j`` of seen image ``k``, every other seen image ``i`` is a trial, won
    when ``corr(real_k, pred_j) > corr(real_i, pred_j)``; the result is the mean fraction won.

    Parameters
    ----------
    pred_features : (N, F) features of the reconstructions (anything flattened to rows).
    real_features : (M, F) features of distinct seen images, M >= 2.
    pred_image : (N,) row of ``real_features`` each reconstruction shows; None: row ``j``
        (one reconstruction per image, the papers' case, N == M).  Several reconstructions
        of one image (single trials of a repeated image) each compete against the *other*
        images only.
    """
    p, r = torch.as_tensor(np.asarray(pred_features)), torch.as_tensor(np.asarray(real_features))
    if pred_image is None:
        if len(p) != len(r):
            raise ConfigError(
                f"2-way identification needs the same number of reconstructions and seen images "
                f"(or 'pred_image'), got {len(p)} and {len(r)}"
            )
        pred_image = np.arange(len(p))
    pred_image = np.asarray(pred_image, dtype=np.int64).reshape(-1)
    if len(r) < 2 or len(p) == 0 or len(pred_image) != len(p):
        raise ConfigError(
            f"2-way identification needs >= 2 seen images and one image row per "
            f"reconstruction, got {len(r)} images, {len(p)} reconstructions and "
            f"{len(pred_image)} rows"
        )
    if pred_image.min() < 0 or pred_image.max() >= len(r):
        raise ConfigError(f"'pred_image' rows must lie in [0, {len(r)})")
    corr = _zscore_rows(r) @ _zscore_rows(p).T  # [i, j] = corr(real_i, pred_j)
    own = corr[torch.from_numpy(pred_image), torch.arange(len(p))]
    wins = (corr < own[None, :]).sum(0).double()  # the own image never beats itself
    return float(wins.mean() / (len(r) - 1))


def pixel_two_way(recons, images, size: int = PAPER_SIZE) -> float:
    """2-way identification on the resized RGB pixels."""
    a, b = _pair(recons, images, size)
    return two_way_identification(a, b)


LOW_LEVEL_METRICS: dict[str, Callable[..., float]] = {
    "PixCorr": pixcorr,
    "SSIM": ssim,
    "PixelID": pixel_two_way,
}


def low_level_metrics(recons, images, size: int = PAPER_SIZE) -> dict[str, float]:
    """All of :data:`LOW_LEVEL_METRICS` (PixelID needs N >= 2)."""
    out = {}
    for name, fn in LOW_LEVEL_METRICS.items():
        if name == "PixelID" and len(recons) < 2:
            continue
        out[name] = fn(recons, images, size=size)
    return out


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def shuffled_baseline(
    metric: Callable[..., float] | str,
    recons,
    images,
    *,
    n_shuffles: int = 10,
    seed: int = 0,
    **kwargs,
) -> dict[str, float]:
    """A metric with the reconstruction-to-image pairing shuffled.

    Each shuffle pairs reconstruction ``i`` with seen image ``perm[i] != i``; what a decoder
    scores there it scores without any information about the particular image (e.g. the
    average layout and colours of the stimulus set).

    Parameters
    ----------
    metric : a function ``(recons, images, **kwargs) -> float`` or a name in
        :data:`LOW_LEVEL_METRICS`.
    recons, images : (N, H, W, 3), N >= 2.
    n_shuffles : number of random derangements.
    seed : seeds the derangements.

    Returns
    -------
    ``{"matched", "mean", "std"}``: the metric on the true pairing, and the mean and std over
    the shuffles.
    """
    if isinstance(metric, str):
        if metric not in LOW_LEVEL_METRICS:
            raise ConfigError(
                f"'metric' must be one of {sorted(LOW_LEVEL_METRICS)} or a function, got {metric!r}"
            )
        metric = LOW_LEVEL_METRICS[metric]
    n_shuffles = check_number(n_shuffles, "n_shuffles", minimum=1, integer=True)
    images = np.asarray(images)
    if len(images) < 2:
        raise ConfigError(f"a shuffled pairing needs >= 2 images, got {len(images)}")
    rng = np.random.default_rng(seed)
    values = [
        metric(recons, images[_derangement(len(images), rng)], **kwargs) for _ in range(n_shuffles)
    ]
    return {
        "matched": float(metric(recons, images, **kwargs)),
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
    }
