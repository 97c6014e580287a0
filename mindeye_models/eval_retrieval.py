"""The papers' retrieval figures: top-1 both ways among random test samples.

MindEye (Scotti et al. 2023, and MindEye2's final evaluation) scores retrieval so:

* each *draw* takes 300 test images at random (without replacement) with their brain
  predictions; both sides are flattened and L2-normalised, and the cosine similarity matrix
  between them is formed;
* **brain → image** ("image retrieval"): a draw's accuracy is the fraction of brain
  predictions whose most similar image, among the 300, is their own;
  **image → brain** ("brain retrieval"): the fraction of images whose most similar brain
  prediction is their own;
* 30 draws; the figure is the mean, with a normal 95 % interval whose scale is the standard
  deviation of the draws divided by the square root of their number (MindEye1's
  ``Retrieval_Evaluation``).

Single trials: NSD shows each test image up to 3 times.  In a *single-trial* draw each sampled
image is paired with one of its trials chosen at random (the papers' "a random one of the
single-trial samples"); *repetition-averaged* predictions (one per image, from the mean of its
trials' responses) are what the papers' headline table reports.

With fewer test images than the sample size every draw takes them all (N-way retrieval); the
draws then differ only in the trials picked, and the interval is instead a binomial
(Clopper-Pearson) interval over the N images, which is what the uncertainty then is.
"""

from __future__ import annotations

import numpy as np
import torch

from mindeye_models.losses import flat_normalize
from rt_base.checks import check_number
from rt_base.errors import ConfigError

#: test images per draw and draws, as in MindEye's evaluation
SAMPLE_SIZE = 300
DRAWS = 30
DIRECTIONS = ("brain_to_image", "image_to_brain")


