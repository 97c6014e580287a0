"""Small value helpers of the session model: lenient reads of message fields, image checks,
display ranges (no Qt, no state).

Telemetry comes from other processes and other versions of them, so a field of the wrong type
is read as "missing" rather than raising on the receiver thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gui.state import behind_text


def as_int(value: Any) -> int | None:
    """``value`` as an int; None for None, a bool, or anything ``int()`` refuses."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_float(value: Any) -> float | None:
    """``value`` as a float; None for None, a bool, or anything ``float()`` refuses."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def status_behind(meta: dict) -> str:
    """What a status's ``backlog`` and ``behind_s`` say, or ``""`` without a backlog."""
    return behind_text(as_int(meta.get("backlog")) or 0, as_float(meta.get("behind_s")))


def is_rgb(value: Any) -> bool:
    """Whether ``value`` is an (H, W, 3) uint8 image with at least one pixel."""
    return (
        isinstance(value, np.ndarray)
        and value.ndim == 3
        and value.shape[-1] == 3
        and value.dtype == np.uint8
        and value.size > 0
    )


def describe_array(value: Any) -> str:
    """``"float32 (8, 8)"`` for an array, ``"none"`` for None, else the type's name."""
    if value is None:
        return "none"
    if isinstance(value, np.ndarray):
        return f"{value.dtype.name} {tuple(value.shape)}"
    return type(value).__name__


def is_affine(value: Any) -> bool:
    """Whether ``value`` reads as a (4, 4) array of numbers."""
    try:
        return np.asarray(value, float).shape == (4, 4)
    except (TypeError, ValueError):
        return False


def robust_levels(vol: np.ndarray) -> tuple[float, float]:
    """Display range of a volume: 1st-99.5th percentile of its non-zero voxels (subsampled).

    Parameters
    ----------
    vol : (X, Y, Z) array.

    Returns
    -------
    levels : ``(low, high)`` with ``high > low``; ``(0, 1)`` for a volume of zeros.
    """
    sample = np.asarray(vol, np.float32).reshape(-1)[::7]
    sample = sample[np.isfinite(sample) & (sample != 0)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def slice_position(mask: np.ndarray) -> tuple[int, int, int]:
    """Where the three slices cut: along each axis, the plane with the most ROI voxels (so the
    outline shows in every view); the grid's centre for an empty mask.

    Parameters
    ----------
    mask : (X, Y, Z) bool array, the ROI.
    """
    if mask.ndim != 3 or not mask.any():
        return tuple(int(n) // 2 for n in mask.shape[:3])  # type: ignore[return-value]
    pos = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        pos.append(int(np.argmax(mask.sum(axis=others))))
    return pos[0], pos[1], pos[2]
