"""A 4D NIfTI file that grows by one volume at a time and is readable at every moment.

A live session cannot be acquired again, so the volumes it receives are written as they come:
each volume is appended to an uncompressed ``.nii`` and only then is the header's time
dimension raised to count it.  nibabel can open the file during the session, and after a crash
it holds every volume whose header update was written (at most the last one is missing);
never a header that promises data the file does not have.  (Until the first volume's header is
written, the file is not yet a NIfTI.)
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from rt_base.errors import ConfigError

__all__ = ["GrowingNifti"]

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
        self._fh = None

    def append(self, volume: np.ndarray) -> None:
        """Write one volume, then count it in the header (both flushed to the OS)."""
        vol = np.asarray(volume)
        if vol.shape != self.shape:
            raise ConfigError(
                f"volume of shape {vol.shape} cannot join {self.path.name} of {self.shape}"
            )
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w+b")
        self._fh.seek(_HEADER_BYTES + self.n_volumes * vol.size * 4)
        self._fh.write(vol.astype("<f4").tobytes(order="F"))
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
