"""The growing 4D NIfTI: readable after every volume, exact, and refuses the wrong shape."""

import nibabel as nib
import numpy as np
import pytest

from replay_data.growing_nifti import GrowingNifti
from rt_base.errors import ConfigError


def test_readable_after_every_volume_and_exact(tmp_path):
    shape = (5, 6, 4)
    aff = np.diag([1.8, 1.8, 2.0, 1.0])
    aff[:3, 3] = [-4, -5, 3]
    rng = np.random.default_rng(0)
    vols = [rng.normal(size=shape).astype(np.float32) for _ in range(4)]
    path = tmp_path / "run-01_bold.nii"
    with GrowingNifti(path, shape, aff, tr=1.6, description="test") as out:
        for k, vol in enumerate(vols):
            out.append(vol)
            img = nib.load(path)  # during the session
            assert img.shape == (*shape, k + 1)
            np.testing.assert_array_equal(np.asarray(img.dataobj)[..., k], vol)
    img = nib.load(path)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), np.stack(vols, -1))
    np.testing.assert_allclose(img.affine, aff)
    assert img.header.get_zooms()[3] == pytest.approx(1.6)
    assert img.header.get_xyzt_units() == ("mm", "sec")


def test_a_crash_after_the_data_and_before_the_header_loses_only_that_volume(tmp_path):
    shape = (3, 3, 3)
    path = tmp_path / "r.nii"
    out = GrowingNifti(path, shape, np.eye(4), tr=2.0)
    out.append(np.ones(shape))
    out.append(2 * np.ones(shape))
    out._fh.seek(0, 2)
    out._fh.write(np.zeros(27, "<f4").tobytes())  # a third volume's bytes, header not updated
    out._fh.flush()
    img = nib.load(path)
    assert img.shape == (3, 3, 3, 2)
    assert np.asarray(img.dataobj)[..., 1].max() == 2


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="uncompressed .nii"):
        GrowingNifti(tmp_path / "x.nii.gz", (3, 3, 3), np.eye(4), 1.0)
    with pytest.raises(ConfigError, match="3 positive sizes"):
        GrowingNifti(tmp_path / "x.nii", (3, 3), np.eye(4), 1.0)
    out = GrowingNifti(tmp_path / "x.nii", (3, 3, 3), np.eye(4), 1.0)
    with pytest.raises(ConfigError, match="cannot join"):
        out.append(np.zeros((3, 3, 4)))


def test_a_volume_that_never_came_is_stored_as_zeros_at_its_place(tmp_path):
    shape = (3, 4, 2)
    out = GrowingNifti(tmp_path / "r.nii", shape, np.eye(4), tr=1.0)
    out.append(np.full(shape, 1.0))
    out.append(np.full(shape, 4.0), index=3)  # volumes 1 and 2 never came
    out.pad_to(5)  # nor did the run's last one
    out.close()
    data = np.asarray(nib.load(tmp_path / "r.nii").dataobj)
    assert data.shape == (*shape, 5) and out.missing == [1, 2, 4]
    assert [float(data[..., k].max()) for k in range(5)] == [1.0, 0.0, 0.0, 4.0, 0.0]
    with pytest.raises(ConfigError, match="already written"):
        out.append(np.zeros(shape), index=2)


def test_compression_keeps_one_complete_copy_at_every_moment(tmp_path, monkeypatch):
    import gzip

    from replay_data.growing_nifti import compress_nifti

    shape = (4, 4, 3)
    vols = [np.random.default_rng(k).normal(size=shape).astype(np.float32) for k in range(3)]
    src = tmp_path / "r_bold.nii"
    with GrowingNifti(src, shape, np.eye(4), tr=1.0) as out:
        for vol in vols:
            out.append(vol)
    dst = tmp_path / "r_bold.nii.gz"

    def crash(*args, **kwargs):  # the disk fills up halfway through
        raise OSError("No space left on device")

    with monkeypatch.context() as m:
        m.setattr(gzip.GzipFile, "close", crash)
        with pytest.raises(OSError, match="No space"):
            compress_nifti(src, dst)
    assert src.is_file() and not dst.exists()  # the .nii stays; no partial .nii.gz
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]
    compress_nifti(src, dst)
    assert dst.is_file() and not src.exists()
    np.testing.assert_array_equal(np.asarray(nib.load(dst).dataobj), np.stack(vols, -1))
    with pytest.raises(ConfigError, match="X.nii.gz from X.nii"):
        compress_nifti(dst, tmp_path / "y.nii")
