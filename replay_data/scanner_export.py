"""Write one fMRI volume as a scanner console exports it: Siemens mosaic DICOM, XA enhanced
(multi-frame) DICOM, or a 3D NIfTI file.

``mindeye-rt scanner-sim`` calls :func:`export_volume` once per TR to fill a folder as a scanner
does; :func:`replay_data.scanner_files.read_volume` reads the files back.  Values are stored as
16-bit integers with a rescale slope and intercept, so a volume already on that integer grid (a
replay dataset's run, stored the same way) comes back bit for bit.  The bytes reach the final
path in pieces, each flushed (visible to a reader at once, no fsync) with a pause between, as over
a network share: a reader polling the folder does see half-written files.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from replay_data.scanner_files import FORMATS, seconds_to_tm
from replay_data.siemens_csa import CREATOR, csa2_header, mosaic_csa_tags
from rt_base.checks import check_choice, check_number, check_path
from rt_base.errors import ConfigError

__all__ = ["MR_IMAGE", "ENHANCED_MR_IMAGE", "ECHO_TIME_MS", "export_volume", "piece_bounds"]

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
"""SOP class of classic MR Image Storage (one mosaic per file)."""
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
"""SOP class of Enhanced MR Image Storage (one multi-frame volume per file)."""
ECHO_TIME_MS = 30.0
"""The echo time written into every file (a typical 3 T BOLD echo time)."""

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> DICOM patient (LPS) space, its own inverse


def piece_bounds(n_bytes: int, pieces: int) -> list[int]:
    """Byte offsets where the ``pieces`` writes of an ``n_bytes`` file end (last = ``n_bytes``)."""
    return [n_bytes * (i + 1) // pieces for i in range(pieces)]


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))  # a DICOM decimal string: at most 16 characters


def _stored_integers(data: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """``round((data - intercept) / slope)`` as uint16 (Siemens' choice) or int16."""
    k = np.rint((np.asarray(data, np.float64) - intercept) / slope)
    lo, hi = float(k.min()), float(k.max())
    for dtype in (np.uint16, np.int16):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return k.astype(dtype)
    raise ConfigError(
        f"'data' spans {lo:g}..{hi:g} steps of slope {slope:g} from intercept {intercept:g}, "
        "more than 16-bit integers hold: pass a larger 'slope'"
    )


def _geometry(affine: np.ndarray) -> dict:
    """DICOM plane geometry (LPS) of an (X, Y, Z) array: rows run along X, columns along Y,
    slices (mosaic tiles / frames) along Z."""
    lps = _LPS @ affine
    axes = lps[:3, :3]
    sizes = np.linalg.norm(axes, axis=0)
    unit = axes / sizes
    if not np.allclose(unit.T @ unit, np.eye(3), atol=1e-6):
        raise ConfigError(
            "'affine' must have perpendicular voxel axes to be written as DICOM (a DICOM image "
            f"plane has no shear), got\n{np.array2string(affine, precision=4)}"
        )
    return {
        "spacing": sizes,
        # ImageOrientationPatient: direction along a row (column index grows), then down a column
        "iop": [_ds(v) for v in (*unit[:, 1], *unit[:, 0])],
        "normal": unit[:, 2],
        "axes": axes,
        "origin": lps[:3, 3],
    }


def _common(sop_class: str, series: int, index: int, description: str) -> Dataset:
    """File meta and the patient / study / series / equipment attributes of a Siemens MR file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    root = ["mindeye-rt scanner export"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=[*root, str(series), str(index)]
    )
    ds.StudyInstanceUID = generate_uid(entropy_srcs=root)
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*root, str(series)])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[*root, "frame of reference"])
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "Prisma"
    ds.MagneticFieldStrength = "3"
    ds.PatientName = "mindeye-rt^simulated"
    ds.PatientID = "mindeye-rt-sim"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = dt.date.today().strftime("%Y%m%d")
    ds.SeriesNumber = series
    ds.InstanceNumber = index
    ds.SeriesDescription = ds.ProtocolName = description
    ds.SequenceName = "epfid2d1"
    ds.PositionReferenceIndicator = ""
    return ds


def _pixels(ds: Dataset, stored: np.ndarray, rows: int, cols: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = int(stored.dtype == np.int16)
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW"


def _mosaic(ds: Dataset, stored: np.ndarray, geo: dict, scale: tuple[str, str]) -> None:
    """Tile the slices ``stored[:, :, s]`` row-major in a square mosaic, with the position
    convention of Siemens mosaics: ImagePositionPatient is the corner of the whole mosaic
    treated as one slice, not of the first tile (nibabel's ``MosaicWrapper`` undoes this)."""
    nx, ny, nz = stored.shape
    m = int(np.ceil(np.sqrt(nz)))
    tiles = np.zeros((nx, ny, m * m), stored.dtype)
    tiles[..., :nz] = stored
    mosaic = tiles.reshape(nx, ny, m, m).transpose(2, 0, 3, 1).reshape(m * nx, m * ny)
    shift = (m - 1) * np.array([nx, ny]) / 2  # (mosaic size - tile size) / 2, in voxels
    ipp = geo["origin"] - geo["axes"][:, :2] @ shift
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.ImagePositionPatient = [_ds(v) for v in ipp]
    ds.ImageOrientationPatient = geo["iop"]
    ds.PixelSpacing = [_ds(v) for v in geo["spacing"][:2]]
    ds.SliceThickness = ds.SpacingBetweenSlices = _ds(geo["spacing"][2])
    ds.RescaleIntercept, ds.RescaleSlope = scale
    ds.RescaleType = "US"
    tags = mosaic_csa_tags(nz, nx, ny, geo["normal"])
    ds.private_block(0x0029, CREATOR, create=True).add_new(0x10, "OB", csa2_header(tags))
    _pixels(ds, mosaic, m * nx, m * ny)


def _item(**attrs) -> Sequence:
    item = Dataset()
    for key, value in attrs.items():
        setattr(item, key, value)
    return Sequence([item])


def _enhanced(
    ds: Dataset, stored: np.ndarray, geo: dict, scale: tuple[str, str], tr_ms: str, when: str
) -> None:
    """One frame per slice ``stored[:, :, s]``, each frame with its position and
    ``InStackPositionNumber``; the geometry, timing and rescale shared by all frames."""
    nx, ny, nz = stored.shape
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.AcquisitionDateTime = when
    ds.NumberOfFrames = nz
    dim_org = generate_uid(entropy_srcs=["mindeye-rt dimensions", str(ds.SeriesNumber)])
    ds.DimensionOrganizationSequence = _item(DimensionOrganizationUID=dim_org)
    ds.DimensionIndexSequence = Sequence(
        [
            _item(
                DimensionOrganizationUID=dim_org,
                DimensionIndexPointer=pydicom.datadict.tag_for_keyword(keyword),
                FunctionalGroupPointer=pydicom.datadict.tag_for_keyword("FrameContentSequence"),
            )[0]
            for keyword in ("StackID", "InStackPositionNumber")
        ]
    )
    ds.SharedFunctionalGroupsSequence = _item(
        PixelMeasuresSequence=_item(
            PixelSpacing=[_ds(v) for v in geo["spacing"][:2]],
            SliceThickness=_ds(geo["spacing"][2]),
            SpacingBetweenSlices=_ds(geo["spacing"][2]),
        ),
        PlaneOrientationSequence=_item(ImageOrientationPatient=geo["iop"]),
        MRTimingAndRelatedParametersSequence=_item(RepetitionTime=tr_ms, EchoTrainLength=1),
        MREchoSequence=_item(EffectiveEchoTime=ECHO_TIME_MS),
        PixelValueTransformationSequence=_item(
            RescaleIntercept=scale[0], RescaleSlope=scale[1], RescaleType="US"
        ),
    )
    frames = []
    for s in range(nz):
        position = geo["origin"] + s * geo["axes"][:, 2]
        frame = Dataset()
        frame.FrameContentSequence = _item(
            FrameAcquisitionDateTime=when,
            FrameAcquisitionNumber=ds.InstanceNumber,
            StackID="1",
            InStackPositionNumber=s + 1,
            DimensionIndexValues=[1, s + 1],
        )
        frame.PlanePositionSequence = _item(ImagePositionPatient=[_ds(v) for v in position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    _pixels(ds, np.ascontiguousarray(stored.transpose(2, 0, 1)), nx, ny)


def _dicom_bytes(fmt, stored, affine, *, series, index, tr, acquisition_time, scale, description):
    geo = _geometry(affine)
    sop = MR_IMAGE if fmt == "mosaic" else ENHANCED_MR_IMAGE
    ds = _common(sop, series, index, description)
    tm = seconds_to_tm(acquisition_time)
    ds.AcquisitionDate = ds.StudyDate
    ds.AcquisitionTime = ds.ContentTime = ds.SeriesTime = ds.StudyTime = tm
    ds.AcquisitionNumber = index
    ds.RepetitionTime = _ds(tr * 1000.0)
    ds.EchoTime = _ds(ECHO_TIME_MS)
    if fmt == "mosaic":
        _mosaic(ds, stored, geo, scale)
    else:
        _enhanced(ds, stored, geo, scale, ds.RepetitionTime, ds.AcquisitionDate + tm)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _nifti_bytes(path: Path, stored, affine, *, tr, acquisition_time, slope, intercept) -> bytes:
    img = nib.Nifti1Image(stored, affine)
    hdr = img.header
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_slope_inter(slope, intercept)
    hdr.set_xyzt_units("mm", "sec")
    hdr["pixdim"][4] = tr
    hdr["descrip"] = f"TE={ECHO_TIME_MS:g};Time={seconds_to_tm(acquisition_time)}".encode()
    blob = img.to_bytes()
    return gzip.compress(blob, compresslevel=1) if path.name.endswith(".gz") else blob


def _write_in_pieces(path: Path, blob: bytes, pieces: int, pause_s: float) -> None:
    start = 0
    with open(path, "wb") as f:
        for i, end in enumerate(piece_bounds(len(blob), pieces)):
            if i and pause_s > 0:
                time.sleep(pause_s)
            f.write(blob[start:end])
            # flushed, each piece is visible to a reader at once (the page cache); no fsync: a
            # console's copy to the export share does not wait for a disk after its last write
            f.flush()
            start = end


def export_volume(
    path: str | os.PathLike,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    fmt: str,
    series: int,
    index: int,
    tr: float,
    acquisition_time: float,
    slope: float = 1.0,
    intercept: float = 0.0,
    pieces: int = 4,
    pause_s: float = 0.0,
    series_description: str = "mindeye-rt BOLD",
) -> Path:
    """Write one volume file as a scanner console would.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (see :func:`replay_data.scanner_files.volume_file_name`); a NIfTI
        path ending in ``.gz`` is gzipped.
    data : (X, Y, Z) float array
        Scanner units; stored as ``round((data - intercept) / slope)`` in 16 bits.
    affine : (4, 4) float array
        Voxel to RAS+ world mm (DICOM needs perpendicular voxel axes).
    fmt : ``"mosaic"``, ``"enhanced"`` or ``"nifti"``
    series, index : int
        SeriesNumber and 1-based volume number (InstanceNumber and AcquisitionNumber).
    tr : float
        Repetition time in seconds.
    acquisition_time : float
        Seconds since midnight when the volume was acquired.
    slope, intercept : float
        The rescale slope (non-zero) and intercept of the stored integers.
    pieces : int
        Writes (each flushed, not fsynced) the bytes reach ``path`` in.
    pause_s : float
        Sleep between two pieces, in seconds.
    series_description : str
        SeriesDescription and ProtocolName (DICOM).

    Returns
    -------
    Path
        ``path``.
    """
    check_choice(fmt, "fmt", FORMATS)
    data = np.asarray(data)
    affine = np.asarray(affine, np.float64)
    if data.ndim != 3 or not np.all(np.isfinite(data)):
        raise ConfigError(f"'data' must be a finite (X, Y, Z) array, got shape {data.shape}")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ConfigError(f"'affine' must be a finite (4, 4) array, got shape {affine.shape}")
    series = check_number(series, "series", minimum=1, integer=True)
    index = check_number(index, "index", minimum=1, integer=True)
    tr = check_number(tr, "tr", minimum=0, strict_min=True, unit="seconds")
    acquisition_time = check_number(
        acquisition_time, "acquisition_time", minimum=0, maximum=86399.999999, unit="seconds"
    )
    slope = float(np.float32(check_number(slope, "slope")))
    intercept = float(np.float32(check_number(intercept, "intercept")))
    if slope == 0:
        raise ConfigError("'slope' must be a non-zero number, got 0")
    pieces = check_number(pieces, "pieces", minimum=1, integer=True)
    pause_s = check_number(pause_s, "pause_s", minimum=0, unit="seconds")
    path = Path(path)
    check_path(path.parent, "path", kind="dir", remedy="create the export folder first")
    stored = _stored_integers(data, slope, intercept)
    if fmt == "nifti":
        blob = _nifti_bytes(
            path,
            stored,
            affine,
            tr=tr,
            acquisition_time=acquisition_time,
            slope=slope,
            intercept=intercept,
        )
    else:
        # float32 values printed shortest-exact: read back as float64 then float32, they agree
        scale = (str(np.float32(intercept)), str(np.float32(slope)))
        blob = _dicom_bytes(
            fmt,
            stored,
            affine,
            series=series,
            index=index,
            tr=tr,
            acquisition_time=acquisition_time,
            scale=scale,
            description=series_description,
        )
    _write_in_pieces(path, blob, pieces, pause_s)
    return path
