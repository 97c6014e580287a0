"""The simulated subject: NSD-like runs generated from a known (hidden) encoding model.

Its parameters are :class:`~replay_data.simulation_config.SimulationConfig`; its anatomy,
encoding model and trial schedules are drawn by :mod:`replay_data.simulation_geometry`,
:mod:`replay_data.simulation_encoding` and :mod:`replay_data.simulation_schedule`.  This module
turns them into time series and writes them as a replay dataset.

The amplitude scales a 3 s boxcar convolved with a double-gamma HRF whose time-to-peak varies
per voxel (the GLM's canonical HRF peaks at 5 s, so there is a realistic mismatch); slow
drift and AR(1) noise are added to every brain voxel (non-ROI voxels get baseline, drift and
noise only).  With ``motion="cooperative"`` the head moves in the test runs
(:mod:`replay_data.simulation_motion`): each volume without its thermal noise is moved, then the
noise is added; the true motion is stored in ``truth/`` for scoring.  The default subjects are
still.

Training data are per-trial responses like NSD betas: ROI-only runs simulated the same way,
z-scored per run (:func:`fmri_compute.normalize.zscore_run`) and fitted with
:func:`fmri_compute.offline_glm.trial_betas` using its default ridge-LSA estimator (the same
family as the real-time :class:`fmri_compute.online_glm.OnlineTrialBetas`), so they share the
scale of the real-time estimates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fmri_compute.hrf import trial_regressors
from fmri_compute.normalize import zscore_run
from fmri_compute.offline_glm import trial_betas
from replay_data.dataset_format import Event
from replay_data.dataset_reader import ReplayDataset
from replay_data.dataset_writer import DatasetWriter
from replay_data.simulation_config import SIMULATOR_VERSION, SimulationConfig
from replay_data.simulation_encoding import Encoding, make_encoding
from replay_data.simulation_geometry import Geometry, make_geometry
from replay_data.simulation_motion import move_run, run_motion
from replay_data.simulation_schedule import schedule_test_runs, schedule_train_runs
from replay_data.stimuli import StimulusSet, make_stimuli

__all__ = [
    "SimulatedSubject",
    "build_subject",
    "simulate_run",
    "simulate_run_apart",
    "simulate_subject",
]


@lru_cache(maxsize=8)
def _peak_norm(shapes: tuple[float, ...], duration: float, tr: float) -> np.ndarray:
    """(P,) peak of an isolated trial's regressor for each HRF shape (to scale it to 1)."""
    probe = trial_regressors([0.0], [duration], np.arange(0, 40, 0.05), tr, peak=np.array(shapes))
    return probe.max(axis=(1, 2))


def _drift_pct(
    config: SimulationConfig, t: np.ndarray, n_voxels: int, rng: np.random.Generator
) -> np.ndarray:
    """(T, V) float32 slow drift, in percent of each voxel's baseline."""
    V = n_voxels
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
    return (basis @ coef).astype(np.float32)


def _noise_pct(
    config: SimulationConfig, n_volumes: int, n_voxels: int, rng: np.random.Generator
) -> np.ndarray:
    """(T, V) float32 AR(1) thermal noise, in percent of each voxel's baseline."""
    rho, noise_pct = config.ar1_rho, config.signal_pct / config.snr
    e = rng.standard_normal((n_volumes, n_voxels), dtype=np.float32)
    for k in range(1, n_volumes):
        e[k] = rho * e[k - 1] + math.sqrt(1 - rho * rho) * e[k]
    e *= np.float32(noise_pct)
    return e


