"""The NSD images a conversion needs, read one batch at a time from ``nsd_stimuli.hdf5``.

``imgBrick`` holds all 73,000 images as (73000, 425, 425, 3) uint8 (about 40 GB); only the
images the converted sessions show are read, in increasing index order (what h5py's fancy
indexing needs, and what reads the file front to back), resized and written into a
``.npy`` memory map, so memory stays at one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from tqdm import tqdm

from rt_base.atomic import write_with
from rt_base.errors import DatasetError

__all__ = ["NSD_IMAGE_SIDE", "extract_stimuli", "resize_image"]

#: Side in pixels of the images in ``imgBrick``.
NSD_IMAGE_SIDE = 425
_BATCH = 32


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 3) uint8 -> (size, size, 3) uint8 (bicubic, antialiased when shrinking);
    the image itself when it already has that size."""
    if image.shape[:2] == (size, size):
        return image
    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    return np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))


def _brick(f: h5py.File, path: Path, top: int) -> h5py.Dataset:
    brick = f.get("imgBrick")
    if not isinstance(brick, h5py.Dataset):
        raise DatasetError(f"{str(path)!r} has no dataset 'imgBrick': is it nsd_stimuli.hdf5?")
    if brick.ndim != 4 or brick.shape[3] != 3 or brick.dtype != np.uint8 or brick.shape[0] <= top:
        raise DatasetError(
            f"{str(path)!r}: 'imgBrick' must be (73000, H, W, 3) uint8 holding nsdId {top}, "
            f"got {brick.shape} {brick.dtype}"
        )
    return brick


def extract_stimuli(
    hdf5: str | Path,
    nsd_ids: np.ndarray,
    size: int,
    out: str | Path,
    *,
    progress: bool = True,
    resize: Callable[[np.ndarray, int], np.ndarray] = resize_image,
) -> Path:
    """Write ``imgBrick[nsd_ids]``, resized to ``size``, as ``out`` (.npy), atomically.

    Parameters
    ----------
    hdf5 : ``nsd_stimuli.hdf5``.
    nsd_ids : (N,) distinct 0-based nsdIds; row i of the output is ``nsd_ids[i]``'s image.
    size : output side in pixels.
    out : the ``.npy`` file (N, size, size, 3) uint8.
    progress : show a progress bar.

    Returns
    -------
    out as a Path.
    """
    hdf5, out = Path(hdf5), Path(out)
    nsd_ids = np.asarray(nsd_ids, np.int64)
    if len(np.unique(nsd_ids)) != len(nsd_ids):
        raise ValueError("'nsd_ids' must be distinct")
    order = np.argsort(nsd_ids)

    def write(tmp: Path) -> None:
        try:
            f = h5py.File(hdf5, "r")
        except OSError as e:
            raise DatasetError(f"cannot open {str(hdf5)!r} as HDF5 ({e})") from None
        with f:
            brick = _brick(f, hdf5, int(nsd_ids.max()))
            mm = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(len(nsd_ids), size, size, 3)
            )
            bar = tqdm(total=len(nsd_ids), desc="NSD images", unit="img", disable=not progress)
            for start in range(0, len(order), _BATCH):
                rows = order[start : start + _BATCH]
                block = brick[nsd_ids[rows]]  # increasing indices: one forward pass
                for row, image in zip(rows, block, strict=True):
                    mm[row] = resize(image, size)
                bar.update(len(rows))
            bar.close()
            mm.flush()
            del mm

    return write_with(out, write)
