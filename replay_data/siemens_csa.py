"""Write the Siemens CSA2 image header ("SV10") that a mosaic DICOM carries in (0029,xx10).

Siemens stores what DICOM has no attribute for (how many slices a mosaic tiles, the slice
normal, slice times) in a private binary block, the CSA header.  No library writes it, so this
module writes the small subset a mosaic needs; :mod:`nibabel.nicom.csareader` reads it back (the
tests go through it).  The layout, all little endian:

- ``b"SV10"``, 4 unused bytes, ``uint32`` tag count, ``uint32`` 77;
- per tag: name (64 bytes, NUL-terminated), ``int32`` value multiplicity, VR (4 bytes),
  ``int32`` syngo data type, ``int32`` item count, ``int32`` 77;
- per item: 4 ``int32`` (length, length, 77, length), then the value as NUL-terminated text
  padded to a multiple of 4 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

__all__ = ["CREATOR", "SYNGO_TYPES", "csa2_header", "mosaic_csa_tags"]

CREATOR = "SIEMENS CSA HEADER"
"""The private creator of group 0x0029 that owns the CSA blocks."""

SYNGO_TYPES = {"FD": 4, "DS": 3, "IS": 6, "US": 10, "SL": 7, "UL": 9, "SH": 22, "LO": 19}
"""The syngo data type code Siemens writes next to each VR (informative; readers ignore it)."""

_MAGIC = 77  # the constant Siemens puts in the check fields


def _item(text: str) -> bytes:
    value = text.encode("latin-1") + b"\x00"
    head = struct.pack("<4i", len(value), len(value), _MAGIC, len(value))
    return head + value + b"\x00" * (-len(value) % 4)


def csa2_header(tags: Mapping[str, tuple[str, Sequence[object]]]) -> bytes:
    """Encode ``{name: (vr, values)}`` as a CSA2 block.

    Parameters
    ----------
    tags : mapping of str to (str, sequence)
        Tag name (at most 63 ASCII characters), its DICOM VR (``"FD"``, ``"IS"``, ``"US"``,
        ``"SH"`` ...) and its values; numbers are written with ``repr`` so floats survive
        exactly.

    Returns
    -------
    bytes
        The block for the ``OB`` element (0029,xx10) of a Siemens image.
    """
    out = [b"SV10\x04\x03\x02\x01", struct.pack("<2I", len(tags), _MAGIC)]
    for name, (vr, values) in tags.items():
        if len(name) > 63 or len(vr) > 3:
            raise ValueError(f"CSA tag name {name!r} or VR {vr!r} too long")
        texts = [v if isinstance(v, str) else repr(v) for v in values]
        out.append(
            struct.pack(
                "<64si4s3i",
                name.encode("ascii"),
                len(texts),
                vr.encode("ascii"),
                SYNGO_TYPES.get(vr, 0),
                len(texts),
                _MAGIC,
            )
        )
        out.extend(_item(t) for t in texts)
    return b"".join(out)


def mosaic_csa_tags(
    n_slices: int, rows: int, cols: int, slice_normal: Sequence[float]
) -> dict[str, tuple[str, list]]:
    """The CSA tags a reader needs to unpack a mosaic and orient it.

    Parameters
    ----------
    n_slices : int
        Slices tiled in the mosaic (``NumberOfImagesInMosaic``).
    rows, cols : int
        One slice's rows and columns (``AcquisitionMatrixText``, as Siemens writes it:
        ``"{rows}p*{cols}"`` for a phase-first matrix).
    slice_normal : (3,) float sequence
        Unit vector, in DICOM patient (LPS) space, along which the tiled slices follow each
        other (``SliceNormalVector``); its sign tells a reader the slice order.
    """
    return {
        "NumberOfImagesInMosaic": ("US", [int(n_slices)]),
        "AcquisitionMatrixText": ("SH", [f"{int(rows)}p*{int(cols)}"]),
        "SliceNormalVector": ("FD", [float(v) for v in slice_normal]),
    }
