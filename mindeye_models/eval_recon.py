"""The papers' reconstruction metrics, each with its chance level.

Low-level: PixCorr and SSIM at 425 px (:mod:`mindeye_models.metrics`, the papers' settings).
High-level: 2-way identification from AlexNet layers 2 and 5, InceptionV3 and CLIP features
(chance 50 %), and the mean correlation distance of EfficientNet-B1 and SwAV features between
each reconstruction and its seen image (lower is better); the networks are
:mod:`mindeye_models.eval_networks`, each loaded from its local weights file, and a metric whose
file is absent is reported as not computed.

Several reconstructions may show one image (single trials of a repeated test image): the seen
images are passed once each, and in 2-way identification
(:func:`mindeye_models.metrics.two_way_identification`) a reconstruction competes only against
*other* images (with one reconstruction per image, exactly the papers' definition).  The chance level of
PixCorr, SSIM and the distances is the metric with each reconstruction paired with a random
other seen image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mindeye_models import metrics
from mindeye_models.eval_networks import NETWORKS, FeatureNetwork, weights_file
from rt_base.checks import check_number
from rt_base.errors import ConfigError

#: the table's columns, in the papers' order, and whether higher is better
RECON_METRICS: dict[str, bool] = {
    "PixCorr": True,
    "SSIM": True,
    "AlexNet(2)": True,
    "AlexNet(5)": True,
    "InceptionV3": True,
    "CLIP": True,
    "EffNet-B": False,
    "SwAV": False,
}
#: features scored by 2-way identification; the others by correlation distance
IDENTIFICATION = ("AlexNet(2)", "AlexNet(5)", "InceptionV3", "CLIP")
#: pairs per chunk in PixCorr / SSIM (bounds the memory of 425 px float images)
CHUNK = 16


def correlation_distance(pred: np.ndarray, real: np.ndarray) -> float:
    """Mean correlation distance (1 - Pearson r) of paired rows (scipy's definition)."""
    from scipy.spatial.distance import correlation

    return float(np.mean([correlation(p, r) for p, r in zip(pred, real, strict=True)]))


def other_images(pred_image: np.ndarray, n_images: int, seed: int = 0) -> np.ndarray:
    """For each reconstruction a random seen image that is not its own (the chance pairing)."""
    rng = np.random.default_rng(seed)
    shift = rng.integers(1, n_images, size=len(pred_image))
    return (np.asarray(pred_image) + shift) % n_images


def _chunked(
    fn: Callable[..., float], recons: np.ndarray, seen: np.ndarray, rows: np.ndarray, size: int
) -> float:
    """Mean of ``fn`` over pairs (recons[j], seen[rows[j]]), computed CHUNK pairs at a time."""
    total = 0.0
    for i in range(0, len(recons), CHUNK):
        part = slice(i, i + CHUNK)
        n = len(recons[part])
        total += n * fn(recons[part], seen[rows[part]], size=size)
    return total / len(recons)


def _entry(value: float, chance: float, how: str) -> dict:
    return {"computed": True, "value": float(value), "chance": float(chance), "chance_how": how}


def _absent(network: str, weights_dir: str | Path | None) -> dict:
    spec = NETWORKS[network]
    where = ": no --eval-weights folder given" if weights_dir is None else f" not in {weights_dir}"
    return {
        "computed": False,
        "reason": f"{spec.name}: weights file {spec.files[0]!r}{where}",
    }


def reconstruction_table(
    recons: np.ndarray,
    seen: np.ndarray,
    recon_image: np.ndarray,
    *,
    weights_dir: str | Path | None = None,
    device: str = "cpu",
    size: int = metrics.PAPER_SIZE,
    seed: int = 0,
    clip_embedder: str = "ViT-L-14",
    log: Callable[[str], None] | None = None,
) -> dict:
    """Every metric of :data:`RECON_METRICS` for the reconstructions, with chance levels.

    Parameters
    ----------
    recons : (n, H, W, 3) uint8 reconstructions.
    seen : (m, H', W', 3) uint8 distinct seen images, m >= 2.
    recon_image : (n,) row of ``seen`` each reconstruction shows.
    weights_dir : folder of the networks' weights files (:data:`NETWORKS`); None: only
        PixCorr and SSIM are computed.
    device : torch device of the networks.
    size : side (px) of PixCorr and SSIM (425 in the papers).
    seed : seeds the chance pairing.
    clip_embedder : CLIP geometry (``ViT-L-14``; tests use a smaller one).
    log : progress lines.

    Returns
    -------
    ``{"reconstructions", "images", "size", "metrics": {name: {"computed": True, "value",
    "chance", "chance_how"} | {"computed": False, "reason"}}}``.
    """
    size = check_number(size, "size", minimum=8, integer=True)
    recons, seen = np.asarray(recons), np.asarray(seen)
    recon_image = np.asarray(recon_image, np.int64).reshape(-1)
    if len(seen) < 2 or len(recon_image) != len(recons) or len(recons) == 0:
        raise ConfigError(
            f"the reconstruction table needs >= 1 reconstruction, >= 2 distinct seen images and "
            f"one image row per reconstruction, got {len(recons)}, {len(seen)} and "
            f"{len(recon_image)}"
        )
    if recon_image.min() < 0 or recon_image.max() >= len(seen):
        raise ConfigError(f"'recon_image' rows must lie in [0, {len(seen)})")
    say = log or (lambda _line: None)
    other = other_images(recon_image, len(seen), seed)
    table: dict[str, dict] = {}
    for name, fn in (("PixCorr", metrics.pixcorr), ("SSIM", metrics.ssim)):
        say(f"{name} at {size} px ({len(recons)} reconstructions)")
        table[name] = _entry(
            _chunked(fn, recons, seen, recon_image, size),
            _chunked(fn, recons, seen, other, size),
            "paired with another seen image",
        )
    for network, spec in NETWORKS.items():
        path = weights_file(network, weights_dir)
        if path is None:
            table.update({name: _absent(network, weights_dir) for name in spec.nodes})
            continue
        say(f"{spec.name}: features of {len(recons)} reconstructions and {len(seen)} images")
        net = FeatureNetwork(network, path, device=device, clip_embedder=clip_embedder)
        pred, real = net.features(recons), net.features(seen)
        for name in spec.nodes:
            if name in IDENTIFICATION:
                value = metrics.two_way_identification(pred[name], real[name], recon_image)
                table[name] = _entry(value, 0.5, "2-way: one of two images")
            else:
                table[name] = _entry(
                    correlation_distance(pred[name], real[name][recon_image]),
                    correlation_distance(pred[name], real[name][other]),
                    "paired with another seen image",
                )
        del net
    return {
        "reconstructions": int(len(recons)),
        "images": int(len(seen)),
        "size": int(size),
        "metrics": {name: table[name] for name in RECON_METRICS},
    }
