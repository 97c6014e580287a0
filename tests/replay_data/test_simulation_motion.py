"""The simulated subject's head motion: its limits, its own random stream, and how it is applied."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from fmri_compute.rigid import framewise_displacement, move_volume, reslice
from replay_data.simulate import _run_rng, build_subject, simulate_run_apart, simulate_subject
from replay_data.simulation_config import PRESETS, SimulationConfig
from replay_data.simulation_motion import draw_motion, motion_limits, move_run, run_motion

MOVING = SimulationConfig.tiny_moving()


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """The tiny subject with head motion (same seed as the still ``tiny`` fixture)."""
    return simulate_subject(tmp_path_factory.mktemp("sim") / "tiny-moving", MOVING, progress=False)


def _norms(params):
    return np.linalg.norm(params[:, :3], axis=1), np.linalg.norm(params[:, 3:], axis=1)


@pytest.mark.parametrize("preset", ["tiny-moving", "subj01-moving"])
def test_cooperative_motion_obeys_its_limits(preset):
    cfg = PRESETS[preset]()
    max_mm, max_deg = motion_limits(cfg)
    for k in range(10):
        p = run_motion(cfg, k)
        assert p.shape == (cfg.n_volumes, 6) and p.dtype == np.float64
        assert np.all(p[0] == 0)  # every run starts at the still position
        mm, deg = _norms(p)
        assert mm.max() <= max_mm and deg.max() <= max_deg
        assert 0.2 < mm.max() and np.abs(p[:, 3:]).max() < 1.5  # it moves, rotations < ~1 deg
        fd = framewise_displacement(p)
        # the jumps stand out of the slow drift's framewise displacement
        assert np.sum(fd >= cfg.motion_jump_min_mm) == cfg.motion_jumps
        assert np.sort(fd)[-cfg.motion_jumps - 1] < 0.2


def test_drift_and_jumps_have_their_sizes():
    rng = np.random.default_rng(3)
    drift_only = replace(MOVING, motion_drift_mm=1.2, motion_jumps=0)
    for _ in range(10):
        mm, deg = _norms(draw_motion(drift_only, 80, rng))
        assert 0.6 - 1e-9 <= mm.max() <= 1.2 + 1e-9  # 50-100 % of motion_drift_mm
        assert deg.max() == pytest.approx(drift_only.motion_rot_deg_per_mm * mm.max())
    jumps_only = replace(MOVING, motion_drift_mm=0.0, motion_jumps=3, motion_rot_deg_per_mm=0.0)
    p = draw_motion(jumps_only, 80, rng)
    steps = np.linalg.norm(np.diff(p[:, :3], axis=0), axis=1)
    jumps = steps[steps > 0]
    assert len(jumps) == 3 and np.all((jumps >= 0.5) & (jumps <= 1.0))
    assert np.all(p[:, 3:] == 0)


def test_motion_has_its_own_random_stream():
    still = SimulationConfig.tiny()
    assert run_motion(still, 0) is None
    a, b = run_motion(MOVING, 0), run_motion(MOVING, 1)
    assert np.array_equal(a, run_motion(MOVING, 0)) and not np.array_equal(a, b)
    assert not np.array_equal(a, run_motion(replace(MOVING, seed=8), 0))
    # the subject itself is drawn from the same streams with or without motion
    s, m = build_subject(still), build_subject(MOVING)
    assert np.array_equal(s.encoding.signal, m.encoding.signal)
    assert np.array_equal(s.geometry.baseline, m.geometry.baseline)
    assert s.test_runs == m.test_runs and s.train_runs == m.train_runs


def test_move_run_checks_its_arguments():
    with pytest.raises(ValueError, match=r"\(T, 6\)"):
        move_run(np.zeros((8, 8, 8, 3), np.float32), np.eye(4), np.zeros((2, 6)))


def test_only_the_test_runs_differ_from_the_still_subject(tiny, moving):
    still, _ = tiny
    a, b = still.training_responses(), moving.training_responses()
    assert a[0].tobytes() == b[0].tobytes() and np.array_equal(a[1], b[1])
    assert np.array_equal(still.roi_mask(), moving.roi_mask())
    assert np.array_equal(still.brain_mask(), moving.brain_mask())
    assert np.array_equal(still.stimuli(), moving.stimuli())
    assert still.runs == moving.runs and still.events("run-01") == moving.events("run-01")
    vs, vm = still.load_run("run-01"), moving.load_run("run-01")
    assert np.abs(vs[..., 0] - vm[..., 0]).max() < 0.1  # p[0] = 0: only rounding
    assert np.abs(vs[..., -1] - vm[..., -1]).max() > 50
    params = moving.meta.params
    assert params["motion"] == "cooperative" and params["motion_jumps"] == MOVING.motion_jumps
    assert "truth/" in params["true_motion"] and "true_motion" not in still.meta.params


def test_the_dataset_stores_the_true_motion(tiny, moving):
    assert tiny[0].true_motion("run-01") is None
    p = moving.true_motion("run-01")
    np.testing.assert_allclose(p, run_motion(MOVING, 0), atol=1e-6)
    fd = np.loadtxt(moving.path / "truth" / "run-01_motion.tsv", skiprows=1)[:, 6]
    np.testing.assert_allclose(fd, framewise_displacement(p), atol=1e-5)


def test_volumes_are_the_moved_head_plus_unmoved_noise(moving):
    """Anatomy, drift and responses move with the head; the thermal noise does not."""
    subj = build_subject(MOVING)
    geo = subj.geometry
    signal, noise = simulate_run_apart(
        MOVING,
        geo.baseline[geo.brain],
        subj.encoding,
        subj.test_runs[0],
        geo.roi_in_brain,
        _run_rng(MOVING, 1, 0),
    )
    p = moving.true_motion("run-01")
    bold = moving.load_run("run-01")
    for t in (len(p) // 2, len(p) - 1):
        vol = np.zeros(MOVING.shape, np.float32)
        vol[geo.brain] = signal[t]
        expected = move_volume(vol, moving.affine, p[t])
        expected[geo.brain] += noise[t]
        assert np.abs(expected - bold[..., t]).max() < 0.1  # int16 quantisation


def test_registering_back_gives_the_still_volume_up_to_noise(tiny, moving):
    still = tiny[0]
    p = moving.true_motion("run-01")
    vs, vm = still.load_run("run-01"), moving.load_run("run-01")
    inner = binary_erosion(still.brain_mask(), iterations=2)
    base = np.median(vs[inner].mean(axis=1))
    noise_sd = base * MOVING.signal_pct / MOVING.snr / 100
    for t in np.argsort(np.linalg.norm(p[:, :3], axis=1))[-3:]:
        back = reslice(vm[..., t], moving.affine, p[t], order=3)
        registered = np.sqrt(np.mean((back - vs[..., t])[inner] ** 2))
        unregistered = np.sqrt(np.mean((vm[..., t] - vs[..., t])[inner] ** 2))
        # noise (twice) plus two cubic resamplings of the voxel-sharp anatomy
        assert registered < 3 * noise_sd and registered < 0.7 * unregistered
