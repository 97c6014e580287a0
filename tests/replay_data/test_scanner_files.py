"""Reading scanner volume files: formats told by content, half-written and foreign files,
nibabel's own conversion as the reference, acquisition time and TR."""

from __future__ import annotations

import gzip
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from replay_data.dataset_format import default_affine
from replay_data.scanner_export import export_volume, piece_bounds
from replay_data.scanner_files import (
    FORMATS,
    IncompleteFile,
    NotAVolume,
    ScannerVolume,
    read_volume,
    seconds_to_tm,
    volume_file_name,
)
from rt_base.errors import ConfigError, DatasetError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from nibabel.nicom import dicomwrappers

SHAPE = (20, 24, 20)
SLOPE, INTER = 0.25, -3.0


def _volume(seed: int = 0) -> np.ndarray:
    """Values on the stored grid ``k * SLOPE + INTER`` (float32 arithmetic, as the reader)."""
    k = np.random.default_rng(seed).integers(0, 4000, SHAPE)
    return k.astype(np.float32) * np.float32(SLOPE) + np.float32(INTER)


def _export(tmp_path, fmt, *, data=None, affine=None, series=7, index=3, name=None, **kw):
    path = tmp_path / (name or volume_file_name(fmt, series, index))
    kw = {"tr": 1.6, "acquisition_time": 3600 * 9 + 5.5, **kw}
    return export_volume(
        path,
        _volume() if data is None else data,
        default_affine(SHAPE, 2.0) if affine is None else affine,
        fmt=fmt,
        series=series,
        index=index,
        slope=SLOPE,
        intercept=INTER,
        **kw,
    )


def _rewrite(path, change):
    """Read a DICOM file, apply ``change(ds)``, write it back whole."""
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_back_series_index_time_tr_and_format(tmp_path, fmt):
    path = _export(tmp_path, fmt, series=13, index=42, tr=2.0, acquisition_time=45296.125)
    vol = read_volume(str(path))
    assert isinstance(vol, ScannerVolume)
    assert (vol.series, vol.index, vol.format, vol.path) == (13, 42, fmt, path)
    assert vol.acquisition_time == pytest.approx(45296.125, abs=1e-6)
    assert vol.tr == pytest.approx(2.0, abs=1e-9)
    assert vol.data.dtype == np.float32 and vol.data.flags.c_contiguous
    np.testing.assert_array_equal(vol.data, _volume())


@pytest.mark.parametrize("fmt", ["mosaic", "enhanced"])
def test_dicom_matches_nibabels_own_conversion(tmp_path, fmt):
    rot = nib.eulerangles.euler2mat(0.3, -0.2, 0.1)
    affine = default_affine(SHAPE, 2.0)
    affine[:3] = np.c_[rot, [1.0, -2.0, 3.0]] @ affine
    path = _export(tmp_path, fmt, affine=affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wrapper = dicomwrappers.wrapper_from_file(path)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    ref = nib.as_closest_canonical(nib.Nifti1Image(wrapper.get_data(), lps_to_ras @ wrapper.affine))
    vol = read_volume(path)
    np.testing.assert_allclose(vol.data, ref.get_fdata(), rtol=1e-6)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)


def test_nifti_matches_nibabels_canonical_image(tmp_path):
    affine = np.diag([-2.0, 2.0, -2.5, 1.0])[:, [1, 0, 2, 3]]  # axes swapped and flipped
    path = _export(tmp_path, "nifti", affine=affine, name="001_000002_000009.nii.gz")
    ref = nib.as_closest_canonical(nib.load(path))
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.data, ref.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    assert (vol.series, vol.index) == (2, 9)


def test_volume_file_name():
    assert volume_file_name("mosaic", 13, 1) == "001_000013_000001.dcm"
    assert volume_file_name("enhanced", 2, 345, session=4) == "004_000002_000345.dcm"
    assert volume_file_name("nifti", 13, 1) == "001_000013_000001.nii"
    with pytest.raises(ConfigError, match="'fmt'"):
        volume_file_name("analyze", 1, 1)
    with pytest.raises(ConfigError, match="'index'"):
        volume_file_name("nifti", 1, 0)


def test_seconds_to_tm():
    assert seconds_to_tm(0) == "000000.000000"
    assert seconds_to_tm(45296.25) == "123456.250000"
    assert seconds_to_tm(86399.999999) == "235959.999999"


# --- half-written files ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,name", [(f, None) for f in FORMATS] + [("nifti", "1_2_3.nii.gz")])
def test_every_prefix_of_a_file_is_incomplete(tmp_path, fmt, name):
    full = _export(tmp_path, fmt, name=name).read_bytes()
    cut = tmp_path / (name or volume_file_name(fmt, 1, 1))
    cuts = set(piece_bounds(len(full), 4)[:-1]) | set(range(0, 400, 3))
    cuts |= set(np.linspace(400, len(full) - 1, 40).astype(int).tolist())
    for n in sorted(cuts):
        cut.write_bytes(full[:n])
        with pytest.raises(IncompleteFile):
            read_volume(cut)
    cut.write_bytes(full)
    np.testing.assert_array_equal(read_volume(cut).data, _volume())


def test_dicom_cut_inside_pixel_data_says_how_much_is_there(tmp_path):
    path = _export(tmp_path, "mosaic")
    full = path.read_bytes()
    path.write_bytes(full[:-1000])
    with pytest.raises(IncompleteFile, match="pixel data has") as err:
        read_volume(path)
    assert path.name in str(err.value)


