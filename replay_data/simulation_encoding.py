"""The simulated subject's hidden encoding model: how each ROI voxel responds to each image.

Each ROI voxel ``v`` responds to image ``i`` with a per-trial amplitude (percent signal change)
``a_v(i) = g_v * (mean_response_pct + signal_pct * s_v(i))`` where ``s_v`` has unit variance
across the image set and mixes two parts by position: ``sqrt(1 - l_v) * low_v + sqrt(l_v) *
sem_v``.  ``low_v`` is a Gaussian population receptive field on the 8 x 8 x 3 down-sampled
image (retinotopic: hemisphere -> hemifield, distance from the occipital pole -> eccentricity);
``sem_v`` is a spatially smooth random readout of the top principal components of the
embedder's CLIP tokens.  ``l_v`` (the semantic share) grows from posterior (0.15) to anterior /
ventral (0.85).  The weights come from the seed and are never written to the dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from replay_data.simulation_config import SimulationConfig
from replay_data.simulation_geometry import Geometry
from replay_data.stimuli import StimulusSet, pixel_features

__all__ = ["Encoding", "make_encoding"]


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
    # mindeye_models.embedder imports torch (seconds): only when an encoding is drawn.
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
