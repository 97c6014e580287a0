"""DICOM times (TM ``HHMMSS.ffffff``, DT) as seconds since midnight, both ways."""

from __future__ import annotations

import datetime as dt

__all__ = ["parse_dicom_time", "seconds_to_tm"]


def seconds_to_tm(seconds: float) -> str:
    """Seconds since midnight as a DICOM time ``HHMMSS.ffffff``."""
    micro = int(round(float(seconds) * 1e6))
    hours, rest = divmod(micro, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    return f"{hours:02d}{minutes:02d}{rest // 1_000_000:02d}.{rest % 1_000_000:06d}"


def _seconds(when: dt.time | dt.datetime) -> float:
    return when.hour * 3600 + when.minute * 60 + when.second + when.microsecond / 1e6


def parse_dicom_time(value, kind: type) -> float | None:
    """Seconds since midnight of a DICOM TM / DT value (``kind``: pydicom's ``TM`` or ``DT``),
    or None if absent or malformed."""
    if value in (None, ""):
        return None
    try:
        return _seconds(kind(str(value).strip()))
    except (ValueError, TypeError, OverflowError):
        return None