def _add_responses(
    Y: np.ndarray,
    baseline: np.ndarray,
    config: SimulationConfig,
    enc: Encoding,
    events: list[Event],
    roi_pos: np.ndarray,
) -> None:
    """Add the evoked responses of ``events`` to the ROI columns ``roi_pos`` of ``Y`` (T, V)."""
    t = np.arange(config.n_volumes) * config.tr
    onsets = [ev.onset for ev in events]
    durations = [ev.duration for ev in events]
    shapes, which = np.unique(np.round((enc.hrf_peak + 1) * 5) / 5, return_inverse=True)
    X = trial_regressors(onsets, durations, t, config.tr, peak=shapes)
    X /= _peak_norm(tuple(shapes.tolist()), config.image_s, config.tr)[:, None, None]
    A = enc.amplitudes([ev.image_id for ev in events]) / 100
    for p in range(len(shapes)):
        cols = np.flatnonzero(which == p)
        Y[:, roi_pos[cols]] += baseline[roi_pos[cols]] * (X[p] @ A[:, cols]).astype(np.float32)


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
    config : simulation parameters.
    baseline : (V,) baseline of the simulated voxels.
    enc : the hidden encoding model.
    events : the run's image trials.
    roi_pos : (V_roi,) positions of the ROI voxels among them; None if all are ROI voxels.
    rng : draws the drift and the noise.

    Returns
    -------
    Y : (T, V) float32 array in scanner units.
    """
    V = len(baseline)
    pct = _drift_pct(config, np.arange(config.n_volumes) * config.tr, V, rng)
    pct += _noise_pct(config, config.n_volumes, V, rng)
    Y = baseline.astype(np.float32) * (1 + pct / 100)
    del pct
    if events:
        pos = np.arange(V) if roi_pos is None else roi_pos
        _add_responses(Y, baseline, config, enc, events, pos)
    return Y


def simulate_run_apart(
    config: SimulationConfig,
    baseline: np.ndarray,
    enc: Encoding,
    events: list[Event],
    roi_pos: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The run of :func:`simulate_run` (same draws from ``rng``) with its thermal noise apart,
    so that the rest can move with the head before the noise is added.

    Returns
    -------
    signal : (T, V) float32 array, scanner units: baseline, drift and evoked responses.
    noise : (T, V) float32 array, scanner units: the thermal noise; ``signal + noise`` is
        :func:`simulate_run`'s run up to float32 rounding.
    """
    V = len(baseline)
    base = baseline.astype(np.float32)
    pct = _drift_pct(config, np.arange(config.n_volumes) * config.tr, V, rng)
    noise = _noise_pct(config, config.n_volumes, V, rng)
    noise *= base / 100
    signal = base * (1 + pct / 100)
    del pct
    if events:
        pos = np.arange(V) if roi_pos is None else roi_pos
        _add_responses(signal, baseline, config, enc, events, pos)
    return signal, noise


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


def _dataset_params(subj: SimulatedSubject) -> dict:
    """The ``params`` of the dataset: the config and what follows from it (no hidden parts)."""
    config, geo = subj.config, subj.geometry
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
    if config.motion != "none":
        params["true_motion"] = "truth/RUN_motion.tsv (for scoring; never streamed)"
    return params


def _write_test_runs(writer: DatasetWriter, subj: SimulatedSubject, bar: tqdm) -> None:
    """Simulate the whole-brain test runs one at a time and write each as (X, Y, Z, T); a
    moving subject's runs also get their true motion."""
    config, geo = subj.config, subj.geometry
    brain_idx = np.flatnonzero(geo.brain)
    base = geo.baseline[geo.brain]
    for k, events in enumerate(subj.test_runs):
        rng = _run_rng(config, 1, k)
        motion = run_motion(config, k)
        vol = np.zeros((*config.shape, config.n_volumes), np.float32)
        flat = vol.reshape(-1, config.n_volumes)  # a view: vol is C-contiguous
        if motion is None:
            Y = simulate_run(config, base, subj.encoding, events, geo.roi_in_brain, rng)
            flat[brain_idx] = Y.T
            del Y
        else:
            signal, noise = simulate_run_apart(
                config, base, subj.encoding, events, geo.roi_in_brain, rng
            )
            flat[brain_idx] = signal.T
            del signal
            move_run(vol, writer.affine, motion)
            flat[brain_idx] += noise.T
            del noise
        run = writer.write_run(vol, events)
        del vol, flat
        if motion is not None:
            writer.write_true_motion(run, motion)
        bar.update()


def _write_training(writer: DatasetWriter, subj: SimulatedSubject, bar: tqdm) -> None:
    """Simulate the ROI-only training runs and write their per-trial ridge-LSA betas."""
    config = subj.config
    betas, ids, runs, reps = [], [], [], []
    roi_base = subj.geometry.baseline[subj.geometry.roi]
    for k, events in enumerate(subj.train_runs):
        rng = _run_rng(config, 2, k)
        Y = simulate_run(config, roi_base, subj.encoding, events, None, rng)
        onsets = [e.onset for e in events]
        durations = [e.duration for e in events]
        betas.append(trial_betas(zscore_run(Y), onsets, durations, config.tr, method="lsa"))
        ids += [e.image_id for e in events]
        runs += [k + 1] * len(events)
        reps += [e.repetition for e in events]
        bar.update()
    writer.write_training(np.concatenate(betas), ids, runs, reps)


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
    config = config or SimulationConfig.subj01()
    subj = build_subject(config, progress=progress)
    params = _dataset_params(subj)
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
    writer.write_masks(subj.geometry.roi, subj.geometry.brain)
    stim = subj.stimuli
    writer.write_stimuli(stim.images, list(stim.splits), list(stim.sources))
    _write_test_runs(writer, subj, bar)
    _write_training(writer, subj, bar)
    bar.close()
    return writer.finalize()
