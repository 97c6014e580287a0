"""Replay dataset writer: atomic files, refusing to clobber, incomplete until finalized."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fmri_compute.rigid import PARAM_NAMES, framewise_displacement
from replay_data import dataset_writer
from replay_data.dataset_reader import ReplayDataset
from replay_data.dataset_writer import DatasetWriter
from rt_base import atomic
from rt_base.errors import DatasetError
from tests.replay_data.toy_dataset import SHAPE, write_toy


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


def test_writer_refuses_to_clobber(tmp_path):
    write_toy(tmp_path / "toy")
    with pytest.raises(DatasetError, match="already exists") as err:
        write_toy(tmp_path / "toy")
    assert "mindeye-rt simulate --force" in str(err.value)  # the real flag, not --overwrite
    write_toy(tmp_path / "toy2", seed=1)
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


def test_nifti_goes_through_a_temporary_name_and_reads_back(tmp_path, monkeypatch):
    # rt_base.atomic's temporary name ends in ".gz" only; the mask must still be gzip NIfTI.
    seen = []
    real = atomic.write_with

    def spy(path, write):
        seen.append(Path(path).name)
        return real(path, write)

    monkeypatch.setattr(dataset_writer, "write_with", spy)
    truth = write_toy(tmp_path / "toy")
    assert {"roi_mask.nii.gz", "run-01_bold.nii.gz", "images.npy", "trials.tsv"} <= set(seen)
    img = nib.load(tmp_path / "toy" / "roi_mask.nii.gz")
    assert isinstance(img, nib.Nifti1Image)
    np.testing.assert_array_equal(np.asarray(img.dataobj) > 0, truth["roi"])
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == [
        "brain_mask.nii.gz",
        "dataset.json",
        "func",
        "roi_mask.nii.gz",
        "stimuli",
        "train",
    ]


def test_true_motion_is_written_with_its_framewise_displacement(tmp_path):
    motion = np.random.default_rng(0).normal(0, 0.3, (12, 6))
    write_toy(tmp_path / "toy", motion=motion)
    ds = ReplayDataset.open(tmp_path / "toy")
    np.testing.assert_allclose(ds.true_motion("run-01"), motion, atol=1e-6)
    assert ds.true_motion("run-02") is None
    table = (tmp_path / "toy" / "truth" / "run-01_motion.tsv").read_text().splitlines()
    assert table[0].split("\t") == [*PARAM_NAMES, "framewise_displacement"]
    fd = [float(row.split("\t")[-1]) for row in table[1:]]
    np.testing.assert_allclose(fd, framewise_displacement(motion), atol=1e-5)


def test_true_motion_needs_its_run(tmp_path):
    w = DatasetWriter(
        tmp_path / "x", name="x", subject="x", tr=1, voxel_size=2, shape=SHAPE, simulated=True
    )
    with pytest.raises(DatasetError, match="'run-01' has not been written"):
        w.write_true_motion("run-01", np.zeros((12, 6)))
    w.write_run(np.zeros((*SHAPE, 12), np.float32), [])
    with pytest.raises(DatasetError, match=r"\(12, 6\) finite numbers, got \(11, 6\)"):
        w.write_true_motion("run-01", np.zeros((11, 6)))
    with pytest.raises(DatasetError, match="finite"):
        w.write_true_motion("run-01", np.full((12, 6), np.nan))
    assert not (tmp_path / "x" / "truth").exists()
