"""Writing scanner volume files: a replay dataset's volumes survive every format bit for bit,
in any orientation; the DICOM is real (pydicom and nibabel read it, Siemens attributes, CSA
header); the bytes arrive in pieces."""

from __future__ import annotations

import threading
import time
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest

from replay_data.dataset_format import default_affine
from replay_data.dataset_reader import ReplayDataset
from replay_data.scanner_export import (
    ECHO_TIME_MS,
    ENHANCED_MR_IMAGE,
    MR_IMAGE,
    export_volume,
    piece_bounds,
)
from replay_data.scanner_files import (
    FORMATS,
    IncompleteFile,
    NotAVolume,
    read_volume,
    volume_file_name,
)
from replay_data.siemens_csa import csa2_header, mosaic_csa_tags
from rt_base.errors import ConfigError
from tests.replay_data.toy_dataset import write_toy

with warnings.catch_warnings():  # nibabel calls its DICOM readers "experimental" on import
    warnings.simplefilter("ignore", UserWarning)
    from nibabel.nicom import csareader, dicomwrappers

SHAPE = (20, 24, 20)


def _grid(shape, slope=1.0, inter=0.0, seed=0):
    k = np.random.default_rng(seed).integers(0, 3000, shape)
    return k.astype(np.float32) * np.float32(slope) + np.float32(inter)


def _oblique(affine):
    """``affine`` rotated about three axes and shifted."""
    out = affine.copy()
    out[:3] = np.c_[nib.eulerangles.euler2mat(0.25, -0.15, 0.4), [5.0, -8.0, 12.0]] @ affine
    return out


def _lps_ordered(shape, voxel):
    """Voxel axes running right-to-left, anterior-to-posterior, inferior-to-superior."""
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ default_affine(shape, voxel)


def _write(tmp_path, fmt, data, affine, **kw):
    kw = {"series": 5, "index": 1, "tr": 1.6, "acquisition_time": 1000.0, **kw}
    return export_volume(
        tmp_path / volume_file_name(fmt, kw["series"], kw["index"]), data, affine, fmt=fmt, **kw
    )


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A replay dataset's first run: volumes, affine, stored slope and intercept."""
    path = tmp_path_factory.mktemp("toy") / "toy"
    write_toy(path)
    ds = ReplayDataset.open(path)
    img = nib.load(path / "func" / f"{ds.runs[0]}_bold.nii.gz")
    return ds.load_run(ds.runs[0]), img.affine, float(img.dataobj.slope), float(img.dataobj.inter)


@pytest.mark.parametrize("fmt", FORMATS)
def test_replay_dataset_volume_round_trips_exactly(tmp_path, toy_run, fmt):
    bold, affine, slope, inter = toy_run
    for t in (0, bold.shape[3] - 1):
        path = _write(
            tmp_path, fmt, bold[..., t], affine, index=t + 1, slope=slope, intercept=inter
        )
        vol = read_volume(path)
        np.testing.assert_array_equal(vol.data, bold[..., t])
        np.testing.assert_allclose(vol.affine, affine, atol=1e-4)
        assert vol.index == t + 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("orientation", ["oblique", "lps", "permuted", "oblique-lps-aniso"])
def test_any_orientation_reads_back_as_nibabels_closest_canonical(tmp_path, fmt, orientation):
    data = _grid(SHAPE, slope=0.5, inter=100.0)
    affine = {
        "oblique": _oblique(default_affine(SHAPE, 2.0)),
        "lps": _lps_ordered(SHAPE, 2.0),
        "permuted": default_affine(SHAPE, 2.0)[:, [2, 0, 1, 3]],  # a sagittal acquisition
        "oblique-lps-aniso": _oblique(np.diag([-2.0, -2.5, 3.0, 1.0])),
    }[orientation]
    path = _write(tmp_path, fmt, data, affine, slope=0.5, intercept=100.0)
    ref = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    vol = read_volume(path)
    assert vol.data.shape == ref.shape
    np.testing.assert_array_equal(vol.data, ref.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)