def test_dicom_image_without_pixel_data_yet_is_incomplete(tmp_path):
    path = _rewrite(_export(tmp_path, "mosaic"), lambda ds: delattr(ds, "PixelData"))
    with pytest.raises(IncompleteFile, match="MR Image Storage"):
        read_volume(path)


def test_empty_file_is_incomplete(tmp_path):
    path = tmp_path / "001_000001_000001.dcm"
    path.write_bytes(b"")
    with pytest.raises(IncompleteFile):
        read_volume(path)


# --- files that are not volumes ----------------------------------------------------------------


def test_random_bytes_and_text_are_not_volumes(tmp_path):
    noise = tmp_path / "noise.dcm"
    noise.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, np.uint8).tobytes())
    text = tmp_path / "001_000001_000001.nii"
    text.write_text("scanner log: series 1 done\n" * 20)
    for path in (noise, text):
        with pytest.raises(NotAVolume, match=path.name):
            read_volume(path)
    assert issubclass(NotAVolume, DatasetError) and issubclass(IncompleteFile, DatasetError)


def test_missing_file_and_folder_are_not_volumes(tmp_path):
    for path in (tmp_path / "gone.dcm", tmp_path):
        with pytest.raises(NotAVolume, match="cannot be read"):
            read_volume(path)


def _non_image(path, sop_class):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Manufacturer = "SIEMENS"
    ds.SeriesNumber = 99
    ds.ContentDescription = "phoenix report"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "sop_class",
    ["1.2.840.10008.5.1.4.1.1.88.11", "1.3.12.2.1107.5.9.1"],  # Basic Text SR, Siemens CSA
    ids=["text-sr", "siemens-csa-non-image"],
)
def test_non_image_dicom_is_not_a_volume(tmp_path, sop_class):
    path = _non_image(tmp_path / "report.dcm", sop_class)
    with pytest.raises(NotAVolume, match="without pixel data"):
        read_volume(path)


def test_dicom_with_wrong_pixel_data_length_is_not_a_volume(tmp_path):
    def shorten(ds):
        ds.PixelData = ds.PixelData[:-64]

    path = _rewrite(_export(tmp_path, "enhanced"), shorten)
    with pytest.raises(NotAVolume, match="need"):
        read_volume(path)


def test_single_slice_dicom_is_not_a_volume(tmp_path):
    def one_slice(ds):
        del ds[0x00290010], ds[0x00291010]  # without its CSA header, a mosaic is one 2D image
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]

    path = _rewrite(_export(tmp_path, "mosaic"), one_slice)
    with pytest.raises(NotAVolume, match="single 2D"):
        read_volume(path)


def test_nifti_with_several_volumes_or_a_foreign_name_is_not_a_volume(tmp_path):
    four_d = tmp_path / "001_000001_000001.nii"
    nib.save(nib.Nifti1Image(np.zeros((*SHAPE, 3), np.int16), np.eye(4)), four_d)
    with pytest.raises(NotAVolume, match="not one 3D volume"):
        read_volume(four_d)
    foreign = tmp_path / "bold.nii"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), np.eye(4)), foreign)
    with pytest.raises(NotAVolume, match="session_series_volume"):
        read_volume(foreign)


def test_broken_gzip_is_not_a_volume(tmp_path):
    blob = bytearray(gzip.compress(b"x" * 5000))
    blob[10:20] = b"\xff" * 10
    path = tmp_path / "001_000001_000001.nii.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(NotAVolume, match="gzip"):
        read_volume(path)


# --- metadata fallbacks ------------------------------------------------------------------------


def test_enhanced_time_from_frames_and_index_from_acquisition_number(tmp_path):
    def strip(ds):
        del ds.AcquisitionTime, ds.AcquisitionDateTime, ds.InstanceNumber
        ds.AcquisitionNumber = 11

    path = _rewrite(_export(tmp_path, "enhanced", acquisition_time=700.5), strip)
    vol = read_volume(path)
    assert vol.acquisition_time == pytest.approx(700.5)
    assert vol.index == 11


def test_enhanced_tr_from_the_shared_functional_groups(tmp_path):
    path = _rewrite(_export(tmp_path, "enhanced", tr=0.8), lambda ds: delattr(ds, "RepetitionTime"))
    assert read_volume(path).tr == pytest.approx(0.8)


def test_missing_or_malformed_times_read_as_none(tmp_path):
    def bad_time(ds):
        with warnings.catch_warnings():  # pydicom warns of the invalid time we write on purpose
            warnings.simplefilter("ignore", UserWarning)
            ds.AcquisitionTime = "noon"
        del ds.RepetitionTime

    vol = read_volume(_rewrite(_export(tmp_path, "mosaic"), bad_time))
    assert vol.acquisition_time is None and vol.tr is None
    plain = tmp_path / "001_000004_000002.nii"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), np.eye(4)), plain)
    vol = read_volume(plain)
    assert (vol.acquisition_time, vol.tr, vol.series, vol.index) == (None, None, 4, 2)


def test_nifti_tr_in_milliseconds_and_dcm2niix_descrip(tmp_path):
    img = nib.Nifti1Image(np.ones((*SHAPE, 1), np.int16), np.eye(4))
    img.header.set_xyzt_units("mm", "msec")
    img.header["pixdim"][4] = 1500
    img.header["descrip"] = b"TE=30;Time=101112.500;phase=1"
    path = tmp_path / "002_000005_000017.nii"
    nib.save(img, path)
    vol = read_volume(path)
    assert vol.tr == pytest.approx(1.5)
    assert vol.acquisition_time == pytest.approx(10 * 3600 + 11 * 60 + 12.5)
    assert vol.data.shape == SHAPE
