"""Read one fMRI volume file as a scanner console exports it: Siemens mosaic DICOM, Siemens XA
enhanced (multi-frame) DICOM, or a 3D NIfTI file.

The scanner source stage calls :func:`read_volume` on each new file of the export folder.  A
file the console is still writing raises :class:`IncompleteFile` (read it again later); a file
that will never be a volume raises :class:`NotAVolume`.  The format is told by the content
(``DICM`` magic, gzip magic, NIfTI ``sizeof_hdr``), not the name.  pydicom parses DICOM,
nibabel's :mod:`nibabel.nicom.dicomwrappers` unpacks mosaics and multi-frame files and gives
their affine, nibabel reads NIfTI.  Every volume comes back in the closest canonical (RAS+) voxel
order, as :func:`nibabel.as_closest_canonical` would give, with its RAS+ affine.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.valuerep import DT, TM

from replay_data.dicom_times import parse_dicom_time, seconds_to_tm
from rt_base.checks import check_choice, check_number
from rt_base.errors import DatasetError
from rt_wire.volume import scaled_to_float32

with warnings.catch_warnings():  # nibabel warns on import that its DICOM readers are "experimental"
    warnings.simplefilter("ignore", UserWarning)
    from nibabel.nicom import dicomwrappers

__all__ = [
    "FORMATS",
    "IncompleteFile",
    "NotAVolume",
    "ScannerVolume",
    "read_volume",
    "seconds_to_tm",
    "volume_file_name",
]

FORMATS = ("mosaic", "enhanced", "nifti")
"""Volume file formats: Siemens mosaic DICOM, XA enhanced DICOM, 3D NIfTI."""

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM patient (LPS) <-> RAS, its own inverse
_DICOM_HEAD = b"\x00" * 128 + b"DICM"  # preamble (zeros, as consoles write it) and magic
_NIFTI_HEADERS = {348: nib.Nifti1Image, 540: nib.Nifti2Image}
_NIFTI_NAME = re.compile(r"(\d+)_(\d+)\.nii(?:\.gz)?$")
_NIFTI_TIME = re.compile(r"Time=(\d{6}(?:\.\d*)?)")
_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


class IncompleteFile(DatasetError):
    """The file may still be being written (it ends too early): read it again later."""


class NotAVolume(DatasetError):
    """The file is not, and will never be, one fMRI volume (not DICOM or NIfTI, not an image,
    a single slice, several volumes ...)."""


@dataclass(frozen=True)
class ScannerVolume:
    """One volume read from a scanner export file.

    Attributes
    ----------
    stored : (X, Y, Z) array
        The file's values as stored (int16 or uint16 for DICOM; NIfTI's own type), before
        the rescale, C-contiguous, in the closest canonical (RAS+) voxel order.
    affine : (4, 4) float64 array
        Voxel to RAS+ world mm, matching ``stored``.
    series : int
        DICOM SeriesNumber (NIfTI: the file name's second-to-last number).
    index : int
        1-based volume number in the series (DICOM InstanceNumber, else AcquisitionNumber;
        NIfTI: the file name's last number).
    acquisition_time : float or None
        Seconds since midnight the volume was acquired (DICOM AcquisitionTime,
        AcquisitionDateTime or the earliest FrameAcquisitionDateTime; NIfTI: ``Time=HHMMSS.f``
        in the header's descrip, as dcm2niix writes it).
    tr : float or None
        Repetition time in seconds (DICOM RepetitionTime; NIfTI pixdim[4] with its time unit).
    format : str
        One of :data:`FORMATS`.
    path : Path
        The file read.
    slope, intercept : float
        The rescale of ``stored`` to scanner units (float32 values).
    """

    stored: np.ndarray
    affine: np.ndarray
    series: int
    index: int
    acquisition_time: float | None
    tr: float | None
    format: str
    path: Path
    slope: float = 1.0
    intercept: float = 0.0

    @property
    def shape(self) -> tuple[int, int, int]:
        """The volume's matrix (X, Y, Z)."""
        return tuple(self.stored.shape)  # type: ignore[return-value]

    @functools.cached_property
    def data(self) -> np.ndarray:
        """(X, Y, Z) float32 scanner units, C-contiguous: ``float32(stored) * float32(slope) +
        float32(intercept)``, the replay dataset reader's arithmetic (computed once)."""
        return scaled_to_float32(self.stored, self.slope, self.intercept)


def volume_file_name(fmt: str, series: int, index: int, session: int = 1) -> str:
    """Console-style file name ``SSS_SERIES_INDEX``: ``"001_000013_000001.dcm"`` (mosaic,
    enhanced) or ``"001_000013_000001.nii"`` (nifti)."""
    check_choice(fmt, "fmt", FORMATS)
    series = check_number(series, "series", minimum=1, integer=True)
    index = check_number(index, "index", minimum=1, integer=True)
    session = check_number(session, "session", minimum=1, integer=True)
    ext = "nii" if fmt == "nifti" else "dcm"
    return f"{session:03d}_{series:06d}_{index:06d}.{ext}"


def _canonical(raw: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder axes to the closest canonical (RAS+) order, in one C-contiguous copy of the
    stored values (the rescale is left to :attr:`ScannerVolume.data`, or to the consumer)."""
    ornt = nib.orientations.io_orientation(affine)
    if not np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        affine = affine @ nib.orientations.inv_ornt_aff(ornt, raw.shape)
        raw = nib.orientations.apply_orientation(raw, ornt)
    return np.array(raw, order="C", copy=True), affine


# --- DICOM -------------------------------------------------------------------------------------


def _dicom_time(ds, frames) -> float | None:
    for value, kind in ((ds.get("AcquisitionTime"), TM), (ds.get("AcquisitionDateTime"), DT)):
        seconds = parse_dicom_time(value, kind)
        if seconds is not None:
            return seconds
    times = [
        parse_dicom_time(f.FrameContentSequence[0].get("FrameAcquisitionDateTime"), DT)
        for f in frames or ()
        if "FrameContentSequence" in f
    ]
    times = [t for t in times if t is not None]
    return min(times) if times else None


def _dicom_tr(ds) -> float | None:
    tr = ds.get("RepetitionTime")
    if tr is None and "SharedFunctionalGroupsSequence" in ds:
        timing = ds.SharedFunctionalGroupsSequence[0].get("MRTimingAndRelatedParametersSequence")
        tr = timing[0].get("RepetitionTime") if timing else None
    return float(tr) / 1000.0 if tr not in (None, "") else None


def _cut_short(element) -> bool:
    """Whether a raw element's value is shorter than its declared length (the file ended)."""
    length = getattr(element, "length", None)
    value = getattr(element, "value", None)
    return length is not None and length != 0xFFFFFFFF and len(value or b"") < length


def _check_pixel_data(ds, name: str) -> None:
    """IncompleteFile when the file ends before or inside the pixel data; NotAVolume when it is
    complete without any, or with a wrong amount of it.

    pydicom stops quietly where a file ends, so an image cut short lacks its last elements.
    Without pixel data, a file is taken as still written when it has nothing past the file
    meta, ends inside an element, or has an image SOP class (the pixels come last).
    """
    if "PixelData" not in ds:
        elements = list(ds.elements())
        sop = str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID") or "")
        kind = pydicom.uid.UID(sop).name if sop else "no SOP class"
        if not elements or _cut_short(elements[-1]) or "Image Storage" in kind:
            raise IncompleteFile(f"{name}: DICOM ({kind}) without pixel data yet (still written?)")
        raise NotAVolume(f"{name}: DICOM without pixel data ({kind}), not an image")
    if ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian).is_compressed:
        return  # compressed frames: pydicom's decoder judges them
    raw = ds.get_item("PixelData")
    rows, cols, bits = ds.get("Rows"), ds.get("Columns"), ds.get("BitsAllocated")
    if None in (rows, cols, bits):
        raise NotAVolume(f"{name}: DICOM image without Rows, Columns or BitsAllocated")
    frames = int(ds.get("NumberOfFrames") or 1)
    need = rows * cols * frames * ds.get("SamplesPerPixel", 1) * bits // 8
    got = len(raw.value or b"")
    if _cut_short(raw):
        raise IncompleteFile(f"{name}: pixel data has {got} of {raw.length} bytes (still written?)")
    if got < need:
        raise NotAVolume(
            f"{name}: pixel data of {got} bytes, but {rows} x {cols} x {frames} frames of "
            f"{bits} bits need {need}"
        )


def _parse_dicom(name: str, blob: bytes):
    try:
        return pydicom.dcmread(io.BytesIO(blob))
    except (EOFError, struct.error, OSError, BytesLengthException) as e:
        # a value cut short by the end of the file does not decode (BytesLengthException)
        raise IncompleteFile(f"{name}: DICOM ends early ({e})") from None
    except (InvalidDicomError, ValueError, KeyError, TypeError) as e:
        raise NotAVolume(f"{name}: not a readable DICOM file ({e})") from None


def _unpack(ds, name: str):
    """nibabel's wrapper of ``ds``, its format, unscaled (rows, columns, slices) array, rescale
    (slope, intercept) and RAS affine."""
    try:
        wrapper = dicomwrappers.wrapper_from_data(ds)
        if isinstance(wrapper, dicomwrappers.MosaicWrapper):
            fmt = "mosaic"
        elif isinstance(wrapper, dicomwrappers.MultiframeWrapper):
            fmt = "enhanced"
        else:
            raise NotAVolume(
                f"{name}: a single 2D DICOM image, not a volume (export fMRI as mosaic or "
                "enhanced DICOM)"
            )
        raw = wrapper.get_unscaled_data()
        if raw.ndim != 3:
            raise NotAVolume(f"{name}: {fmt} DICOM of shape {raw.shape}, not one 3D volume")
        scale = np.asarray(wrapper.scale_factors, np.float64)
        if len(scale) != 1:  # one rescale per frame: let nibabel apply them
            raw, scale = wrapper.get_data(), np.array([[1.0, 0.0]])
        affine = _LPS @ wrapper.affine
    except (
        dicomwrappers.WrapperError,
        AssertionError,  # nibabel's check that the CSA and DICOM slice normals agree
        AttributeError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
    ) as e:
        raise NotAVolume(f"{name}: DICOM that nibabel cannot make a volume of ({e})") from None
    return wrapper, fmt, raw, (float(scale[0, 0]), float(scale[0, 1])), affine


def _read_dicom(path: Path, blob: bytes) -> ScannerVolume:
    name = path.name
    with warnings.catch_warnings():  # a file cut short has invalid values: our errors say why
        warnings.simplefilter("ignore", UserWarning)
        ds = _parse_dicom(name, blob)
        _check_pixel_data(ds, name)
        wrapper, fmt, raw, (slope, inter), affine = _unpack(ds, name)
        series = ds.get("SeriesNumber")
        index = ds.get("InstanceNumber") or ds.get("AcquisitionNumber")
        if series in (None, "") or index in (None, ""):
            raise NotAVolume(f"{name}: DICOM without SeriesNumber or InstanceNumber")
        when = _dicom_time(ds, getattr(wrapper, "frames", None))
        tr = _dicom_tr(ds)
    stored, affine = _canonical(raw, affine)
    scale = {"slope": float(np.float32(slope)), "intercept": float(np.float32(inter))}
    return ScannerVolume(stored, affine, int(series), int(index), when, tr, fmt, path, **scale)


# --- NIfTI -------------------------------------------------------------------------------------


def _nifti_class(blob: bytes) -> type | None:
    """NIfTI-1 or -2 image class by ``sizeof_hdr`` (either byte order), or None."""
    for order in "<>":
        klass = _NIFTI_HEADERS.get(struct.unpack(f"{order}i", blob[:4])[0])
        if klass is not None:
            return klass
    return None


def _read_nifti(path: Path, blob: bytes) -> ScannerVolume:
    name = path.name
    klass = _nifti_class(blob)
    header_size = 352 if klass is nib.Nifti1Image else 544
    if len(blob) < header_size:
        raise IncompleteFile(f"{name}: NIfTI header has {len(blob)} of {header_size} bytes")
    try:
        img = klass.from_bytes(blob)
        hdr = img.header
        shape = img.shape
        n_bytes = img.dataobj.offset + int(np.prod(shape)) * hdr.get_data_dtype().itemsize
    except Exception as e:  # nibabel raises many types for a bad header
        raise NotAVolume(f"{name}: not a readable NIfTI file ({e})") from None
    if len(blob) < n_bytes:
        raise IncompleteFile(f"{name}: NIfTI has {len(blob)} of {n_bytes} bytes")
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise NotAVolume(f"{name}: NIfTI of shape {shape}, not one 3D volume")
    match = _NIFTI_NAME.search(name)
    if match is None:
        raise NotAVolume(
            f"{name}: NIfTI name does not give series and volume: name it like "
            f"{volume_file_name('nifti', 13, 1)!r} (session_series_volume)"
        )
    raw = np.asarray(img.dataobj.get_unscaled()).reshape(shape, order="F")
    slope, inter = img.dataobj.slope, img.dataobj.inter
    stored, affine = _canonical(raw, img.affine.astype(np.float64))
    # a 3D image has pixdim[4] = 1 by default: a TR only with a time unit (dcm2niix sets "sec")
    unit = _TIME_UNITS.get(hdr.get_xyzt_units()[1], 1.0 if len(img.shape) == 4 else 0.0)
    step = float(str(hdr["pixdim"][4])) * unit  # float32's shortest decimal: 1.6 reads 1.6
    time = _NIFTI_TIME.search(hdr["descrip"].item().decode("latin-1"))
    return ScannerVolume(
        stored,
        affine,
        int(match.group(1)),
        int(match.group(2)),
        parse_dicom_time(time.group(1), TM) if time else None,
        step if step > 0 else None,
        "nifti",
        path,
        slope=float(np.float32(1.0 if slope is None or not np.isfinite(slope) else slope)),
        intercept=float(np.float32(0.0 if inter is None or not np.isfinite(inter) else inter)),
    )


# --- dispatch ----------------------------------------------------------------------------------


def _may_become_volume(blob: bytes) -> bool:
    """Whether ``blob`` is a prefix of a DICOM, gzip or NIfTI start (too short to tell)."""
    starts = (
        _DICOM_HEAD,
        b"\x1f\x8b",
        *(struct.pack(f"{e}i", n) for n in (348, 540) for e in "<>"),
    )
    return any(start.startswith(blob) for start in starts)


def read_volume(path: str | os.PathLike) -> ScannerVolume:
    """Read one scanner volume file (mosaic DICOM, enhanced DICOM or NIfTI, told by content).

    Parameters
    ----------
    path : str or os.PathLike
        The file.  A NIfTI file must be named ``..._SERIES_INDEX.nii[.gz]``.

    Returns
    -------
    ScannerVolume

    Raises
    ------
    IncompleteFile
        The file ends too early (a console still writing it) or is locked: try again later.
    NotAVolume
        The file is not and will not be one fMRI volume; the message names file and reason.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        raise NotAVolume(f"{path.name}: cannot be read ({e.strerror})") from None
    except OSError as e:  # locked by the writer, share hiccup: may work in a moment
        raise IncompleteFile(f"{path.name}: cannot be read now ({e})") from None
    if blob[128:132] == b"DICM":
        return _read_dicom(path, blob)
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except EOFError as e:
            raise IncompleteFile(f"{path.name}: gzip stream ends early ({e})") from None
        except (OSError, zlib.error) as e:
            raise NotAVolume(f"{path.name}: broken gzip file ({e})") from None
    if len(blob) >= 4 and _nifti_class(blob) is not None:
        return _read_nifti(path, blob)
    if _may_become_volume(blob):
        raise IncompleteFile(f"{path.name}: {len(blob)} bytes, too short to tell (still written?)")
    raise NotAVolume(f"{path.name}: neither DICOM (no 'DICM' at byte 128) nor NIfTI")
