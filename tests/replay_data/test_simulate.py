"""Simulated subject: the written dataset, determinism, and a real (hidden) encoding model."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from fmri_compute.normalize import zscore_run
from fmri_compute.offline_glm import trial_betas
from replay_data.simulate import build_subject, simulate_run, simulate_subject
from replay_data.simulation_config import SimulationConfig

TINY = SimulationConfig.tiny()


def test_tiny_generates_in_seconds(tiny, tmp_path):
    ds, cold = tiny
    assert ds.meta.simulated and ds.meta.name == "tiny"
    # Cold: first use of the MNI masks, source photos and embedder in this process.
    assert cold < 30.0, f"tiny preset took {cold:.1f} CPU s (cold)"
    t0 = time.process_time()
    simulate_subject(tmp_path / "warm", TINY, progress=False)
    warm = time.process_time() - t0
    assert warm < 10.0, f"tiny preset took {warm:.1f} CPU s (warm)"


def test_dataset_contents(tiny):
    ds, _ = tiny
    assert ds.meta.shape == TINY.shape and ds.meta.tr == TINY.tr
    assert ds.runs == ["run-01"]
    bold = ds.load_run("run-01")
    assert bold.shape == (*TINY.shape, TINY.n_volumes)
    brain = ds.brain_mask()
    mean = bold.mean(axis=-1)
    assert 700 < np.median(mean[brain]) < 1300  # realistic baseline in scanner units
    assert np.all(bold[~brain] == 0)
    responses, ids = ds.training_responses()
    assert responses.shape == (TINY.n_train_trials, TINY.n_roi)
    assert set(ids) <= set(ds.image_ids("train"))
    counts = np.bincount(ids, minlength=len(ds.stimuli()))[ds.image_ids("train")]
    assert counts.min() >= 1 and counts.max() <= 3
    # The hidden model is never written: only the documented files are there.
    files = sorted(str(p.relative_to(ds.path)) for p in ds.path.rglob("*") if p.is_file())
    assert files == [
        "brain_mask.nii.gz",
        "dataset.json",
        "func/run-01_bold.nii.gz",
        "func/run-01_events.tsv",
        "roi_mask.nii.gz",
        "stimuli/images.npy",
        "stimuli/images.tsv",
        "train/responses.npy",
        "train/trials.tsv",
    ]
    assert all(np.ndim(v) == 0 or len(v) == 3 for v in ds.meta.params.values())


def test_roi_count_exact(tiny):
    ds, _ = tiny
    roi = ds.roi_mask()
    assert roi.sum() == TINY.n_roi == ds.meta.n_voxels
    assert np.all(ds.brain_mask()[roi])


def test_deterministic(tiny, subject, tmp_path):
    again = build_subject(TINY)
    assert again.stimuli.images.tobytes() == subject.stimuli.images.tobytes()
    assert again.encoding.signal.tobytes() == subject.encoding.signal.tobytes()
    assert again.test_runs == subject.test_runs and again.train_runs == subject.train_runs
    ds, _ = tiny
    ds2 = simulate_subject(tmp_path / "again", TINY, progress=False)
    assert ds2.load_run("run-01").tobytes() == ds.load_run("run-01").tobytes()
    assert ds2.training_responses()[0].tobytes() == ds.training_responses()[0].tobytes()
    other = build_subject(replace(TINY, seed=8))
    assert not np.array_equal(other.encoding.signal, subject.encoding.signal)


def _corr_cols(a, b):
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    return (a * b).mean(0)


def test_training_responses_follow_hidden_model(tiny, subject):
    ds, _ = tiny
    responses, ids = ds.training_responses()
    truth = subject.encoding.signal[ids]
    r = _corr_cols(responses, truth)
    perm = np.random.default_rng(0).permutation(len(ids))
    null = _corr_cols(responses, truth[perm])
    assert np.median(r) > 0.3
    assert abs(null.mean()) < 0.03 and null.std() < 0.1


def test_replayed_test_trials_follow_hidden_model(tiny, subject):
    ds, _ = tiny
    bold = ds.load_run("run-01")
    Y = bold[ds.roi_mask()].T
    events = ds.events("run-01")
    betas = trial_betas(
        zscore_run(Y), [e.onset for e in events], [e.duration for e in events], ds.meta.tr
    )
    amp = subject.encoding.amplitudes([e.image_id for e in events])
    r = _corr_cols(betas, amp)
    assert np.median(r) > 0.3


def test_snr_scales_noise():
    cfg = replace(TINY, drift_pct=0.0, ar1_rho=0.0)
    base = np.full(5000, 1000.0, np.float32)
    enc = build_subject(TINY).encoding
    stds = []
    for snr in (0.5, 2.0):
        Y = simulate_run(replace(cfg, snr=snr), base, enc, [], None, np.random.default_rng(0))
        stds.append((Y / base * 100).std())
    assert stds[0] == pytest.approx(cfg.signal_pct / 0.5, rel=0.05)
    assert stds[1] == pytest.approx(cfg.signal_pct / 2.0, rel=0.05)
