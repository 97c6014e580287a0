"""The stimulus image set: distinct 128 x 128 RGB images made from scikit-image's bundled photos.

Nothing is downloaded: the source photos are the ones scikit-image ships inside its package
(those that need the optional ``pooch`` download are skipped).  Each stimulus is one random view
of one source photo: a crop (35-90 % of the short side), a rotation (up to +-25 degrees), a
horizontal flip, and a colour transform (hue rotation, saturation, brightness and contrast;
grey-scale sources are usually tinted with a random two-colour map).  Everything is drawn from
one seeded generator, so a seed gives byte-identical images.

Test images never appear in training, twice over: about half of the test images come from
*held-out* source photos that no training (or filler) image uses, and the others are crops of
shared sources that no training crop of the same source covers by more than ``MAX_COVER`` of
the test crop's area.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from scipy.ndimage import map_coordinates
from skimage.transform import rescale
from tqdm import tqdm

from rt_base.checks import check_number
from rt_base.errors import ConfigError, DatasetError

#: Colour photos bundled with scikit-image.
COLOUR_SOURCES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "retina",
    "cat",
    "colorwheel",
    "stereo_motorcycle",
    "hubble_deep_field",
    "logo",
)
#: Grey-scale images bundled with scikit-image (converted to RGB).
GREY_SOURCES = (
    "camera",
    "moon",
    "coins",
    "horse",
    "brick",
    "grass",
    "gravel",
    "clock",
    "page",
    "text",
    "cell",
    "checkerboard",
    "microaneurysms",
    "shepp_logan_phantom",
)
#: Largest fraction of a shared-source test crop that a training crop may cover.
MAX_COVER = 0.25
#: Side, in pixels, of the largest pyramid level kept per source.
_MAX_SIDE = 512

# RGB <-> YIQ: hue rotates the (I, Q) plane, saturation scales it.
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class StimulusSet:
    """Images with their split and provenance.

    Attributes
    ----------
    images : (N, S, S, 3) uint8 array; row i is image_id i.
    splits : (N,) str array: 'test', 'filler' or 'train' (test first, then filler, then train).
    sources : (N,) str array: the scikit-image photo each image was cut from.
    boxes : (N, 4) float array: crop box (row0, col0, row1, col1) in fractions of the source.
    heldout : the source photos used only by test images.
    """

    images: np.ndarray
    splits: np.ndarray
    sources: np.ndarray
    boxes: np.ndarray
    heldout: tuple[str, ...]

    def ids(self, split: str) -> np.ndarray:
        """(n,) int64 image ids of ``split``."""
        return np.flatnonzero(self.splits == split).astype(np.int64)


def _as_rgb_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == bool:
        x = x.astype(np.float64)
    elif x.dtype == np.uint8:
        x = x / 255.0
    else:
        x = x.astype(np.float64)
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    return x[..., :3]


@cache
def _pyramid(name: str) -> tuple[np.ndarray, ...]:
    """Levels (H, W, 3) float32 of a source: full size (capped at _MAX_SIDE), 1/2, 1/4."""
    import skimage.data

    try:
        img = getattr(skimage.data, name)()
    except Exception as e:  # a missing optional file raises ModuleNotFoundError, OSError, ...
        raise DatasetError(f"scikit-image's bundled image {name!r} cannot be loaded ({e})") from e
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
        img = img[0]
    x = _as_rgb_float(img)
    factor = _MAX_SIDE / max(x.shape[:2])
    if factor < 1:
        x = rescale(x, factor, anti_aliasing=True, channel_axis=2, order=1)
    levels = [x.astype(np.float32)]
    for _ in range(2):
        if min(levels[-1].shape[:2]) < 64:
            break
        levels.append(rescale(levels[-1], 0.5, anti_aliasing=True, channel_axis=2, order=1))
    return tuple(np.clip(lv, 0, 1).astype(np.float32) for lv in levels)


@lru_cache(maxsize=1)
def available_sources() -> tuple[str, ...]:
    """Names of the source photos that load offline here (colour first)."""
    names = []
    for name in COLOUR_SOURCES + GREY_SOURCES:
        try:
            _pyramid(name)
        except DatasetError:
            continue
        names.append(name)
    return tuple(names)


def _is_grey(name: str) -> bool:
    return name in GREY_SOURCES


def _sample_box(rng: np.random.Generator, h: int, w: int, scale: tuple[float, float]) -> np.ndarray:
    """A square crop box (row0, col0, row1, col1) in pixels."""
    side = rng.uniform(*scale) * min(h, w)
    r0 = rng.uniform(0, h - side)
    c0 = rng.uniform(0, w - side)
    return np.array([r0, c0, r0 + side, c0 + side])


def _cover(box: np.ndarray, other: np.ndarray) -> float:
    """Fraction of ``box``'s area covered by ``other``."""
    dr = min(box[2], other[2]) - max(box[0], other[0])
    dc = min(box[3], other[3]) - max(box[1], other[1])
    if dr <= 0 or dc <= 0:
        return 0.0
    return dr * dc / ((box[2] - box[0]) * (box[3] - box[1]))


