"""Replay dataset reader: round trip with the writer, validation, errors that name the file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from replay_data.dataset_format import Event
from replay_data.dataset_reader import ReplayDataset
from replay_data.dataset_writer import DatasetWriter
from rt_base.errors import ConfigError, DatasetError
from tests.replay_data.toy_dataset import SHAPE, toy_events, write_toy


def test_round_trip(tmp_path):
    truth = write_toy(tmp_path / "toy")
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
        assert ds.events(run) == toy_events(4)
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
    assert not list((tmp_path / "toy").rglob("*.partial-*"))  # no temporary file is left


def test_incomplete_dataset_is_rejected(tmp_path):
    write_toy(tmp_path / "toy", finalize=False)
    info = json.loads((tmp_path / "toy" / "dataset.json").read_text())
    assert info["complete"] is False
    with pytest.raises(DatasetError, match="incomplete"):
        ReplayDataset.open(tmp_path / "toy")


@pytest.mark.parametrize(
    "victim",
    ["func/run-02_bold.nii.gz", "func/run-01_events.tsv", "stimuli/images.npy", "roi_mask.nii.gz"],
)
def test_missing_file_is_named(tmp_path, victim):
    write_toy(tmp_path / "toy")
    (tmp_path / "toy" / victim).unlink()
    with pytest.raises(DatasetError, match=Path(victim).name.replace(".", r"\.")):
        ReplayDataset.open(tmp_path / "toy")


def test_true_motion_files_are_checked(tmp_path):
    write_toy(tmp_path / "toy", motion=np.zeros((12, 6)))
    table = tmp_path / "toy" / "truth" / "run-01_motion.tsv"
    table.write_text("\n".join(table.read_text().splitlines()[:-1]) + "\n")  # a row lost
    with pytest.raises(DatasetError, match="11 rows, the run has 12 volumes"):
        ReplayDataset.open(tmp_path / "toy").true_motion("run-01")
    table.unlink()
    with pytest.raises(DatasetError, match="truth/run-01_motion.tsv"):
        ReplayDataset.open(tmp_path / "toy")


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ReplayDataset.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="dataset.json"):
        ReplayDataset.open(tmp_path / "empty")


def test_truncated_bold_is_reported(tmp_path):
    write_toy(tmp_path / "toy")
    bold = tmp_path / "toy" / "func" / "run-01_bold.nii.gz"
    bold.write_bytes(bold.read_bytes()[:-200])
    ds = ReplayDataset.open(tmp_path / "toy")
    with pytest.raises(DatasetError, match="run-01_bold"):
        ds.load_run("run-01")


def test_bad_arguments(tmp_path):
    write_toy(tmp_path / "toy")
    ds = ReplayDataset.open(tmp_path / "toy")
    with pytest.raises(ConfigError, match="'run'.*run-01"):
        ds.load_run("run-07")
    with pytest.raises(ConfigError, match="'split'"):
        ds.image_ids("validation")


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
