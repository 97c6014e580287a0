"""NSD conventions: 1-based MATLAB indices made 0-based, design files, session numbers, and the
errors for files that are not what NSD distributes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from replay_data.nsd_betas import zscore_trials
from replay_data.nsd_design import ExpDesign, read_design
from replay_data.nsd_layout import NsdLayout, check_nsd_files, parse_sessions
from rt_base.errors import ConfigError, DatasetError


def _mat(path, **over):
    subjectim = np.tile(np.arange(1, 10001, dtype=float) + 500, (8, 1))
    subjectim[1] += 20000  # subject 2 sees other images
    data = {
        "masterordering": np.tile([3.0, 1.0, 3.0, 2.0], 10)[None, :],  # 4 trials x 40 sessions
        "subjectim": subjectim,
        "sharedix": np.arange(501, 1501, dtype=float)[None, :],
    }
    data.update(over)
    data = {k: v for k, v in data.items() if v is not None}
    scipy.io.savemat(path, data)
    return path


def test_expdesign_indices_become_zero_based(tmp_path):
    d = ExpDesign.load(_mat(tmp_path / "e.mat"))
    assert d.trials_per_session == 1
    assert list(d.masterordering[:4]) == [2, 0, 2, 1]
    # trial k of subject 1: subjectim[0, masterordering[k] - 1] (1-based) - 1
    assert list(d.trial_images(1)[:4]) == [502, 500, 502, 501]
    assert list(d.trial_images(2)[:4]) == [20502, 20500, 20502, 20501]
    assert list(d.repetitions(1)[:6]) == [1, 1, 2, 1, 3, 2]
    assert list(d.is_shared(np.array([499, 500, 1499, 1500]))) == [False, True, True, False]


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"sharedix": None}, "no variable 'sharedix'"),
        ({"masterordering": np.zeros((1, 40))}, "1-based indices in 1..10000"),
        ({"masterordering": np.ones((1, 41))}, "not a multiple of the 40 sessions"),
        ({"subjectim": np.full((8, 5), 73001.0)}, "1-based indices in 1..73000"),
        ({"subjectim": np.ones((4, 5))}, r"'subjectim' must be \(8, N\)"),
        ({"sharedix": np.full((1, 3), 1.5)}, "must hold integers"),
    ],
)
def test_a_malformed_expdesign_is_named(tmp_path, over, match):
    with pytest.raises(DatasetError, match=match):
        ExpDesign.load(_mat(tmp_path / "e.mat", **over))
    (tmp_path / "junk.mat").write_bytes(b"not matlab")
    with pytest.raises(DatasetError, match="cannot read"):
        ExpDesign.load(tmp_path / "junk.mat")


def test_design_files(tmp_path):
    f = tmp_path / "design.tsv"
    f.write_text("0\n0\n46003\n0\n0\n12\n")
    assert list(read_design(f)) == [0, 0, 46003, 0, 0, 12]
    for text, match in [
        ("0\t1\n0\t2\n", "one column"),
        ("0\nx\n", "column of numbers"),
        ("0\n73001\n", "73k IDs"),
        ("0\n-1\n", "73k IDs"),
        ("0.5\n", "73k IDs"),
    ]:
        f.write_text(text)
        with pytest.raises(DatasetError, match=match):
            read_design(f)


def test_session_words():
    assert parse_sessions(None) is None and parse_sessions([]) is None
    assert parse_sessions(["1", "3-5", "2,40"]) == [1, 2, 3, 4, 5, 40]
    for bad in (["0"], ["41"], ["5-3"], ["a"], ["1-"]):
        with pytest.raises(ConfigError, match="'sessions'"):
            parse_sessions(bad)


def test_layout_paths_follow_the_nsd_manual(tmp_path):
    lay = NsdLayout(tmp_path, 3)
    rel = lambda p: str(p.relative_to(tmp_path))  # noqa: E731
    assert rel(lay.timeseries(2, 14)) == (
        "nsddata_timeseries/ppdata/subj03/func1pt8mm/timeseries/timeseries_session02_run14.nii.gz"
    )
    assert rel(lay.design(2, 1)) == (
        "nsddata_timeseries/ppdata/subj03/func1pt8mm/design/design_session02_run01.tsv"
    )
    assert rel(lay.betas_file(40)) == (
        "nsddata_betas/ppdata/subj03/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session40.nii.gz"
    )
    assert rel(lay.nsdgeneral) == "nsddata/ppdata/subj03/func1pt8mm/roi/nsdgeneral.nii.gz"
    assert rel(lay.expdesign) == "nsddata/experiments/nsd/nsd_expdesign.mat"
    assert rel(lay.stimuli) == "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    with pytest.raises(DatasetError, match="no NSD design files for subj03"):
        check_nsd_files(lay, None)


def test_zscore_is_per_voxel_over_trials():
    b = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 2.0], [5.0, 5.0, 8.0]])
    z = zscore_trials(b)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[:, 0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert np.all(z[:, 1] == 0)  # a constant voxel: 0, not NaN
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-7)
