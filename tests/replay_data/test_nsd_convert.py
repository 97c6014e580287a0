"""prepare-nsd on a fake NSD tree: converted values equal the source files, read back here
independently (nibabel, numpy, scipy, h5py), and the conversion's errors and resumption."""

from __future__ import annotations

import shutil

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io

from replay_data import nsd_convert
from replay_data.dataset_writer import DatasetWriter
from replay_data.nsd_convert import prepare_nsd
from replay_data.nsd_layout import NsdLayout
from replay_data.nsd_stimuli import resize_image
from rt_base.errors import ConfigError, DatasetError
from tests.replay_data.fake_nsd import RUNS, TRIALS_PER_RUN, make_fake_nsd

SIZE = 64


def _quiet(*_a):
    return None


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_nsd(tmp_path_factory.mktemp("nsd") / "nsd")


@pytest.fixture(scope="module")
def converted(fake, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "subj01"
    return prepare_nsd(fake.root, 1, out, image_size=SIZE, progress=False, log=_quiet)


def _mat(fake):
    m = scipy.io.loadmat(fake.layout.expdesign)
    order = m["masterordering"].ravel().astype(int)  # 1-based into subjectim's columns
    ids73k = m["subjectim"][fake.subject - 1, order - 1].astype(int)  # 1-based 73k IDs
    return order, ids73k, set(m["sharedix"].ravel().astype(int))


def _nsd_ids(ds) -> np.ndarray:
    """Replay image id -> nsdId, from images.tsv's source column."""
    rows = ds._image_table()
    return np.array([int(r["source"].removeprefix("nsd:")) for r in rows])


def _source_run(name: str) -> tuple[int, int]:
    """'ses-02_run-03' -> (2, 3)."""
    return int(name[4:6]), int(name[11:13])


def test_runs_are_the_source_time_series_bit_for_bit(fake, converted):
    ds = converted
    assert ds.meta.tr == pytest.approx(4 / 3, abs=1e-15) and not ds.meta.simulated
    assert "4/3 s" in ds.meta.params["tr_note"] and "1.6" in ds.meta.params["tr_note"]
    for name in ds.runs:
        s, r = _source_run(name)
        src = nib.load(fake.layout.timeseries(s, r))
        assert np.array_equal(ds.load_run(name), np.asanyarray(src.dataobj))
        np.testing.assert_allclose(ds.affine, src.affine)


def test_rest_runs_are_left_out(fake, converted):
    ses2 = [n for n in converted.runs if n.startswith("ses-02")]
    assert ses2 == [f"ses-02_run-{r:02d}" for r in range(2, RUNS + 2)]  # not run 01 / 05
    assert len(converted.runs) == 2 * RUNS


def test_events_are_the_design_files(fake, converted):
    ds = converted
    order, ids73k, shared = _mat(fake)
    nsd_of = _nsd_ids(ds)
    counts: dict[int, int] = {}
    reps = [counts.__setitem__(i, counts.get(i, 0) + 1) or counts[i] for i in order]
    per_session = RUNS * TRIALS_PER_RUN
    for s in fake.sessions:
        trial = (s - 1) * per_session
        for name in [n for n in ds.runs if n.startswith(f"ses-{s:02d}")]:
            design = np.loadtxt(fake.layout.design(s, int(name[-2:])), dtype=int)
            onsets = np.flatnonzero(design)
            events = ds.events(name)
            assert len(events) == len(onsets) == TRIALS_PER_RUN
            for e, v in zip(events, onsets, strict=True):
                assert e.onset == pytest.approx(v * 4 / 3, abs=5e-4)  # 3 decimals in the TSV
                assert e.duration == 3.0
                assert nsd_of[e.image_id] + 1 == design[v] == ids73k[trial]
                assert e.repetition == reps[trial]
                assert e.split == ("test" if design[v] in shared else "train")
                trial += 1


def test_training_responses_are_the_betas_zscored_per_session(fake, converted):
    ds = converted
    _, ids73k, shared = _mat(fake)
    roi = np.asarray(nib.load(fake.layout.nsdgeneral).dataobj) > 0
    assert np.array_equal(ds.roi_mask(), roi)
    responses, image_ids = ds.training_responses()
    nsd_of = _nsd_ids(ds)
    per_session = RUNS * TRIALS_PER_RUN
    expect, expect_ids = [], []
    for s in fake.sessions:
        raw = np.asanyarray(nib.load(fake.layout.betas_file(s)).dataobj)
        assert raw.dtype == np.int16
        b = raw[roi].T / 300.0
        z = (b - b.mean(0)) / b.std(0)
        session_ids = ids73k[(s - 1) * per_session : s * per_session]
        keep = ~np.isin(session_ids, list(shared))
        expect.append(z[keep])
        expect_ids += list(session_ids[keep] - 1)
    np.testing.assert_allclose(responses, np.concatenate(expect), rtol=0, atol=2e-6)
    assert list(nsd_of[image_ids]) == expect_ids
    assert not set(image_ids) & set(ds.image_ids("test"))


def test_stimuli_are_the_shown_images_resized(fake, converted):
    ds = converted
    nsd_of = _nsd_ids(ds)
    _, ids73k, shared = _mat(fake)
    shown = np.unique(ids73k[: len(fake.sessions) * RUNS * TRIALS_PER_RUN] - 1)
    assert sorted(nsd_of) == sorted(shown)
    with h5py.File(fake.layout.stimuli) as f:
        for i, n in enumerate(nsd_of):
            assert np.array_equal(ds.stimuli()[i], resize_image(f["imgBrick"][n], SIZE))
    test = set(ds.image_ids("test"))
    assert test == {i for i, n in enumerate(nsd_of) if n + 1 in shared} and len(test) == 6


def test_full_size_images_are_copied_exactly(fake, tmp_path):
    ds = prepare_nsd(
        fake.root, 1, tmp_path / "big", sessions=[1], image_size=425, progress=False, log=_quiet
    )
    with h5py.File(fake.layout.stimuli) as f:
        for i, n in enumerate(_nsd_ids(ds)):
            assert np.array_equal(ds.stimuli()[i], f["imgBrick"][n])
    assert ds.runs == [f"ses-01_run-{r:02d}" for r in range(1, RUNS + 1)]


def test_every_missing_file_is_named_before_any_work(fake, tmp_path):
    root = tmp_path / "nsd"
    shutil.copytree(fake.root, root)
    lay = NsdLayout(root, 1)
    gone = [lay.timeseries(1, 2), lay.betas_file(2), lay.stimuli]
    for p in gone:
        p.unlink()
    with pytest.raises(DatasetError) as err:
        prepare_nsd(root, 1, tmp_path / "out", progress=False, log=_quiet)
    for p in gone:
        assert str(p) in str(err.value)
    assert "3 file(s)" in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetError, match="design_session07_run01"):
        prepare_nsd(root, 1, tmp_path / "out", sessions=[7], progress=False, log=_quiet)


