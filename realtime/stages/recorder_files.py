"""What the recorder writes, apart from its run logic: the columns of its tables, the checks of
the buffers it saves, and its whole-or-nothing image and array files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from rt_base import atomic
from rt_base.errors import MessageError
from rt_wire.message import Message

RETRIEVAL_COLUMNS = [
    "n",
    "run",
    "trial",
    "image_id",
    "split",
    "repetition",
    "top1",
    "rank",
    "ways",
    "top_ids",
    "top_scores",
    "truncated",
    "latency_ms",
]

RECON_COLUMNS = [
    "n",
    "run",
    "trial",
    "image_id",
    "mode",
    "compute_ms",
    "delay_ms",
    "backlog",
    "recon_file",
    "blurry_file",
]

#: what a run name may be, since the recorder makes file names of it
SAFE_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_image(msg: Message, name: str) -> np.ndarray:
    """The ``name`` buffer of a recon message as a C-contiguous (H, W, 3) uint8 array.

    Raises
    ------
    MessageError
        The buffer is missing or is not a non-empty (H, W, 3) uint8 image.
    """
    where = f"recon of {msg.run} trial {msg.index}"
    if name not in msg.buffers:
        raise MessageError(
            f"{where} has no {name!r} buffer (buffers: {sorted(msg.buffers)}); the reconstruct "
            "stage must send its image as 'image'"
        )
    arr = msg.buffers[name]
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3 or 0 in arr.shape:
        raise MessageError(
            f"{where}: buffer {name!r} must be a non-empty (H, W, 3) uint8 RGB image, got "
            f"{arr.dtype} {tuple(arr.shape)}"
        )
    return np.ascontiguousarray(arr)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as PNG, atomically: ``path`` never holds a partial file."""
    atomic.write_with(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def buffer_of(msg: Message, name: str) -> np.ndarray:
    """The ``name`` buffer of ``msg``; a message without it is bad."""
    if name not in msg.buffers:
        raise MessageError(
            f"{msg.kind!r} {msg.index} of run {msg.run!r} has no {name!r} buffer "
            f"(buffers: {sorted(msg.buffers)})"
        )
    return msg.buffers[name]


def save_npy(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy``, atomically."""
    atomic.write_with(path, lambda tmp: np.save(tmp, array))
