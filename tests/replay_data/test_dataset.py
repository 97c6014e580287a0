"""Replay dataset format: writer/reader round trip, validation, data home."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from replay_data.dataset import DatasetWriter, Event, ReplayDataset
from replay_data.home import data_home, dataset_dir
from rt_base.errors import ConfigError, DatasetError

SHAPE = (6, 7, 5)


def _events(n: int, split: str = "test") -> list[Event]:
    return [Event(3.0 + 4.0 * i, 3.0, i % 3, 1 + i // 3, split, i) for i in range(n)]


def _write(path: Path, *, finalize: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    roi = np.zeros(SHAPE, bool)
    roi[1:4, 2:5, 1:3] = True
    brain = np.zeros(SHAPE, bool)
    brain[1:5, 1:6, 1:4] = True
    runs = [rng.normal(1000, 30, (*SHAPE, 12)).astype(np.float32) for _ in range(2)]
    images = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    responses = rng.standard_normal((4, int(roi.sum()))).astype(np.float32)
    w = DatasetWriter(
        path,
        name="toy",
        subject="s1",
        tr=1.6,
        voxel_size=1.8,
        shape=SHAPE,
        simulated=True,
        params={"seed": seed},
    )
    w.write_masks(roi, brain)
    w.write_stimuli(images, ["test", "test", "test", "train", "filler"], ["a", "b", "c", "d", "e"])
    for data in runs:
        w.write_run(data, _events(4))
    w.write_training(responses, [3, 3, 3, 3], [1, 1, 2, 2], [1, 2, 3, 1])
    if finalize:
        w.finalize()
    return dict(roi=roi, brain=brain, runs=runs, images=images, responses=responses)


def test_round_trip(tmp_path):
    truth = _write(tmp_path / "toy")
    ds = ReplayDataset.open(tmp_path / "toy")
    assert ds.meta.name == "toy" and ds.meta.subject == "s1" and ds.meta.simulated
    assert ds.meta.shape == SHAPE and ds.meta.tr == 1.6 and ds.meta.voxel_size == 1.8
    assert ds.meta.n_voxels == truth["roi"].sum() and ds.meta.params == {"seed": 0}
    assert ds.runs == ["run-01", "run-02"]
    np.testing.assert_array_equal(ds.roi_mask(), truth["roi"])
    np.testing.assert_array_equal(ds.brain_mask(), truth["brain"])
    np.testing.assert_allclose(np.diag(ds.affine)[:3], 1.8)
    for run, data in zip(ds.runs, truth["runs"], strict=True):
        got = ds.load_run(run)
        assert got.dtype == np.float32 and got.shape == data.shape
        step = (data.max() - data.min()) / 65535
        assert np.abs(got - data).max() <= step  # int16 + scl_slope/inter keeps the values
        assert ds.n_volumes(run) == 12
        assert ds.events(run) == _events(4)
    np.testing.assert_array_equal(ds.stimuli(), truth["images"])
    np.testing.assert_array_equal(ds.image_ids("test"), [0, 1, 2])
    np.testing.assert_array_equal(ds.image_ids("filler"), [4])
    responses, ids = ds.training_responses()
    np.testing.assert_array_equal(responses, truth["responses"])
    np.testing.assert_array_equal(ids, [3, 3, 3, 3])
    _, runs, reps = ds.training_trials()
    np.testing.assert_array_equal(runs, [1, 1, 2, 2])
    np.testing.assert_array_equal(reps, [1, 2, 3, 1])
    # ROI voxel order is np.flatnonzero(mask) in C order, whatever the array layout.
    vol = ds.load_run("run-01")[..., 0]
    np.testing.assert_array_equal(
        vol[ds.roi_mask()], vol.ravel(order="C")[np.flatnonzero(truth["roi"])]
    )
    assert not list((tmp_path / "toy").rglob(".part-*"))


def test_incomplete_dataset_is_rejected(tmp_path):
    _write(tmp_path / "toy", finalize=False)
    info = json.loads((tmp_path / "toy" / "dataset.json").read_text())
    assert info["complete"] is False
    with pytest.raises(DatasetError, match="incomplete"):
        ReplayDataset.open(tmp_path / "toy")


def test_interrupted_writer_stays_incomplete(tmp_path):
    with pytest.raises(RuntimeError):
        with DatasetWriter(
            tmp_path / "x",
            name="x",
            subject="x",
            tr=1.0,
            voxel_size=2.0,
            shape=SHAPE,
            simulated=True,
        ) as w:
            w.write_masks(np.ones(SHAPE, bool))
            raise RuntimeError("power cut")
    with pytest.raises(DatasetError, match="incomplete"):
        ReplayDataset.open(tmp_path / "x")


@pytest.mark.parametrize(
    "victim",
    ["func/run-02_bold.nii.gz", "func/run-01_events.tsv", "stimuli/images.npy", "roi_mask.nii.gz"],
)
def test_missing_file_is_named(tmp_path, victim):
    _write(tmp_path / "toy")
    (tmp_path / "toy" / victim).unlink()
    with pytest.raises(DatasetError, match=Path(victim).name.replace(".", r"\.")):
        ReplayDataset.open(tmp_path / "toy")


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ReplayDataset.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="dataset.json"):
        ReplayDataset.open(tmp_path / "empty")


def test_truncated_bold_is_reported(tmp_path):
    _write(tmp_path / "toy")
    bold = tmp_path / "toy" / "func" / "run-01_bold.nii.gz"
    bold.write_bytes(bold.read_bytes()[:-200])
    ds = ReplayDataset.open(tmp_path / "toy")
    with pytest.raises(DatasetError, match="run-01_bold"):
        ds.load_run("run-01")


def test_bad_arguments(tmp_path):
    _write(tmp_path / "toy")
    ds = ReplayDataset.open(tmp_path / "toy")
    with pytest.raises(ConfigError, match="'run'.*run-01"):
        ds.load_run("run-07")
    with pytest.raises(ConfigError, match="'split'"):
        ds.image_ids("validation")


def test_writer_refuses_to_clobber(tmp_path):
    _write(tmp_path / "toy")
    with pytest.raises(DatasetError, match="already exists"):
        _write(tmp_path / "toy")
    _write(tmp_path / "toy2", seed=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("precious")
    with pytest.raises(DatasetError, match="not a replay dataset"):
        DatasetWriter(
            tmp_path / "other",
            name="o",
            subject="o",
            tr=1,
            voxel_size=1,
            shape=SHAPE,
            simulated=True,
            overwrite=True,
        )
    assert (tmp_path / "other" / "notes.txt").read_text() == "precious"


def test_finalize_needs_content(tmp_path):
    w = DatasetWriter(
        tmp_path / "x", name="x", subject="x", tr=1, voxel_size=2, shape=SHAPE, simulated=False
    )
    with pytest.raises(DatasetError, match="write_run"):
        w.finalize()


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MINDEYE_RT_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_home() == (tmp_path / "a").resolve()
    monkeypatch.delenv("MINDEYE_RT_HOME")
    assert data_home() == (tmp_path / "xdg" / "mindeye-rt").resolve()
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert data_home() == (tmp_path / "h" / ".local/share/mindeye-rt").resolve()
    assert data_home(tmp_path / "x", create=True) == (tmp_path / "x").resolve()
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "cache",
        "datasets",
        "models",
        "sessions",
    ]
    assert (
        dataset_dir("subj01", tmp_path / "x") == (tmp_path / "x" / "datasets" / "subj01").resolve()
    )


@pytest.mark.slow
def test_full_size_run_loads_fast(tmp_path):
    shape = (81, 104, 83)
    rng = np.random.default_rng(0)
    data = np.zeros((*shape, 188), np.float32)
    data[10:70, 10:95, 10:75] = rng.normal(1000, 20, (60, 85, 65, 188)).astype(np.float32)
    w = DatasetWriter(
        tmp_path / "big",
        name="big",
        subject="b",
        tr=1.6,
        voxel_size=1.8,
        shape=shape,
        simulated=True,
    )
    w.write_masks(data[..., 0] > 0)
    w.write_stimuli(np.zeros((1, 8, 8, 3), np.uint8), ["test"], ["x"])
    w.write_run(data, [Event(3.0, 3.0, 0, 1, "test", 0)])
    ds = w.finalize()
    t0 = time.perf_counter()
    got = ds.load_run("run-01")
    elapsed = time.perf_counter() - t0
    assert got.shape == (*shape, 188) and got.dtype == np.float32
    assert np.abs(got - data).max() < 0.05
    assert elapsed < 8.0, f"loading a full NSD-size run took {elapsed:.1f} s"