def test_nsd_size_mosaic_round_trips(tmp_path):
    shape = (81, 104, 83)
    data, affine = _grid(shape, slope=0.5), _oblique(default_affine(shape, 1.8))
    path = _write(tmp_path, "mosaic", data, affine, slope=0.5, pieces=1)
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (810, 1040)  # 83 slices tiled 10 x 10
    vol = read_volume(path)
    ref = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    np.testing.assert_array_equal(vol.data, ref.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)


def test_values_off_the_integer_grid_are_rounded_to_it(tmp_path):
    data = np.random.default_rng(1).uniform(-50, 900, SHAPE).astype(np.float32)
    for fmt in FORMATS:
        vol = read_volume(_write(tmp_path, fmt, data, np.eye(4), slope=0.3, intercept=-60.0))
        assert np.abs(vol.data - data).max() <= 0.3 / 2 + 1e-4
        assert np.abs(vol.data - data).max() > 0.01  # it did round


# --- real DICOM --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,sop", [("mosaic", MR_IMAGE), ("enhanced", ENHANCED_MR_IMAGE)])
def test_dicom_is_a_siemens_mr_file_that_pydicom_and_nibabel_read(tmp_path, fmt, sop):
    data, affine = _grid(SHAPE), _oblique(default_affine(SHAPE, 2.0))
    path = _write(
        tmp_path,
        fmt,
        data,
        affine,
        series=13,
        index=4,
        tr=1.6,
        acquisition_time=12 * 3600 + 30.25,
        series_description="func_run-01",
    )
    ds = pydicom.dcmread(path)  # checks the preamble and file meta
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == sop
    assert ds.Manufacturer == "SIEMENS" and ds.Modality == "MR"
    assert (ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber) == (13, 4, 4)
    assert ds.AcquisitionTime == "120030.250000"
    assert float(ds.RepetitionTime) == 1600.0 and float(ds.EchoTime) == ECHO_TIME_MS
    assert ds.SeriesDescription == "func_run-01"
    assert ("MOSAIC" in ds.ImageType) == (fmt == "mosaic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wrapper = dicomwrappers.wrapper_from_data(ds)
    kind = dicomwrappers.MosaicWrapper if fmt == "mosaic" else dicomwrappers.MultiframeWrapper
    assert isinstance(wrapper, kind)
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ wrapper.affine
    np.testing.assert_allclose(ras, affine, atol=1e-4)  # rows along X, columns Y, slices Z
    np.testing.assert_array_equal(wrapper.get_data(), data)
    # the series and study stay the same from one volume to the next, the instance does not
    other = pydicom.dcmread(_write(tmp_path, fmt, data, affine, series=13, index=5))
    assert other.SeriesInstanceUID == ds.SeriesInstanceUID
    assert other.StudyInstanceUID == ds.StudyInstanceUID
    assert other.SOPInstanceUID != ds.SOPInstanceUID


def test_csa_header_reads_back_through_nibabel():
    tags = mosaic_csa_tags(83, 81, 104, [0.1, -0.2, 0.9746794344808963])
    tags["MosaicRefAcqTimes"] = ("FD", [0.0, 812.5, 27.5])
    csa = csareader.read(csa2_header(tags))
    assert csa["type"] == 2 and csa["n_tags"] == 4
    assert csareader.get_n_mosaic(csa) == 83
    assert csareader.get_acq_mat_txt(csa) == "81p*104"
    assert csareader.is_mosaic(csa)
    np.testing.assert_array_equal(csareader.get_slice_normal(csa), [0.1, -0.2, 0.9746794344808963])
    assert csareader.get_vector(csa, "MosaicRefAcqTimes", 3).tolist() == [0.0, 812.5, 27.5]


def test_mosaic_carries_the_csa_header_under_the_siemens_creator(tmp_path):
    path = _write(tmp_path, "mosaic", _grid(SHAPE), _lps_ordered(SHAPE, 2.0))
    csa = csareader.get_csa_header(pydicom.dcmread(path))
    assert csareader.get_n_mosaic(csa) == SHAPE[2]
    np.testing.assert_allclose(csareader.get_slice_normal(csa), [0, 0, 1], atol=1e-12)


def test_negative_stored_values_use_signed_pixels(tmp_path):
    data = _grid(SHAPE, inter=-2000.0)
    for fmt in ("mosaic", "enhanced"):
        path = _write(tmp_path, fmt, data, np.eye(4))
        assert pydicom.dcmread(path).PixelRepresentation == 1
        np.testing.assert_array_equal(read_volume(path).data, data)


# --- writing in pieces -------------------------------------------------------------------------


def test_piece_bounds_cover_the_file():
    assert piece_bounds(10, 4) == [2, 5, 7, 10]
    assert piece_bounds(3, 1) == [3]


@pytest.mark.parametrize("fmt", ["mosaic", "nifti"])
def test_reader_sees_half_written_files_while_export_runs(tmp_path, fmt):
    data = _grid(SHAPE)
    path = tmp_path / volume_file_name(fmt, 1, 1)
    writer = threading.Thread(
        target=export_volume,
        args=(path, data, np.eye(4)),
        kwargs=dict(
            fmt=fmt, series=1, index=1, tr=1.6, acquisition_time=5.0, pieces=4, pause_s=0.1
        ),
    )
    writer.start()
    outcomes = []
    deadline = time.monotonic() + 10
    while writer.is_alive() and time.monotonic() < deadline:
        if path.exists():
            try:
                read_volume(path)
                outcomes.append("volume")
            except IncompleteFile:
                outcomes.append("incomplete")
            except NotAVolume as e:  # never: a half-written volume is only incomplete
                outcomes.append(str(e))
        time.sleep(0.01)
    writer.join()
    assert set(outcomes) <= {"incomplete", "volume"}, outcomes
    assert "incomplete" in outcomes
    np.testing.assert_array_equal(read_volume(path).data, data)


# --- argument checks ---------------------------------------------------------------------------


def test_bad_arguments_raise_config_errors(tmp_path):
    data, affine = _grid(SHAPE), np.eye(4)
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    cases = [
        (dict(fmt="analyze"), "'fmt'"),
        (dict(data=data[..., None]), "'data'"),
        (dict(data=np.full(SHAPE, np.nan)), "'data'"),
        (dict(affine=np.eye(3)), "'affine'"),
        (dict(fmt="enhanced", affine=sheared), "perpendicular"),
        (dict(slope=0), "'slope'"),
        (dict(data=data * 100), "16-bit"),
        (dict(tr=0), "'tr'"),
        (dict(acquisition_time=86400), "'acquisition_time'"),
        (dict(pieces=0), "'pieces'"),
        (dict(index=0), "'index'"),
    ]
    for change, match in cases:
        kw = {
            "data": data,
            "affine": affine,
            "fmt": "mosaic",
            "series": 1,
            "index": 1,
            "tr": 1.6,
            "acquisition_time": 0.0,
        }
        kw.update(change)
        with pytest.raises(ConfigError, match=match):
            export_volume(tmp_path / "x.dcm", kw.pop("data"), kw.pop("affine"), **kw)
    assert not (tmp_path / "x.dcm").exists()
    with pytest.raises(ConfigError, match="create the export folder"):
        export_volume(
            tmp_path / "no" / "x.nii",
            data,
            affine,
            fmt="nifti",
            series=1,
            index=1,
            tr=1.6,
            acquisition_time=0.0,
        )


def test_sheared_affine_is_fine_for_nifti(tmp_path):
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    vol = read_volume(_write(tmp_path, "nifti", _grid(SHAPE), sheared))
    np.testing.assert_allclose(vol.affine, sheared, atol=1e-6)
