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