def top1_both_ways(brain: torch.Tensor, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Which pairs are retrieved at top-1, in each direction.

    Parameters
    ----------
    brain, images : (n, ...) predictions and image embeddings; row ``i`` of each is pair ``i``.

    Returns
    -------
    brain_to_image, image_to_brain : (n,) bool arrays; ``brain_to_image[i]``: the image most
        similar to brain prediction ``i`` is image ``i``.  A tie with another candidate is
        not a hit (identical candidates cannot be told apart).
    """
    if len(brain) != len(images) or len(brain) < 1:
        raise ConfigError(
            f"retrieval needs as many brain predictions as images (>= 1), got {len(brain)} "
            f"and {len(images)}"
        )
    sims = flat_normalize(torch.as_tensor(brain)) @ flat_normalize(torch.as_tensor(images)).T
    own = sims.diagonal()
    fwd = (sims > own[:, None]).sum(1) == 0  # no image beats the own one
    bwd = (sims > own[None, :]).sum(0) == 0  # no brain prediction beats the own one
    unique_fwd = (sims == own[:, None]).sum(1) == 1
    unique_bwd = (sims == own[None, :]).sum(0) == 1
    return (fwd & unique_fwd).numpy(), (bwd & unique_bwd).numpy()


def _group_trials(trial_image: np.ndarray, n_images: int) -> list[np.ndarray]:
    groups = [np.flatnonzero(trial_image == i) for i in range(n_images)]
    empty = [i for i, g in enumerate(groups) if g.size == 0]
    if empty:
        raise ConfigError(
            f"every image must have at least one trial; images {empty[:5]} have none: pass "
            "only the images that were shown"
        )
    return groups


def _interval(values: np.ndarray, n_way: bool, n_images: int) -> tuple[float, float, str]:
    from scipy import stats

    mean = float(np.mean(values))
    if n_way:
        hits = int(round(mean * n_images))
        ci = stats.binomtest(hits, n_images).proportion_ci(0.95, method="exact")
        return float(ci.low), float(ci.high), "binomial over images"
    scale = float(np.std(values)) / np.sqrt(len(values))
    if scale == 0:
        return mean, mean, "normal over draws"
    low, high = stats.norm.interval(0.95, loc=mean, scale=scale)
    return float(low), float(high), "normal over draws"


def retrieval_accuracy(
    brain: np.ndarray | torch.Tensor,
    images: np.ndarray | torch.Tensor,
    trial_image: np.ndarray | None = None,
    *,
    sample_size: int = SAMPLE_SIZE,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict:
    """Top-1 retrieval both ways, MindEye's protocol (see the module).

    Parameters
    ----------
    brain : (n_trials, ...) brain predictions (e.g. projected tokens).
    images : (n_images, ...) embeddings of the distinct test images, in the same space.
    trial_image : (n_trials,) row of ``images`` each trial saw; None: trial ``i`` saw image
        ``i`` (repetition-averaged predictions, one per image).
    sample_size : images per draw (300); fewer images than this: all of them (N-way).
    draws : number of draws (30).
    seed : seeds the draws.

    Returns
    -------
    ``{"ways", "draws", "trials", "images", "chance", "brain_to_image": {"mean", "ci_low",
    "ci_high", "interval"}, "image_to_brain": {...}}`` (fractions in [0, 1]).
    """
    brain, images = torch.as_tensor(np.asarray(brain)), torch.as_tensor(np.asarray(images))
    n_images = len(images)
    if trial_image is None:
        trial_image = np.arange(len(brain))
    trial_image = np.asarray(trial_image, dtype=np.int64).reshape(-1)
    if len(trial_image) != len(brain):
        raise ConfigError(
            f"'trial_image' must give one image row per trial ({len(brain)}), got "
            f"{len(trial_image)}"
        )
    if n_images < 2 or trial_image.min(initial=0) < 0 or trial_image.max(initial=0) >= n_images:
        raise ConfigError(
            f"retrieval needs >= 2 images and trial images in [0, {n_images}), got "
            f"{n_images} images and rows {trial_image.min(initial=0)}..{trial_image.max(initial=0)}"
        )
    sample_size = check_number(sample_size, "sample_size", minimum=2, integer=True)
    draws = check_number(draws, "draws", minimum=1, integer=True)
    groups = _group_trials(trial_image, n_images)
    ways = min(sample_size, n_images)
    rng = np.random.default_rng(seed)
    scores = {d: [] for d in DIRECTIONS}
    for _ in range(draws):
        picked = np.sort(rng.choice(n_images, size=ways, replace=False))
        trials = np.array([rng.choice(groups[i]) for i in picked])
        fwd, bwd = top1_both_ways(brain[torch.from_numpy(trials)], images[picked])
        scores["brain_to_image"].append(fwd.mean())
        scores["image_to_brain"].append(bwd.mean())
    n_way = ways == n_images
    out: dict = {
        "ways": int(ways),
        "draws": int(draws),
        "trials": int(len(brain)),
        "images": int(n_images),
        "chance": 1.0 / ways,
    }
    for direction, values in scores.items():
        values = np.asarray(values, float)
        low, high, how = _interval(values, n_way, n_images)
        out[direction] = {
            "mean": float(values.mean()),
            "ci_low": low,
            "ci_high": high,
            "interval": how,
        }
    return out


def repetition_average(
    responses: np.ndarray, image_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average the responses of each image's repetitions (MindEye averages the voxels of a
    test image's trials before the model).

    Parameters
    ----------
    responses : (n_trials, V) responses.
    image_ids : (n_trials,) image seen on each trial.

    Returns
    -------
    means : (n_images, V) float32, one row per distinct image (sorted by id).
    ids : (n_images,) the images.
    counts : (n_images,) trials averaged into each row.
    """
    responses = np.asarray(responses, np.float32)
    image_ids = np.asarray(image_ids).reshape(-1)
    if responses.ndim != 2 or len(responses) != len(image_ids):
        raise ConfigError(
            f"'responses' must be (n_trials, V) with one image id per trial, got shape "
            f"{responses.shape} and {len(image_ids)} ids"
        )
    ids, inverse, counts = np.unique(image_ids, return_inverse=True, return_counts=True)
    sums = np.zeros((len(ids), responses.shape[1]), np.float64)
    np.add.at(sums, inverse, responses)
    return (sums / counts[:, None]).astype(np.float32), ids, counts
