"""Head motion of the simulated subject: a slow drift plus a few sudden jumps per run.

The parameters follow the project's one convention (:mod:`fmri_compute.rigid`): per volume
``(tx, ty, tz)`` in mm and ``(rx, ry, rz)`` in degrees about the centre of the field of view,
the motion of the head relative to the still subject (whose position the dataset's masks
describe).

A ``"cooperative"`` participant, drawn per test run from the run's own random stream:

- every run starts at the still position (``p[0] = 0``), so the first volume of each run is
  the reference a registration would pick;
- a slow drift: a smoothed random walk of the six parameters whose largest translation in the
  run is 50-100 % of ``motion_drift_mm``, with a rotation of ``motion_rot_deg_per_mm`` degrees
  per mm of it;
- ``motion_jumps`` sudden jumps at random volumes: the head moves between two volumes by
  ``motion_jump_min_mm`` - ``motion_jump_max_mm`` in a random direction (plus a rotation of
  ``motion_rot_deg_per_mm`` per mm about a random axis) and stays there.

So the head's translation never exceeds ``motion_drift_mm + motion_jumps *
motion_jump_max_mm`` (:func:`motion_limits`), nor its rotation ``motion_rot_deg_per_mm`` times
that.

How :mod:`replay_data.simulate` applies it: the whole volume the still head would give
(anatomy, slow signal drift and evoked responses) is moved with
:func:`fmri_compute.rigid.move_volume` (cubic), then the thermal noise, which belongs to the
scanner's grid and does not move, is added, and the run is quantised to int16 on writing.  Left
out: spin-history and slice-timing effects (every volume is a snapshot of one head position),
motion-by-susceptibility distortion, and the change of the noise's spatial pattern at the edge
of the brain.  The training responses are never moved (like NSD's betas, they stand for
motion-corrected data).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.ndimage import gaussian_filter1d

from fmri_compute.rigid import move_volume
from replay_data.simulation_config import SimulationConfig

__all__ = ["draw_motion", "motion_limits", "move_run", "run_motion"]

#: the motion's own random stream (apart from anatomy, encoding, schedules and noise)
_MOTION_STREAM = 0x40710

#: most threads :func:`move_run` reslices with
_THREADS = 4


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _smooth_walk(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) smooth random path starting at 0 whose largest norm is 1 (zeros if flat)."""
    walk = np.cumsum(rng.standard_normal((n, 3)), axis=0)
    walk = gaussian_filter1d(walk, sigma=max(1.0, n / 12), axis=0, mode="nearest")
    walk -= walk[0]
    peak = np.linalg.norm(walk, axis=1).max()
    return walk / peak if peak > 0 else walk


def draw_motion(config: SimulationConfig, n_volumes: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one run's head motion (the ``"cooperative"`` model; see the module docstring).

    Parameters
    ----------
    config : :class:`~replay_data.simulation_config.SimulationConfig`, its ``motion_*``
        magnitudes.
    n_volumes : volumes T of the run.
    rng : the run's motion stream.

    Returns
    -------
    params : (T, 6) float64 array, ``fmri_compute.rigid.PARAM_NAMES`` order; ``params[0] = 0``.
    """
    per_mm = config.motion_rot_deg_per_mm
    size = config.motion_drift_mm * rng.uniform(0.5, 1.0)
    params = np.zeros((n_volumes, 6))
    params[:, :3] = size * _smooth_walk(n_volumes, rng)
    params[:, 3:] = per_mm * size * _smooth_walk(n_volumes, rng)
    n_jumps = min(int(config.motion_jumps), n_volumes - 1)
    when = np.sort(rng.choice(np.arange(1, n_volumes), size=n_jumps, replace=False))
    for t in when:
        mm = rng.uniform(config.motion_jump_min_mm, config.motion_jump_max_mm)
        params[t:, :3] += mm * _unit_vector(rng)
        params[t:, 3:] += per_mm * mm * _unit_vector(rng)
    return params


def motion_limits(config: SimulationConfig) -> tuple[float, float]:
    """Largest translation (mm, vector norm) and rotation (degrees, vector norm) a run of
    ``config``'s motion can reach."""
    mm = config.motion_drift_mm + config.motion_jumps * config.motion_jump_max_mm
    return mm, config.motion_rot_deg_per_mm * mm


def run_motion(config: SimulationConfig, run_index: int) -> np.ndarray | None:
    """(T, 6) true motion of test run ``run_index`` (0-based), or None for a still subject.

    Drawn from its own stream, ``(seed, run_index)``, so a moving subject shares everything
    else with the still one of the same seed.
    """
    if config.motion == "none":
        return None
    seq = np.random.SeedSequence([config.seed, _MOTION_STREAM, run_index])
    return draw_motion(config, config.n_volumes, np.random.default_rng(seq))


def move_run(volumes: np.ndarray, affine: np.ndarray, params: np.ndarray) -> None:
    """Move each volume of a run, in place, by its row of ``params`` (cubic interpolation;
    up to four volumes at a time, in threads).

    Parameters
    ----------
    volumes : (X, Y, Z, T) float32 array, the still head's run.
    affine : (4, 4) voxel-to-world affine of the grid.
    params : (T, 6) motion of each volume (:mod:`fmri_compute.rigid` convention).
    """
    if volumes.ndim != 4 or params.shape != (volumes.shape[3], 6):
        raise ValueError(
            f"'params' must be (T, 6) for volumes (X, Y, Z, T), got {params.shape} for "
            f"{volumes.shape}"
        )

    def move(t: int) -> None:
        volumes[..., t] = move_volume(volumes[..., t], affine, params[t], order=3)

    moving = [t for t in range(volumes.shape[3]) if np.any(params[t])]
    # scipy.ndimage releases the GIL: a few threads share the work, each on its own volumes
    with ThreadPoolExecutor(max_workers=min(_THREADS, os.cpu_count() or 1)) as pool:
        list(pool.map(move, moving))
