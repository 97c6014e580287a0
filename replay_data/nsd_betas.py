"""NSD single-trial betas as MindEye trains on them: nsdgeneral voxels, z-scored per session.

NSD distributes each session's betas as one 4D NIfTI (X, Y, Z, 750) of int16 holding percent
signal change x 300 (NSD data manual, "Single-trial betas").  MindEye (1 and 2) used
``betas_fithrf_GLMdenoise_RR`` in the 1.8-mm volume space, restricted to the ``nsdgeneral``
ROI, each voxel z-scored over the trials of its session.  A session is read a block of trials at
a time (the file stays open, so the gzip stream is read once, front to back).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from rt_base.atomic import write_with
from rt_base.errors import DatasetError

__all__ = ["BETA_SCALE", "session_betas", "write_npy", "zscore_trials"]

#: NSD stores betas as int16 percent signal change times this.
BETA_SCALE = 300.0
_BLOCK = 64


def zscore_trials(betas: np.ndarray) -> np.ndarray:
    """(n_trials, V) -> each voxel's z-score over the trials (population std; a constant voxel
    becomes 0), float32."""
    b = np.asarray(betas, np.float64)
    mean = b.mean(axis=0)
    std = b.std(axis=0)
    std[std == 0] = 1.0
    return ((b - mean) / std).astype(np.float32)


def session_betas(path: str | Path, roi: np.ndarray, n_trials: int) -> np.ndarray:
    """One session's ROI betas in percent signal change, z-scored per voxel.

    Parameters
    ----------
    path : ``betas_sessionBB.nii.gz``.
    roi : (X, Y, Z) bool mask; voxel order ``volume[roi]``.
    n_trials : trials of the session (the file's 4th axis).

    Returns
    -------
    (n_trials, V) float32 array.
    """
    path = Path(path)
    try:
        img = nib.load(path, keep_file_open=True)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {str(path)!r} as NIfTI ({e})") from None
    want = (*roi.shape, n_trials)
    if tuple(img.shape) != want:
        raise DatasetError(f"{str(path)!r} has shape {img.shape}, expected {want}")
    out = np.empty((n_trials, int(roi.sum())), np.float64)
    for a in range(0, n_trials, _BLOCK):
        b = min(a + _BLOCK, n_trials)
        block = np.asanyarray(img.dataobj[..., a:b])  # (X, Y, Z, b - a), as stored (int16)
        out[a:b] = block[roi].T
    del img  # closes the file it kept open
    return zscore_trials(out / BETA_SCALE)


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as ``.npy`` atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return write_with(path, write)
