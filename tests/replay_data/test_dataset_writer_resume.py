"""DatasetWriter.resume: an interrupted write continues with its runs kept; nothing else is
resumed."""

from __future__ import annotations

import numpy as np
import pytest

from replay_data.dataset_format import Event
from replay_data.dataset_writer import DatasetWriter
from rt_base.errors import DatasetError

SHAPE = (6, 7, 5)


def _writer(path):
    return DatasetWriter(
        path,
        name="x",
        subject="s",
        tr=2.0,
        voxel_size=2.0,
        shape=SHAPE,
        simulated=False,
        params={"k": 1},
    )


def test_resume_keeps_the_written_runs(tmp_path):
    w = _writer(tmp_path / "d")
    run = np.arange(np.prod(SHAPE) * 4, dtype=np.int16).reshape(*SHAPE, 4)
    w.write_run(run, [Event(2.0, 3.0, 0, 1, "test", 0)])
    del w  # interrupted: never finalized
    w = DatasetWriter.resume(tmp_path / "d")
    assert w.written_runs == ["run-01"] and w.affine.shape == (4, 4)
    w.write_masks(np.ones(SHAPE, bool))
    w.write_stimuli(np.zeros((1, 8, 8, 3), np.uint8), ["test"], ["a"])
    w.write_run(run + 1, [])
    ds = w.finalize()
    assert ds.runs == ["run-01", "run-02"] and ds.meta.params == {"k": 1}
    assert np.array_equal(ds.load_run("run-01"), run) and ds.events("run-01")[0].onset == 2.0
    with pytest.raises(DatasetError, match="already complete"):
        DatasetWriter.resume(tmp_path / "d")
    with pytest.raises(DatasetError, match="no readable dataset.json"):
        DatasetWriter.resume(tmp_path / "nothing")
