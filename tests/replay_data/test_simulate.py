"""Simulated subject: geometry, timing, determinism, and a real (hidden) encoding model."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace

import numpy as np
import pytest

from fmri_compute.glm import lss_betas
from fmri_compute.normalize import zscore_run
from replay_data.dataset import ReplayDataset
from replay_data.resolve import list_datasets, resolve_replay
from replay_data.simulate import (
    SimulationConfig,
    StimulusSet,
    build_subject,
    make_geometry,
    schedule_test_runs,
    simulate_run,
    simulate_subject,
)
from rt_base.errors import ConfigError, DatasetError

TINY = SimulationConfig.tiny()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny preset, generated once; also returns its generation time."""
    out = tmp_path_factory.mktemp("sim") / "tiny"
    t0 = time.process_time()  # CPU time: robust to other jobs sharing the machine
    ds = simulate_subject(out, TINY, progress=False)
    return ds, time.process_time() - t0


@pytest.fixture(scope="module")
def subject():
    return build_subject(TINY)


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


def test_subj01_geometry():
    cfg = SimulationConfig.subj01()
    geo = make_geometry(cfg.shape, cfg.n_roi, np.random.default_rng(0))
    assert geo.roi.shape == (81, 104, 83) and geo.roi.sum() == 15724
    assert 150_000 < geo.brain.sum() < 400_000
    assert np.all(geo.brain[geo.roi])
    y = geo.roi_mni[:, 1]
    assert np.median(y) < -60  # posterior: occipital / posterior temporal-parietal
    np.testing.assert_array_equal(
        np.flatnonzero(geo.brain)[geo.roi_in_brain], np.flatnonzero(geo.roi)
    )


def _check_timing(cfg, runs, n_test, reps):
    seen = {}
    for events in runs:
        onsets = np.array([e.onset for e in events])
        slots = (onsets - cfg.lead_in_s) / 4.0
        np.testing.assert_allclose(slots, np.round(slots), atol=1e-9)  # on the 4 s grid
        assert np.all(np.diff(onsets) >= 4.0 - 1e-9)
        assert all(e.duration == 3.0 for e in events)
        assert onsets[-1] + 3.0 + 8.0 <= cfg.n_volumes * cfg.tr
        assert [e.trial for e in events] == list(range(len(events)))
        assert len(events) == cfg.trials_per_run
        for e in events:
            seen.setdefault(e.image_id, []).append(e)
    test = {i: ev for i, ev in seen.items() if ev[0].split == "test"}
    assert sorted(test) == list(range(n_test))
    for ev in test.values():
        assert [e.repetition for e in ev] == list(range(1, reps + 1))
    return test


def test_events_timing_tiny(tiny):
    ds, _ = tiny
    runs = [ds.events(r) for r in ds.runs]
    _check_timing(TINY, runs, TINY.n_test_images, TINY.test_reps)
    splits = {e.split for ev in runs for e in ev}
    assert splits == {"test", "filler"}


def test_events_timing_subj01():
    cfg = SimulationConfig.subj01()
    assert cfg.n_volumes * cfg.tr == pytest.approx(300.8)
    splits = np.array(["test"] * 50 + ["filler"] * cfg.n_filler + ["train"] * 10)
    stim = StimulusSet(
        np.zeros((len(splits), 1, 1, 3), np.uint8), splits, splits, np.zeros((len(splits), 4)), ()
    )
    runs = schedule_test_runs(cfg, stim, np.random.default_rng(0))
    assert len(runs) == cfg.n_test_runs == 3
    test = _check_timing(cfg, runs, 50, 3)
    run_of = {id(e): k for k, ev in enumerate(runs) for e in ev}
    for ev in test.values():  # each repeat in a different run
        assert len({run_of[id(e)] for e in ev}) == 3


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
    betas = lss_betas(
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


def test_config_validation():
    with pytest.raises(ConfigError, match="'snr'.*-1"):
        SimulationConfig(snr=-1)
    with pytest.raises(ConfigError, match="'trials_per_run'"):
        SimulationConfig(trials_per_run=80)
    with pytest.raises(ConfigError, match="'n_train_trials'"):
        SimulationConfig(n_train_images=100, n_train_trials=1000)
    with pytest.raises(ConfigError, match="unknown simulation options.*'snrr'"):
        SimulationConfig.from_dict({"snrr": 1})
    with pytest.raises(ConfigError, match="'n_roi'"):
        make_geometry((20, 24, 20), 50_000, np.random.default_rng(0))
    assert SimulationConfig.from_dict({"snr": 0.7, "shape": [81, 104, 83]}).snr == 0.7


def test_resolve(tiny, tmp_path):
    ds, _ = tiny
    logs: list[str] = []
    home = tmp_path / "home"
    with pytest.raises(DatasetError, match="mindeye-rt simulate --name nsd99"):
        resolve_replay("nsd99", home=home, log=logs.append)
    # A prepared dataset wins.
    shutil.copytree(ds.path, home / "datasets" / "mine")
    got = resolve_replay("mine", home=home, log=logs.append)
    assert got.path == home.resolve() / "datasets" / "mine"
    with pytest.raises(DatasetError, match="available: mine"):
        resolve_replay("nsd99", home=home, log=logs.append)
    # A preset name is generated once, saying plainly that it is simulated.
    logs.clear()
    got = resolve_replay("tiny", home=home, progress=False, log=logs.append)
    assert got.meta.simulated and "SIMULATED" in logs[0] and "no real NSD tiny" in logs[0]
    assert list_datasets(home) == ["mine", "tiny"]
    assert not [p for p in (home / "datasets").iterdir() if p.name.startswith(".")]
    logs.clear()
    again = resolve_replay("tiny", home=home, log=logs.append)
    assert again.path == got.path and "SIMULATED" in logs[0] and len(logs) == 1
    with pytest.raises(ConfigError, match="'replay'"):
        resolve_replay("", home=home)
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_replay(str(tmp_path / "nowhere"), home=home)
    assert resolve_replay(str(ds.path), home=home, log=logs.append).root == ds.path
    # An interrupted generation is never used: it is regenerated.
    info = got.path / "dataset.json"
    info.write_text(info.read_text().replace('"complete": true', '"complete": false'))
    with pytest.raises(DatasetError, match="incomplete"):
        ReplayDataset.open(got.path)
    resolve_replay("tiny", home=home, progress=False, log=logs.append)
    assert ReplayDataset.open(got.path).meta.simulated