def _render(name: str, box: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Cut ``box`` from source ``name`` with a random rotation, flip and colour transform."""
    levels = _pyramid(name)
    side = box[2] - box[0]
    level = 0
    while level + 1 < len(levels) and side / 2 ** (level + 1) >= size:
        level += 1
    src = levels[level]
    k = 2.0**level
    step = side / k / size
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]) / k
    theta = np.deg2rad(rng.uniform(-25, 25))
    flip = -1.0 if rng.random() < 0.5 else 1.0
    g = (np.arange(size) - (size - 1) / 2) * step
    rr, cc = np.meshgrid(g, g * flip, indexing="ij")
    cos, sin = np.cos(theta), np.sin(theta)
    rows = centre[0] + cos * rr - sin * cc
    cols = centre[1] + sin * rr + cos * cc
    out = np.stack(
        [map_coordinates(src[..., c], [rows, cols], order=1, mode="reflect") for c in range(3)],
        axis=-1,
    )
    return _colour(out, _is_grey(name), rng)


def _colour(x: np.ndarray, grey: bool, rng: np.random.Generator) -> np.ndarray:
    """Random hue rotation / saturation / brightness / contrast (or a two-colour tint)."""
    if grey and rng.random() < 0.75:
        lum = x.mean(axis=2, keepdims=True)
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        x = a * (1 - lum) + b * lum
    else:
        phi = rng.uniform(-0.6, 0.6)
        sat = rng.uniform(0.6, 1.4)
        rot = np.array(
            [[1, 0, 0], [0, np.cos(phi), -np.sin(phi)], [0, np.sin(phi), np.cos(phi)]]
        ) @ np.diag([1.0, sat, sat])
        x = x @ (_YIQ2RGB @ rot @ _RGB2YIQ).T
    contrast = rng.uniform(0.75, 1.25)
    bright = rng.uniform(-0.1, 0.1)
    m = x.mean()
    x = (x - m) * contrast + m + bright
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _split_sources(
    names: tuple[str, ...], n_test: int, n_heldout: int | None, rng: np.random.Generator
) -> tuple[tuple[str, ...], list[str]]:
    """Source photos held out for test images, and the ones all splits share."""
    if len(names) < 4:
        raise DatasetError(
            f"only {len(names)} of scikit-image's bundled photos load ({list(names)}); need at "
            "least 4: reinstall scikit-image"
        )
    if n_heldout is None:
        n_heldout = max(1, len(names) // 5) if n_test else 0
    n_heldout = int(check_number(n_heldout, "n_heldout", minimum=0, integer=True))
    if n_heldout > len(names) - 2:
        raise ConfigError(
            f"'n_heldout' must leave at least 2 shared sources of {len(names)}, got {n_heldout}"
        )
    order = rng.permutation(len(names))
    heldout = tuple(names[i] for i in sorted(order[:n_heldout]))
    shared = [names[i] for i in sorted(order[n_heldout:])]
    return heldout, shared


def _plan_crops(
    heldout: tuple[str, ...],
    shared: list[str],
    counts: tuple[int, int, int],
    rng: np.random.Generator,
) -> list[tuple[str, str, np.ndarray]]:
    """(split, source, pixel box) of every image, test images first (in random order).

    ``counts`` are the numbers of test, filler and training images.  About half of the test
    crops come from held-out photos; filler and training crops keep away from test crops.
    """
    n_test, n_filler, n_train = counts
    plan: list[tuple[str, str, np.ndarray]] = []
    test_boxes: dict[str, list[np.ndarray]] = {}
    n_test_held = (n_test + 1) // 2 if heldout else 0
    for i in range(n_test):
        if i < n_test_held:
            name = heldout[i % len(heldout)]
            box = _sample_box(rng, *_pyramid(name)[0].shape[:2], (0.35, 0.9))
        else:
            name = shared[rng.integers(len(shared))]
            box = _sample_box(rng, *_pyramid(name)[0].shape[:2], (0.3, 0.45))
            test_boxes.setdefault(name, []).append(box)
        plan.append(("test", name, box))
    for split, count in (("filler", n_filler), ("train", n_train)):
        for _ in range(count):
            for _attempt in range(1000):
                name = shared[rng.integers(len(shared))]
                box = _sample_box(rng, *_pyramid(name)[0].shape[:2], (0.35, 0.9))
                if all(_cover(t, box) <= MAX_COVER for t in test_boxes.get(name, [])):
                    break
            else:  # pragma: no cover - needs absurd numbers of test crops
                raise ConfigError(
                    f"cannot place a {split} crop away from the test crops: lower "
                    f"'n_test_images' ({n_test}) or raise 'n_heldout'"
                )
            plan.append((split, name, box))
    order = np.r_[rng.permutation(n_test), n_test + np.arange(n_filler + n_train)]
    return [plan[i] for i in order]


def make_stimuli(
    n_test: int,
    n_train: int,
    n_filler: int = 0,
    *,
    seed: int = 0,
    size: int = 128,
    n_heldout: int | None = None,
    progress: bool = False,
) -> StimulusSet:
    """Make a seeded stimulus set.

    Parameters
    ----------
    n_test, n_train, n_filler : numbers of test, training and filler images.
    seed : RNG seed; the same seed gives byte-identical images.
    size : side of the square output images in pixels.
    n_heldout : source photos reserved for test images (default: a fifth of the sources, at
        least 1 if there are test images).  About half of the test images come from them.
    progress : show a tqdm progress bar.

    Returns
    -------
    stimuli : StimulusSet with N = n_test + n_filler + n_train images of (size, size, 3).
    """
    n_test = int(check_number(n_test, "n_test_images", minimum=0, integer=True))
    n_train = int(check_number(n_train, "n_train_images", minimum=0, integer=True))
    n_filler = int(check_number(n_filler, "n_filler", minimum=0, integer=True))
    size = int(check_number(size, "size", minimum=16, integer=True))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x57171]))
    heldout, shared = _split_sources(available_sources(), n_test, n_heldout, rng)
    plan = _plan_crops(heldout, shared, (n_test, n_filler, n_train), rng)
    images = np.empty((len(plan), size, size, 3), np.uint8)
    boxes = np.empty((len(plan), 4))
    it = tqdm(enumerate(plan), total=len(plan), desc="stimuli", unit="img", disable=not progress)
    for i, (_, name, box) in it:
        images[i] = _render(name, box, rng, size)
        h, w = _pyramid(name)[0].shape[:2]
        boxes[i] = box / np.array([h, w, h, w])
    return StimulusSet(
        images=images,
        splits=np.array([p[0] for p in plan]),
        sources=np.array([p[1] for p in plan]),
        boxes=boxes,
        heldout=heldout,
    )


def pixel_features(images: np.ndarray, grid: int = 8) -> np.ndarray:
    """Low-level features: block means on a ``grid`` x ``grid`` lattice.

    Parameters
    ----------
    images : (N, S, S, 3) uint8 array, S divisible by ``grid``.

    Returns
    -------
    features : (N, grid * grid * 3) float32 array in [0, 1].
    """
    n, s = images.shape[0], images.shape[1]
    if s % grid or images.shape[2] != s:
        raise ConfigError(f"'images' must be square with a side divisible by {grid}, got {s}")
    b = s // grid
    x = images.reshape(n, grid, b, grid, b, 3).mean(axis=(2, 4), dtype=np.float64)
    return (x / 255.0).reshape(n, -1).astype(np.float32)
