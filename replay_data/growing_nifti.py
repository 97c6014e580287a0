"""A 4D NIfTI file that grows by one volume at a time and is readable at every moment.

A live session cannot be acquired again, so the volumes it receives are written as they come:
each volume is appended to an uncompressed ``.nii`` and only then is the header's time
dimension raised to count it.  nibabel can open the file during the session, and after a crash
it holds every volume whose header update was written (at most the last one is missing);
never a header that promises data the file does not have.  (Until the first volume's header is
written, the file is not yet a NIfTI.)

A volume that never came is stored as zeros at its place, so volume ``k`` is always frame ``k``
(:attr:`GrowingNifti.missing` lists them).  A gzip stream cannot be appended to crash-safely,
so the ``.nii.gz`` is made at the run's end by :func:`compress_nifti`: written whole under a
temporary name, renamed, and only then is the ``.nii`` removed.  A crash leaves the ``.nii``
(and maybe a hidden partial ``.nii.gz`` to delete), never a truncated ``.nii.gz``.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from rt_base import atomic
from rt_base.errors import ConfigError

__all__ = ["GrowingNifti", "compress_nifti"]

_HEADER_BYTES = 352  # 348-byte NIfTI-1 header + 4-byte extension flag; data start here


class GrowingNifti:
    """Appends (X, Y, Z) volumes to the 4D NIfTI at ``path`` (``.nii``, float32).

    Parameters
    ----------
    path : the file (created on the first volume; an existing file is replaced).
    shape : (X, Y, Z) of every volume.
    affine : (4, 4) voxel-to-world affine of the volumes.
    tr : seconds between volumes (the header's fourth zoom).
    description : the header's ``descrip`` (at most 80 characters).
    """

    def __init__(
        self, path: str | os.PathLike, shape, affine, tr: float, description: str = ""
    ) -> None:
        self.path = Path(path)
        if self.path.suffix != ".nii":
            raise ConfigError(f"a growing NIfTI must be an uncompressed .nii file, got {path!r}")
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ConfigError(f"volume shape must be 3 positive sizes, got {shape!r}")
        hdr = nib.Nifti1Header()
        hdr.set_data_dtype(np.float32)
        hdr.set_data_shape((*self.shape, 1))
        zooms = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(0))
        hdr.set_zooms((*zooms, float(tr)))
        hdr.set_xyzt_units("mm", "sec")
        hdr.set_qform(np.asarray(affine, float), code=1)
        hdr.set_sform(np.asarray(affine, float), code=1)
        hdr["vox_offset"] = _HEADER_BYTES
        hdr["descrip"] = description[:79].encode()
        self._header = hdr
        self.n_volumes = 0
        self.missing: list[int] = []
        self._fh = None

    def append(self, volume: np.ndarray, index: int | None = None) -> None:
        """Write one volume as frame ``index`` (default: the next), then count it in the header
        (both flushed to the OS).  Frames skipped to reach ``index`` are written as zeros and
        listed in :attr:`missing`.

        Raises
        ------
        ConfigError
            The volume's shape is not the file's, or ``index`` is a frame already written.
        """
        vol = np.asarray(volume)
        if vol.shape != self.shape:
            raise ConfigError(
                f"volume of shape {vol.shape} cannot join {self.path.name} of {self.shape}"
            )
        index = self.n_volumes if index is None else int(index)
        if index < self.n_volumes:
            raise ConfigError(
                f"frame {index} of {self.path.name} is already written ({self.n_volumes} frames)"
            )
        self.pad_to(index)
        self._write_frame(vol.astype("<f4").tobytes(order="F"))

    def pad_to(self, n: int) -> None:
        """Store zeros for the frames from :attr:`n_volumes` up to ``n`` (volumes that never
        came), so the file has ``n`` frames."""
        if n > self.n_volumes:
            blank = bytes(4 * int(np.prod(self.shape)))
            for k in range(self.n_volumes, n):
                self.missing.append(k)
                self._write_frame(blank)

    def _write_frame(self, data: bytes) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w+b")
        self._fh.seek(_HEADER_BYTES + self.n_volumes * len(data))
        self._fh.write(data)
        self._fh.flush()
        self.n_volumes += 1
        self._write_header(self.n_volumes)

    def _write_header(self, n: int) -> None:
        self._header.set_data_shape((*self.shape, n))
        self._fh.seek(0)
        self._fh.write(self._header.binaryblock + b"\x00" * 4)
        self._fh.flush()

    def close(self) -> None:
        """Flush to disk (fsync) and close; the file stays a valid NIfTI."""
        if self._fh is not None:
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> GrowingNifti:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compress_nifti(src: str | os.PathLike, dst: str | os.PathLike, level: int = 1) -> Path:
    """Gzip the NIfTI ``src`` into ``dst`` (``.nii.gz``) whole or not at all, then remove
    ``src``: at every moment one complete copy exists.

    ``level`` is zlib's (1 fastest .. 9 smallest); fMRI volumes of float32 compress little
    better at higher levels, and a run's file is compressed while the next run streams.
    """
    src, dst = Path(src), Path(dst)
    if not src.name.endswith(".nii") or not dst.name.endswith(".nii.gz"):
        raise ConfigError(f"compress_nifti makes X.nii.gz from X.nii, got {src} -> {dst}")

    def write(tmp: Path) -> None:
        with open(src, "rb") as fin, gzip.open(tmp, "wb", compresslevel=level) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())

    atomic.write_with(dst, write)
    src.unlink()
    return dst