def test_a_design_file_of_another_session_is_caught(fake, tmp_path):
    root = tmp_path / "nsd"
    shutil.copytree(fake.root, root)
    lay = NsdLayout(root, 1)
    shutil.copy(lay.design(1, 1), lay.design(2, 3))
    with pytest.raises(DatasetError, match="session 2.*design files"):
        prepare_nsd(root, 1, tmp_path / "out", progress=False, log=_quiet)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subject": 9}, "'subject' must be an integer <= 8"),
        ({"image_size": 8}, "'image_size' must be an integer >= 16"),
        ({"betas": "betas_x"}, "'betas' must be one of"),
    ],
)
def test_bad_options_are_refused(fake, tmp_path, kwargs, match):
    args = {"subject": 1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        prepare_nsd(fake.root, out=tmp_path / "o", progress=False, log=_quiet, **args)
    with pytest.raises(ConfigError, match="'nsd_root' must be an existing"):
        prepare_nsd(tmp_path / "nowhere", 1, tmp_path / "o", progress=False)


def test_an_interrupted_conversion_resumes_where_it_stopped(fake, tmp_path, monkeypatch):
    out = tmp_path / "subj01"
    runs, betas = [], []
    write_run, session_betas = DatasetWriter.write_run, nsd_convert.session_betas

    def counting_run(self, data, events, run=None, stop=("ses-02_run-03",)):
        if run in stop:
            raise KeyboardInterrupt
        runs.append(run)
        return write_run(self, data, events, run)

    def counting_betas(path, roi, n):
        betas.append(path.name)
        return session_betas(path, roi, n)

    monkeypatch.setattr(DatasetWriter, "write_run", counting_run)
    monkeypatch.setattr(nsd_convert, "session_betas", counting_betas)
    with pytest.raises(KeyboardInterrupt):
        prepare_nsd(fake.root, 1, out, image_size=SIZE, progress=False, log=_quiet)
    assert runs[-1] == "ses-02_run-02" and betas == ["betas_session01.nii.gz"]
    runs.clear(), betas.clear()
    monkeypatch.setattr(
        DatasetWriter, "write_run", lambda self, d, e, run=None: counting_run(self, d, e, run, ())
    )
    logs: list[str] = []
    with pytest.raises(DatasetError, match="other options"):
        prepare_nsd(fake.root, 1, out, image_size=32, progress=False, log=logs.append)
    ds = prepare_nsd(fake.root, 1, out, image_size=SIZE, progress=False, log=logs.append)
    assert runs == ["ses-02_run-03", "ses-02_run-04"] and betas == ["betas_session02.nii.gz"]
    assert "resuming" in logs[0] and "4 runs already written" in logs[0]
    assert not (out / "nsd-work").exists() and len(ds.training_responses()[0]) == 30


def test_a_complete_dataset_is_kept_unless_forced(fake, converted, tmp_path):
    out = tmp_path / "subj01"
    shutil.copytree(converted.root, out)
    with pytest.raises(DatasetError, match="already holds a complete"):
        prepare_nsd(fake.root, 1, out, sessions=[1], progress=False, log=_quiet)
    ds = prepare_nsd(fake.root, 1, out, sessions=[1], force=True, progress=False, log=_quiet)
    assert len(ds.runs) == RUNS


def test_resolution_prefers_the_prepared_subject_and_says_so(fake, converted, tmp_path):
    from replay_data.resolve import resolve_replay

    home = tmp_path / "home"
    (home / "datasets").mkdir(parents=True)
    shutil.copytree(converted.root, home / "datasets" / "subj01")
    logs: list[str] = []
    ds = resolve_replay("subj01", home=home, log=logs.append)
    assert not ds.meta.simulated and ds.root == home / "datasets" / "subj01"
    assert "RECORDED" in logs[0] and "NSD subj01" in logs[0] and "4/3 s" in logs[0]


def test_the_builtin_simulated_subject_is_replaced(fake, tmp_path):
    out = tmp_path / "subj01"
    w = DatasetWriter(
        out, name="subj01", subject="s", tr=1.6, voxel_size=1.8, shape=(10, 12, 10), simulated=True
    )
    w.write_masks(np.ones((10, 12, 10), bool))
    w.write_stimuli(np.zeros((1, 8, 8, 3), np.uint8), ["test"], ["x"])
    w.write_run(np.zeros((10, 12, 10, 3)), [])
    w.finalize()
    (out / ".builtin-preset").write_text("subj01")
    logs: list[str] = []
    ds = prepare_nsd(fake.root, 1, out, sessions=[1], progress=False, log=logs.append)
    assert not ds.meta.simulated and "SIMULATED" in logs[0]
