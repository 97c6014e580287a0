"""A ``volume`` message's values: the scanner's stored integers and their scale, or floats.

A scanner stores each volume as 16-bit integers and a rescale (slope, intercept); a replay
dataset's NIfTI does the same.  Sent as those integers, a volume at NSD size is 1.4 MB on the
wire instead of 2.8 MB of float32, and neither source spends a pass converting it: the one
consumer that needs scanner units (the preprocess stage) converts once.

The ``volume`` buffer is then int16 or uint16 and the message's meta carries
``"scale": [slope, intercept]``; a float32 buffer carries no scale.  :func:`volume_values`
gives float32 scanner units either way, with the arithmetic of the replay dataset reader
(``float32(stored) * float32(slope) + float32(intercept)``), so a volume is bit for bit the
same whichever way it came.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rt_base.errors import MessageError

__all__ = ["SCALE_KEY", "STORED_DTYPES", "scaled_to_float32", "volume_payload", "volume_values"]

#: the meta key of a volume's (slope, intercept)
SCALE_KEY = "scale"
#: the stored integer types sent as they are
STORED_DTYPES = frozenset({"int16", "uint16"})


def scaled_to_float32(
    stored: np.ndarray, slope: float, intercept: float, order: str = "C"
) -> np.ndarray:
    """``float32(stored) * float32(slope) + float32(intercept)`` as one new array in ``order``
    (``C``, or ``F`` for a whole run whose volumes are then contiguous)."""
    out = np.empty(stored.shape, np.float32, order=order)
    if slope != 1.0:
        # dtype float32: the stored values are cast first, then multiplied in float32
        np.multiply(stored, np.float32(slope), out=out, dtype=np.float32, casting="unsafe")
    else:
        out[...] = stored
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def volume_payload(
    stored: np.ndarray, slope: float = 1.0, intercept: float = 0.0
) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``volume`` buffer and the meta entries of a volume whose file holds ``stored`` with
    the rescale ``slope``, ``intercept``: the integers as they are (C-contiguous) and the scale
    as float32 values, or float32 scanner units when ``stored`` is of another type."""
    slope, intercept = float(np.float32(slope)), float(np.float32(intercept))
    if stored.dtype.name in STORED_DTYPES:
        return np.ascontiguousarray(stored), {SCALE_KEY: [slope, intercept]}
    return scaled_to_float32(stored, slope, intercept), {}


def volume_values(buffer: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """The float32 scanner units of a ``volume`` message's buffer and meta.

    Raises
    ------
    MessageError
        A scale that is not two finite numbers with a non-zero slope, a stored-integer buffer
        without its scale, or a float buffer with one.
    """
    scale = meta.get(SCALE_KEY)
    if buffer.dtype.name not in STORED_DTYPES:
        if scale is not None:
            raise MessageError(
                f"a volume of {buffer.dtype.name} values must not carry a 'scale' (only "
                f"{sorted(STORED_DTYPES)} stored integers do), got {scale!r}"
            )
        return buffer if buffer.dtype == np.float32 else buffer.astype(np.float32)
    ok = isinstance(scale, (list, tuple)) and len(scale) == 2
    ok = ok and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scale
    )
    if not ok or scale[0] == 0:
        raise MessageError(
            f"a volume of {buffer.dtype.name} stored integers must carry 'scale': [slope, "
            f"intercept], two finite numbers with a non-zero slope, got {scale!r}"
        )
    return scaled_to_float32(buffer, float(scale[0]), float(scale[1]))
