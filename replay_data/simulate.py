"""The simulated subject: NSD-like runs generated from a known (hidden) encoding model.

Geometry follows NSD's 1.8 mm functional space: an 81 x 104 x 83 grid whose brain comes from
nilearn's bundled MNI152 masks, scaled to fill the field of view; the ``nsdgeneral``-like ROI
is exactly ``n_roi`` posterior grey-matter voxels (occipital, posterior parietal and ventral
temporal cortex).  Timing follows NSD: one 3 s image + 1 s gap per trial slot, 188 volumes of
1.6 s per run, ~62 image trials per run with the remaining slots blank.

Each ROI voxel ``v`` responds to image ``i`` with a per-trial amplitude (percent signal change)
``a_v(i) = g_v * (mean_response_pct + signal_pct * s_v(i))`` where ``s_v`` has unit variance
across the image set and mixes two parts by position: ``sqrt(1 - l_v) * low_v + sqrt(l_v) *
sem_v``.  ``low_v`` is a Gaussian population receptive field on the 8 x 8 x 3 down-sampled
image (retinotopic: hemisphere -> hemifield, distance from the occipital pole -> eccentricity);
``sem_v`` is a spatially smooth random readout of the top principal components of the
embedder's CLIP tokens.  ``l_v`` (the semantic share) grows from posterior (0.15) to anterior /
ventral (0.85).  The weights come from the seed and are never written to the dataset.
The amplitude scales a 3 s boxcar convolved with a double-gamma HRF whose time-to-peak varies
per voxel (the GLM's canonical HRF peaks at 5 s, so there is a realistic mismatch); slow
drift and AR(1) noise are added to every brain voxel (non-ROI voxels get baseline, drift and
noise only).  No head motion.

SNR definition: for a voxel of median gain (``g_v = 1``), ``snr`` = std across images of the
evoked peak (``signal_pct``) / std of the per-TR noise.  The noise std is therefore
``signal_pct / snr`` percent of the voxel's baseline in every brain voxel; ``snr`` is the one
knob that scales the noise.

Training data are per-trial responses like NSD betas: ROI-only runs simulated the same way,
z-scored per run (:func:`fmri_compute.normalize.zscore_run`) and fitted with
:func:`fmri_compute.glm.lss_betas` using its default ridge-LSA estimator (the same family as the
real-time :class:`fmri_compute.glm.OnlineLSS`), so they share the scale of the real-time estimates.

=====================  =================  ==================================================
parameter              subj01 default     meaning
=====================  =================  ==================================================
shape, voxel_size      81x104x83, 1.8 mm  volume grid (NSD func1pt8mm)
n_roi                  15724              ROI voxels (nsdgeneral of NSD subj01)
tr, n_volumes          1.6 s, 188         per run (300.8 s): 72 slots of 4 s, lead-out >= 8 s
lead_in_s              3.0 s              blank before the first trial slot
image_s, gap_s         3.0 s, 1.0 s       trial slot = image + gap (onsets 4 s apart)
trials_per_run         62                 image trials per run; other slots are blank
n_test_images          50                 test images, each shown test_reps times
test_reps              3                  repeats in different runs (3 test runs, 36 fillers)
n_train_images         1500               training images, each shown 1-3 times
n_train_trials         3000               training trials (-> 49 ROI-only runs)
snr                    0.4                see SNR definition above
signal_pct             1.0 %              std across images of the evoked peak (g_v = 1)
mean_response_pct      1.5 %              image-independent visual response (g_v = 1)
gain_sd                0.4                log-normal sd of the per-voxel gain g_v
n_semantic             64                 CLIP-token principal components encoded (whitened)
hrf_peak_mean / _sd    5.5 s / 0.6 s      per-voxel HRF time to peak (clipped at +-3 sd)
drift_pct              1.0 %              sd of each drift term (linear, quadratic, sinusoid
                                          of period 100-250 s); half shared by all voxels
ar1_rho                0.3                lag-1 autocorrelation of the per-TR noise
baseline               ~1000 a.u.         GM 1050, WM 850, CSF 1300, x bias field, 0 outside
embedder               tiny-random        image embedder of the semantic features
=====================  =================  ==================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from replay_data.dataset import DatasetWriter, Event, ReplayDataset
from replay_data.stimuli import StimulusSet, make_stimuli, pixel_features
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

__all__ = ["SimulationConfig", "SimulatedSubject", "build_subject", "simulate_subject", "PRESETS"]


#: Bumped whenever the generative model changes, so a cached built-in subject is regenerated.
SIMULATOR_VERSION = 2


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of a simulated subject (see the module docstring's table)."""

    name: str = "subj01"
    seed: int = 1
    shape: tuple[int, int, int] = (81, 104, 83)
    voxel_size: float = 1.8
    n_roi: int = 15724
    tr: float = 1.6
    n_volumes: int = 188
    lead_in_s: float = 3.0
    image_s: float = 3.0
    gap_s: float = 1.0
    trials_per_run: int = 62
    n_test_images: int = 50
    test_reps: int = 3
    n_train_images: int = 1500
    n_train_trials: int = 3000
    snr: float = 0.4
    signal_pct: float = 1.0
    mean_response_pct: float = 1.5
    gain_sd: float = 0.4
    n_semantic: int = 64
    hrf_peak_mean: float = 5.5
    hrf_peak_sd: float = 0.6
    drift_pct: float = 1.0
    ar1_rho: float = 0.3
    embedder: str = "tiny-random"
    image_size: int = 128

    def __post_init__(self) -> None:
        num = check_number
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(f"'name' must be a non-empty folder name, got {self.name!r}")
        num(self.seed, "seed", minimum=0, integer=True)
        if not isinstance(self.shape, (tuple, list)) or len(self.shape) != 3:
            raise ConfigError(f"'shape' must be 3 integers (X, Y, Z), got {self.shape!r}")
        shape = tuple(int(num(s, "shape", minimum=8, integer=True)) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        num(self.voxel_size, "voxel_size", minimum=0, strict_min=True, unit="mm")
        num(self.n_roi, "n_roi", minimum=1, integer=True)
        num(self.tr, "tr", minimum=0, strict_min=True, unit="seconds")
        num(self.n_volumes, "n_volumes", minimum=10, integer=True)
        num(self.lead_in_s, "lead_in_s", minimum=0, unit="seconds")
        num(self.image_s, "image_s", minimum=0, strict_min=True, unit="seconds")
        num(self.gap_s, "gap_s", minimum=0, unit="seconds")
        num(self.n_test_images, "n_test_images", minimum=2, integer=True)
        num(self.test_reps, "test_reps", minimum=1, integer=True)
        num(self.n_train_images, "n_train_images", minimum=1, integer=True)
        num(
            self.n_train_trials,
            "n_train_trials",
            minimum=self.n_train_images,
            maximum=3 * self.n_train_images,
            integer=True,
        )
        num(self.snr, "snr", minimum=0, strict_min=True)
        num(self.signal_pct, "signal_pct", minimum=0, strict_min=True, maximum=20, unit="%")
        num(self.mean_response_pct, "mean_response_pct", minimum=0, maximum=20, unit="%")
        num(self.gain_sd, "gain_sd", minimum=0, maximum=2)
        num(self.n_semantic, "n_semantic", minimum=1, integer=True)
        num(self.hrf_peak_mean, "hrf_peak_mean", minimum=3, maximum=9, unit="seconds")
        num(self.hrf_peak_sd, "hrf_peak_sd", minimum=0, maximum=2, unit="seconds")
        num(self.drift_pct, "drift_pct", minimum=0, maximum=20, unit="%")
        num(self.ar1_rho, "ar1_rho", minimum=0, maximum=0.95)
        check_choice(self.embedder, "embedder", ("tiny-random",))  # needs no weights file
        num(self.image_size, "image_size", minimum=32, integer=True)
        if self.image_size % 8:
            raise ConfigError(f"'image_size' must be a multiple of 8, got {self.image_size}")
        num(self.trials_per_run, "trials_per_run", minimum=1, maximum=self.n_slots, integer=True)

    @property
    def trial_s(self) -> float:
        """Seconds per trial slot (image + gap)."""
        return self.image_s + self.gap_s

    @property
    def n_slots(self) -> int:
        """Trial slots per run: lead-in, slots, and >= 8 s lead-out fit in the run."""
        run_s = self.n_volumes * self.tr
        return max(0, int(math.floor((run_s - self.lead_in_s - 8.0) / self.trial_s + 1e-9)))

    @property
    def n_test_runs(self) -> int:
        """Runs of the test session (the replayed runs)."""
        return len(_test_assignment(self.n_test_images, self.test_reps, self.trials_per_run))

    @property
    def n_filler(self) -> int:
        """Filler trials (each a distinct non-test image) that complete the test runs."""
        return self.n_test_runs * self.trials_per_run - self.n_test_images * self.test_reps

    @classmethod
    def subj01(cls, **overrides) -> SimulationConfig:
        """The built-in simulated NSD subj01 (the defaults)."""
        return replace(cls(), **overrides)

    @classmethod
    def tiny(cls, **overrides) -> SimulationConfig:
        """A few-second subject for tests: 20x24x20 grid, 600 ROI voxels, one 20-trial run."""
        base = cls(
            name="tiny",
            seed=7,
            shape=(20, 24, 20),
            n_roi=600,
            n_volumes=60,
            trials_per_run=20,
            n_test_images=6,
            test_reps=3,
            n_train_images=200,
            n_train_trials=400,
            snr=1.0,
            n_semantic=16,
            image_size=64,
        )
        return replace(base, **overrides)

    @classmethod
    def from_dict(cls, d: dict) -> SimulationConfig:
        """Build from a dict; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown simulation options {unknown}; known: {sorted(known)}")
        return cls(**d)


PRESETS = {"subj01": SimulationConfig.subj01, "tiny": SimulationConfig.tiny}


# ---------------------------------------------------------------------------------- geometry
@dataclass
class Geometry:
    """The subject's anatomy on the dataset grid.

    Attributes
    ----------
    brain, roi : (X, Y, Z) bool masks (roi is inside brain).
    baseline : (X, Y, Z) float32 baseline image (0 outside the brain).
    roi_mni : (V, 3) float MNI coordinates (mm) of the ROI voxels, ROI order.
    roi_in_brain : (V,) int positions of the ROI voxels among the brain voxels (C order).
    mni_spacing : MNI millimetres per grid voxel (the MNI brain is scaled to fit the grid).
    """

    brain: np.ndarray
    roi: np.ndarray
    baseline: np.ndarray
    roi_mni: np.ndarray
    roi_in_brain: np.ndarray
    mni_spacing: float


@lru_cache(maxsize=1)
def _mni_masks() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """nilearn's bundled MNI152 brain, grey- and white-matter masks (float32) and affine."""
    from nilearn import datasets

    imgs = [
        datasets.load_mni152_brain_mask(),
        datasets.load_mni152_gm_mask(),
        datasets.load_mni152_wm_mask(),
    ]
    return tuple(np.asarray(im.dataobj, np.float32) for im in imgs), imgs[0].affine


@lru_cache(maxsize=2)
def _smoothed_masks(sigma: float) -> tuple[np.ndarray, ...]:
    return tuple(gaussian_filter(m, sigma) for m in _mni_masks()[0])


def make_geometry(shape: tuple[int, int, int], n_roi: int, rng: np.random.Generator) -> Geometry:
    """Brain, tissue baseline and an exact-size posterior grey-matter ROI on a ``shape`` grid."""
    masks, aff = _mni_masks()
    vox = np.argwhere(masks[0] > 0)
    lo, hi = (aff[:3, :3] @ vox.min(0) + aff[:3, 3]), (aff[:3, :3] @ vox.max(0) + aff[:3, 3])
    size = np.asarray(shape, float)
    spacing = float(np.max((hi - lo + 1) / (size - 4)))  # 2-voxel margin on each side
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    mni = (lo + hi) / 2 + (ijk - (size - 1) / 2) * spacing
    src = (np.linalg.inv(aff) @ np.c_[mni, np.ones(len(mni))].T)[:3]
    sigma = max(spacing / 2.355 / float(np.abs(aff[0, 0])), 0.0)
    brain, gm, wm = (
        map_coordinates(m, src, order=1).reshape(shape).clip(0, 1)
        for m in _smoothed_masks(round(sigma, 2))
    )
    inside = brain >= 0.5
    tissue = np.maximum(gm + wm, 1e-6)
    over = np.maximum(tissue / np.maximum(brain, 1e-6), 1.0)
    gm, wm = gm / over, wm / over
    csf = np.clip(brain - gm - wm, 0, 1)
    bias = 1 + 0.08 * (np.linalg.norm((ijk - (size - 1) / 2) / size, axis=1) ** 2).reshape(shape)
    texture = 1 + 0.03 * gaussian_filter(rng.standard_normal(shape), 1.0) / 0.2
    baseline = (1050 * gm + 850 * wm + 1300 * csf) * bias * texture
    baseline = np.where(inside, baseline, 0).astype(np.float32)

    x, y, z = (mni[:, k].reshape(shape) for k in range(3))
    cerebellum = (z < -20) | ((y < -40) & (np.abs(x) < 25) & (z < -5))
    candidate = inside & (gm >= 0.5) & ~cerebellum
    n_cand = int(candidate.sum())
    if n_roi > n_cand:
        raise ConfigError(
            f"'n_roi' must be at most the {n_cand} posterior grey-matter voxels of a {shape} "
            f"grid, got {n_roi}: lower 'n_roi' or enlarge 'shape'"
        )
    smooth = gaussian_filter(rng.standard_normal(shape), 2.0)
    score = -y + 1.2 * np.maximum(-z, 0) + 0.15 * np.maximum(z - 20, 0) + 4 * smooth / smooth.std()
    flat = np.flatnonzero(candidate)
    keep = flat[np.argsort(-score.ravel()[flat], kind="stable")[:n_roi]]
    roi = np.zeros(shape, bool)
    roi.ravel()[keep] = True
    roi_idx = np.flatnonzero(roi)
    return Geometry(
        brain=inside,
        roi=roi,
        baseline=baseline,
        roi_mni=mni[roi_idx].astype(np.float64),
        roi_in_brain=np.searchsorted(np.flatnonzero(inside), roi_idx),
        mni_spacing=spacing,
    )


# ---------------------------------------------------------------------------------- encoding
@dataclass
class Encoding:
    """The hidden encoding model (never written to a dataset).

    Attributes
    ----------
    signal : (N_images, V) float32 image-specific response, unit variance across images.
    gain : (V,) per-voxel gain g_v (log-normal, median 1).
    semantic_share : (V,) weight l_v of the semantic part (0 = purely low level).
    hrf_peak : (V,) HRF time to peak in seconds.
    mean_pct, signal_pct : see SimulationConfig.
    """

    signal: np.ndarray
    gain: np.ndarray
    semantic_share: np.ndarray
    hrf_peak: np.ndarray
    mean_pct: float
    signal_pct: float

    def amplitudes(self, image_ids: np.ndarray) -> np.ndarray:
        """(n, V) float32 evoked peak amplitudes in percent signal change."""
        s = self.signal[np.asarray(image_ids)]
        return (self.gain * (self.mean_pct + self.signal_pct * s)).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance."""
    x = x - x.mean(axis=0)
    return x / np.maximum(x.std(axis=0), 1e-12)


def _rank01(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable") / max(len(x) - 1, 1)


def _orth(q: np.ndarray) -> np.ndarray:
    lam, v = np.linalg.eigh(q.T @ q)
    return q @ (v / np.sqrt(np.maximum(lam, 1e-12 * lam.max())))


def _top_components(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(N, k) orthonormal top principal directions of the rows of ``x`` (N, d).

    A randomized range finder with power iterations: matrix products and small eigh only
    (a full SVD with multi-threaded LAPACK is very slow on small shared machines).
    """
    q = x @ rng.standard_normal((x.shape[1], k + 16))
    for _ in range(4):
        q = x @ (x.T @ _orth(q))
    q = _orth(q)
    lam, v = np.linalg.eigh((q.T @ x) @ (x.T @ q))
    return q @ v[:, ::-1][:, :k]


def make_encoding(
    config: SimulationConfig, geo: Geometry, stim: StimulusSet, rng: np.random.Generator
) -> Encoding:
    """Draw the hidden voxel weights and evaluate them on every stimulus image."""
    from mindeye_models.embedder import load_embedder

    n_img, n_vox = len(stim.images), len(geo.roi_mni)
    tokens = load_embedder(config.embedder).embed(stim.images).reshape(n_img, -1)
    k = min(config.n_semantic, n_img - 1)
    pcs = _top_components(_unit(tokens.astype(np.float64)), k, rng) * math.sqrt(n_img)
    # Spatially smooth readout weights: half a coarse random field, half voxel-specific.
    ijk = np.argwhere(geo.roi).T / 4.0
    coarse = [rng.standard_normal(np.asarray(geo.roi.shape) // 4 + 2) for _ in range(k)]
    smooth = np.stack([map_coordinates(c, ijk, order=1) for c in coarse])
    w_sem = _unit(smooth.T).T + rng.standard_normal((k, n_vox))
    sem = _unit(pcs @ w_sem)

    # Retinotopic population receptive fields on the 8 x 8 x 3 thumbnail.
    x, y, z = geo.roi_mni.T
    ecc = np.clip(4.5 * _rank01(y) + 0.3 * rng.standard_normal(n_vox), 0, 5)
    angle = np.arctan2(z - np.median(z), np.abs(x) + 5)
    col = 3.5 - np.sign(x + 1e-9) * ecc * np.cos(angle)
    row = 3.5 + ecc * np.sin(angle)
    sd = 0.7 + 0.25 * ecc
    grid = np.arange(8.0)
    prf = np.exp(
        -(
            (grid[None, :, None] - row[:, None, None]) ** 2
            + (grid[None, None] - col[:, None, None]) ** 2
        )
        / (2 * sd[:, None, None] ** 2)
    )
    colour = 1 / math.sqrt(3) + 0.4 * rng.standard_normal((n_vox, 3))
    w_low = (prf[..., None] * colour[:, None, None, :]).reshape(n_vox, -1)
    low = _unit(_unit(pixel_features(stim.images).astype(np.float64)) @ w_low.T)

    share = 0.15 + 0.7 * _rank01(y - 0.5 * z)
    signal = _unit(np.sqrt(1 - share) * low + np.sqrt(share) * sem).astype(np.float32)
    gain = np.exp(config.gain_sd * rng.standard_normal(n_vox))
    lo_p = max(3.0, config.hrf_peak_mean - 3 * config.hrf_peak_sd)
    peak = np.clip(
        config.hrf_peak_mean + config.hrf_peak_sd * rng.standard_normal(n_vox),
        lo_p,
        config.hrf_peak_mean + 3 * config.hrf_peak_sd,
    )
    return Encoding(signal, gain, share, peak, config.mean_response_pct, config.signal_pct)


# ---------------------------------------------------------------------------------- schedules
def _test_assignment(n_test: int, reps: int, per_run: int) -> list[list[int]]:
    """Test image indices of each run; a repeat goes to another run whenever there are enough."""
    n_runs = max(1, math.ceil(n_test * reps / per_run))
    while True:
        runs: list[list[int]] = [[] for _ in range(n_runs)]
        for r in range(reps):
            for i in range(n_test):
                runs[(i + r) % n_runs if n_runs >= reps else (i * reps + r) % n_runs].append(i)
        if max(len(r) for r in runs) <= per_run:
            return runs
        n_runs += 1


def _place(
    config: SimulationConfig,
    images: list[int],
    splits: list[str],
    rng: np.random.Generator,
    seen: dict[int, int],
) -> list[Event]:
    """Order a run's trials, put them in random non-blank slots, count repetitions."""
    for _ in range(100):  # avoid the same image twice in a row
        order = rng.permutation(len(images))
        if all(images[a] != images[b] for a, b in zip(order[:-1], order[1:], strict=True)):
            break
    slots = np.sort(rng.choice(config.n_slots, len(images), replace=False))
    events = []
    for trial, (j, slot) in enumerate(zip(order, slots, strict=True)):
        seen[images[j]] = seen.get(images[j], 0) + 1
        onset = config.lead_in_s + float(slot) * config.trial_s
        events.append(
            Event(onset, config.image_s, int(images[j]), seen[images[j]], splits[j], trial)
        )
    return events


def schedule_test_runs(config: SimulationConfig, stim: StimulusSet, rng) -> list[list[Event]]:
    """The test session: every test image ``test_reps`` times, fillers complete the runs."""
    test_ids, fillers = stim.ids("test"), list(stim.ids("filler"))
    assign = _test_assignment(len(test_ids), config.test_reps, config.trials_per_run)
    seen: dict[int, int] = {}
    runs = []
    for members in assign:
        n_fill = config.trials_per_run - len(members)
        images = [int(test_ids[i]) for i in members] + fillers[:n_fill]
        fillers = fillers[n_fill:]
        splits = ["test"] * len(members) + ["filler"] * n_fill
        runs.append(_place(config, images, splits, rng, seen))
    return runs


def schedule_train_runs(config: SimulationConfig, stim: StimulusSet, rng) -> list[list[Event]]:
    """Training runs: each training image 1-3 times, ``n_train_trials`` trials in all."""
    ids = stim.ids("train")
    extra = rng.choice(2 * len(ids), config.n_train_trials - len(ids), replace=False) // 2
    trials = rng.permutation(np.concatenate([ids, ids[extra]]))
    n_runs = math.ceil(len(trials) / config.trials_per_run)
    seen: dict[int, int] = {}
    return [
        _place(config, [int(i) for i in part], ["train"] * len(part), rng, seen)
        for part in np.array_split(trials, n_runs)
    ]


# ---------------------------------------------------------------------------------- time series
@lru_cache(maxsize=8)
def _peak_norm(shapes: tuple[float, ...], duration: float, tr: float) -> np.ndarray:
    """(P,) peak of an isolated trial's regressor for each HRF shape (to scale it to 1)."""
    from fmri_compute.hrf import trial_regressors

    probe = trial_regressors([0.0], [duration], np.arange(0, 40, 0.05), tr, peak=np.array(shapes))
    return probe.max(axis=(1, 2))


def simulate_run(
    config: SimulationConfig,
    baseline: np.ndarray,
    enc: Encoding,
    events: list[Event],
    roi_pos: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """One run's time series.

    Parameters
    ----------
    baseline : (V,) baseline of the simulated voxels.
    roi_pos : (V_roi,) positions of the ROI voxels among them; None if all are ROI voxels.

    Returns
    -------
    Y : (T, V) float32 array in scanner units.
    """
    from fmri_compute.hrf import trial_regressors

    T, V = config.n_volumes, len(baseline)
    t = np.arange(T) * config.tr
    u = 2 * t / t[-1] - 1
    period = rng.uniform(100, 250)
    basis = np.stack(
        [u, 1.5 * u**2 - 0.5, np.sin(2 * np.pi * t / period), np.cos(2 * np.pi * t / period)], 1
    )
    basis /= basis.std(axis=0)
    coef = (
        config.drift_pct
        / math.sqrt(2)
        * (rng.standard_normal((4, 1)) + rng.standard_normal((4, V)))
    )
    coef[2:] /= math.sqrt(2)  # the sinusoid's amplitude (sin and cos together) has sd drift_pct
    pct = (basis @ coef).astype(np.float32)
    rho, noise_pct = config.ar1_rho, config.signal_pct / config.snr
    e = rng.standard_normal((T, V), dtype=np.float32)
    for k in range(1, T):
        e[k] = rho * e[k - 1] + math.sqrt(1 - rho * rho) * e[k]
    pct += np.float32(noise_pct) * e
    del e
    Y = baseline.astype(np.float32) * (1 + pct / 100)
    del pct
    if events:
        onsets = [ev.onset for ev in events]
        durations = [ev.duration for ev in events]
        shapes, which = np.unique(np.round((enc.hrf_peak + 1) * 5) / 5, return_inverse=True)
        X = trial_regressors(onsets, durations, t, config.tr, peak=shapes)
        X /= _peak_norm(tuple(shapes.tolist()), config.image_s, config.tr)[:, None, None]
        A = enc.amplitudes([ev.image_id for ev in events]) / 100
        pos = np.arange(V) if roi_pos is None else roi_pos
        for p in range(len(shapes)):
            cols = np.flatnonzero(which == p)
            Y[:, pos[cols]] += baseline[pos[cols]] * (X[p] @ A[:, cols]).astype(np.float32)
    return Y


@dataclass
class SimulatedSubject:
    """Everything the simulator draws for one config (hidden parts included; never saved)."""

    config: SimulationConfig
    geometry: Geometry
    stimuli: StimulusSet
    encoding: Encoding
    test_runs: list[list[Event]]
    train_runs: list[list[Event]]


def build_subject(config: SimulationConfig, progress: bool = False) -> SimulatedSubject:
    """Draw the subject: geometry, stimuli, hidden encoding model and trial schedules."""
    seeds = np.random.SeedSequence([config.seed, 0x5EED]).spawn(4)
    geometry = make_geometry(config.shape, config.n_roi, np.random.default_rng(seeds[0]))
    stimuli = make_stimuli(
        config.n_test_images,
        config.n_train_images,
        config.n_filler,
        seed=config.seed,
        size=config.image_size,
        progress=progress,
    )
    encoding = make_encoding(config, geometry, stimuli, np.random.default_rng(seeds[1]))
    test_runs = schedule_test_runs(config, stimuli, np.random.default_rng(seeds[2]))
    train_runs = schedule_train_runs(config, stimuli, np.random.default_rng(seeds[3]))
    return SimulatedSubject(config, geometry, stimuli, encoding, test_runs, train_runs)


def _run_rng(config: SimulationConfig, kind: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, 0x5EED, kind, index]))


def simulate_subject(
    out_dir: str | Path,
    config: SimulationConfig | None = None,
    progress: bool = True,
    *,
    overwrite: bool = False,
) -> ReplayDataset:
    """Generate a simulated subject as a replay dataset in ``out_dir``.

    Runs are generated and written one at a time (memory stays at about two runs).

    Parameters
    ----------
    out_dir : dataset folder to create.
    config : simulation parameters; default :meth:`SimulationConfig.subj01`.
    progress : show tqdm progress bars.
    overwrite : replace an existing dataset in ``out_dir``.

    Returns
    -------
    dataset : the complete dataset, opened.
    """
    from tqdm import tqdm

    from fmri_compute.glm import lss_betas
    from fmri_compute.normalize import zscore_run

    config = config or SimulationConfig.subj01()
    subj = build_subject(config, progress=progress)
    geo, enc, stim = subj.geometry, subj.encoding, subj.stimuli
    params = asdict(config)
    params.update(
        n_test_runs=config.n_test_runs,
        n_train_runs=len(subj.train_runs),
        n_filler=config.n_filler,
        n_slots=config.n_slots,
        n_brain_voxels=int(geo.brain.sum()),
        mni_spacing_mm=geo.mni_spacing,
        snr_definition="std across images of the evoked peak / std of per-TR noise "
        "(median-gain ROI voxel)",
        generator="replay_data.simulate",
        simulator_version=SIMULATOR_VERSION,
    )
    bar = tqdm(
        total=len(subj.test_runs) + len(subj.train_runs),
        desc=f"simulating {config.name}",
        unit="run",
        disable=not progress,
    )
    writer = DatasetWriter(
        out_dir,
        name=config.name,
        subject=config.name,
        tr=config.tr,
        voxel_size=config.voxel_size,
        shape=config.shape,
        simulated=True,
        params=params,
        overwrite=overwrite,
    )
    writer.write_masks(geo.roi, geo.brain)
    writer.write_stimuli(stim.images, list(stim.splits), list(stim.sources))
    brain_idx = np.flatnonzero(geo.brain)
    for k, events in enumerate(subj.test_runs):
        rng = _run_rng(config, 1, k)
        Y = simulate_run(config, geo.baseline[geo.brain], enc, events, geo.roi_in_brain, rng)
        vol = np.zeros((*config.shape, config.n_volumes), np.float32)
        vol.reshape(-1, config.n_volumes)[brain_idx] = Y.T
        del Y
        writer.write_run(vol, events)
        del vol
        bar.update()
    betas, ids, runs, reps = [], [], [], []
    roi_base = geo.baseline[geo.roi]
    for k, events in enumerate(subj.train_runs):
        rng = _run_rng(config, 2, k)
        Y = simulate_run(config, roi_base, enc, events, None, rng)
        onsets = [e.onset for e in events]
        durations = [e.duration for e in events]
        betas.append(lss_betas(zscore_run(Y), onsets, durations, config.tr, method="lsa"))
        ids += [e.image_id for e in events]
        runs += [k + 1] * len(events)
        reps += [e.repetition for e in events]
        bar.update()
    bar.close()
    writer.write_training(np.concatenate(betas), ids, runs, reps)
    return writer.finalize()
