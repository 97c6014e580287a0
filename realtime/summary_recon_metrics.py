"""The session summary's reconstruction metrics: the reconstructions (and blurry images)
recorded in the session folder scored against the images that were seen."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rt_base.checks import check_number

#: Side (px) both image sets are resized to for the reconstruction metrics.  The paper's 425 px
#: takes minutes for a few hundred trials on a small CPU (and GBs of memory); 64 px, the size of
#: the blurry reconstructions, takes seconds.  Recorded as ``recon_metrics["size"]``.
RECON_METRICS_SIZE = 64
#: shuffled pairings drawn for each metric's chance level
RECON_METRICS_SHUFFLES = 10


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) float32 in [0, 1], resized like the metrics do
    (bilinear, antialiased); a non-square image is stretched (the stimuli are square)."""
    import torch

    from mindeye_models.images import resize_square

    x = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    return resize_square(x, size)[0].permute(1, 2, 0).numpy()


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _metric_table(recons: np.ndarray, images: np.ndarray, size: int, n_shuffles: int) -> dict:
    from mindeye_models.metrics import LOW_LEVEL_METRICS, shuffled_baseline

    table = {}
    for name in LOW_LEVEL_METRICS:
        r = shuffled_baseline(name, recons, images, n_shuffles=n_shuffles, size=size)
        table[name] = {
            "matched": round(r["matched"], 4),
            "shuffled_mean": round(r["mean"], 4),
            "shuffled_std": round(r["std"], 4),
        }
    return table


def reconstruction_metrics(
    out: Path,
    session: dict,
    recons: list[dict],
    *,
    size: int = RECON_METRICS_SIZE,
    n_shuffles: int = RECON_METRICS_SHUFFLES,
) -> dict | None:
    """Low-level metrics of the session's reconstructions against the images that were seen.

    PixCorr, SSIM and pixel 2-way identification (:mod:`mindeye_models.metrics`), each with its
    shuffled-pairing baseline: a reconstruction scores above the baseline only with information
    about its particular image.  Every trial counts once, so a test image seen 3 times gives 3
    pairs; in PixelID its other repetitions are "other images" that cannot be beaten (ties),
    which lowers matched and shuffled values alike.

    Parameters
    ----------
    out : the session folder.
    session : its ``config.json`` (``"dataset"`` locates the seen images).
    recons : rows of ``recons.tsv``.
    size : side (px) that reconstructions and seen images are resized to before scoring.
    n_shuffles : shuffled pairings for the baselines.

    Returns
    -------
    None with fewer than 2 reconstructions whose image is known and saved, otherwise
    ``{"trials", "size", "n_shuffles", "seconds", "recon": {metric: {"matched",
    "shuffled_mean", "shuffled_std"}}}`` plus ``"blurry"`` and ``"blurry_trials"`` when the
    blurry images were saved ("full" mode).
    """
    from replay_data.dataset_reader import ReplayDataset

    size = check_number(size, "size", minimum=8, integer=True)
    n_shuffles = check_number(n_shuffles, "n_shuffles", minimum=1, integer=True)
    t0 = time.perf_counter()
    stimuli = ReplayDataset.open(session["dataset"]).stimuli()
    pairs = []  # (row, image id) of the scorable trials
    for row in recons:
        try:
            image_id = int(row["image_id"])
        except (TypeError, ValueError):
            continue  # no ground truth for this trial
        if 0 <= image_id < len(stimuli) and (out / row["recon_file"]).is_file():
            pairs.append((row, image_id))
    if len(pairs) < 2:
        return None
    seen = {i: _square(stimuli[i], size) for i in {i for _, i in pairs}}
    result: dict = {"trials": len(pairs), "size": int(size), "n_shuffles": int(n_shuffles)}
    result["recon"] = _metric_table(
        np.stack([_square(_load_png(out / row["recon_file"]), size) for row, _ in pairs]),
        np.stack([seen[i] for _, i in pairs]),
        size,
        n_shuffles,
    )
    blurry = [
        (r, i) for r, i in pairs if r.get("blurry_file") and (out / r["blurry_file"]).is_file()
    ]
    if len(blurry) >= 2:
        result["blurry_trials"] = len(blurry)
        result["blurry"] = _metric_table(
            np.stack([_square(_load_png(out / row["blurry_file"]), size) for row, _ in blurry]),
            np.stack([seen[i] for _, i in blurry]),
            size,
            n_shuffles,
        )
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result
