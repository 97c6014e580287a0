"""The LSL marker inlet: ``--markers lsl[:NAME]`` finds the stimulus program's stream and hands
its samples, parsed (:mod:`replay_data.marker_schema`) and timed on the session clock
(:mod:`realtime.marker_clock`), to a source.

pylsl does the protocol; this module only resolves the stream, pulls without blocking, and
turns each sample into a :class:`ReceivedMarker`.  A sample that does not parse is returned
with its error (the source logs and counts it); nothing here raises on a bad sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from realtime.marker_clock import clock_offset, session_time
from replay_data.marker_schema import Marker, MarkerError, parse_marker
from rt_base.checks import check_number
from rt_base.errors import ConfigError, StageError

__all__ = ["MARKER_STREAM_TYPE", "MarkerInlet", "ReceivedMarker", "parse_markers_option"]

MARKER_STREAM_TYPE = "Markers"
_CORRECTION_EVERY_S = 5.0  # how often the sender-to-us clock correction is refreshed


def parse_markers_option(value: str | None) -> str | None:
    """The stream name of ``--markers lsl:NAME`` (None for ``lsl``: any ``Markers`` stream).

    Raises
    ------
    ConfigError
        ``value`` is not ``lsl`` or ``lsl:NAME``.
    """
    if isinstance(value, str):
        kind, _, name = value.partition(":")
        if kind == "lsl" and (not _ or name.strip()):
            return name.strip() or None
    raise ConfigError(
        f"'markers' must be 'lsl' (any LSL stream of type {MARKER_STREAM_TYPE!r}) or 'lsl:NAME' "
        f"(the stream named NAME), got {value!r}"
    )


@dataclass(frozen=True)
class ReceivedMarker:
    """One sample of the marker stream as received.

    ``marker`` is None when the sample is malformed (``error`` says why).  ``lsl_time`` is the
    sender's timestamp, ``correction`` the inlet's ``time_correction()`` when it was pulled,
    ``time`` its time on the session clock, ``received`` our wall-clock time of receipt.
    """

    raw: str
    marker: Marker | None
    lsl_time: float
    correction: float
    time: float
    received: float
    error: str = ""


class MarkerInlet:
    """An inlet on the stimulus program's ``Markers`` stream.

    Parameters
    ----------
    name : the stream's name (None: the only ``Markers`` stream there is).
    wait_s : how long :meth:`open` looks for the stream before giving up.
    """

    def __init__(self, name: str | None = None, *, wait_s: float = 120.0) -> None:
        self.name = name
        self.wait_s = check_number(wait_s, "markers_wait", minimum=0.1, unit="seconds")
        self.inlet = None
        self.info: dict = {}
        self.correction = 0.0
        self._offset = 0.0
        self._corrected_at = 0.0

    def describe(self) -> str:
        """``LSL stream 'NAME' (type Markers)`` or the one looked for."""
        name = self.info.get("name", self.name)
        return f"LSL stream {name!r} (type {MARKER_STREAM_TYPE})" if name else "LSL Markers stream"

    def open(self, stop=None) -> MarkerInlet:
        """Resolve the stream and open an inlet on it (returns ``self``).

        Raises
        ------
        StageError
            No such stream in ``wait_s`` (the program must run first), or several ``Markers``
            streams and no name to choose one.
        """
        import pylsl

        deadline = time.monotonic() + self.wait_s
        found = []
        while not found:
            if stop is not None and stop.is_set():
                raise StageError(f"stopped while waiting for the {self.describe()}")
            found = pylsl.resolve_byprop("type", MARKER_STREAM_TYPE, minimum=1, timeout=0.5)
            if self.name is not None:
                found = [s for s in found if s.name() == self.name]
            if not found and time.monotonic() > deadline:
                raise StageError(
                    f"no {self.describe()} found in {self.wait_s:g} s: start the stimulus program "
                    "(or `mindeye-rt stim-sim`) first, check the stream's name and type, and "
                    "see docs/psychopy.md for LSL discovery across machines"
                )
        names = sorted({(s.name(), s.source_id(), s.hostname()) for s in found})
        if len(names) > 1 and self.name is None:
            raise StageError(
                f"{len(names)} LSL streams of type {MARKER_STREAM_TYPE} are running {names}: "
                "choose one with --markers lsl:NAME"
            )
        info = found[0]
        if info.channel_count() < 1:
            raise StageError(f"the {self.describe()} has no channel")
        self.inlet = pylsl.StreamInlet(info, max_buflen=360, recover=True)
        self.inlet.open_stream(timeout=10.0)
        self.info = {
            "name": info.name(),
            "type": info.type(),
            "source_id": info.source_id(),
            "hostname": info.hostname(),
            "channel_format": info.channel_format(),
        }
        self._offset = clock_offset(pylsl.local_clock)
        self._refresh_correction(timeout=5.0)
        return self

    def _refresh_correction(self, timeout: float = 0.0) -> None:
        try:
            self.correction = float(self.inlet.time_correction(timeout=max(timeout, 0.01)))
        except Exception:  # noqa: BLE001 - pylsl's TimeoutError: keep the last estimate
            pass
        self._corrected_at = time.monotonic()

    def pull(self) -> list[ReceivedMarker]:
        """The samples that came since the last call (never blocks), in order."""
        if self.inlet is None:
            raise StageError("the marker inlet is not open: call open() first")
        if time.monotonic() - self._corrected_at > _CORRECTION_EVERY_S:
            self._refresh_correction()
        samples, stamps = self.inlet.pull_chunk(timeout=0.0)
        now = time.time()
        return [self.received(sample, ts, now) for sample, ts in zip(samples, stamps, strict=True)]

    def received(self, sample, lsl_time: float, now: float) -> ReceivedMarker:
        """One pulled sample (its channel values) as a :class:`ReceivedMarker`."""
        value = sample[0] if isinstance(sample, (list, tuple)) and sample else sample
        t = session_time(lsl_time, self.correction, self._offset)
        raw = value if isinstance(value, str) else repr(value)
        try:
            marker, error = parse_marker(value), ""
        except MarkerError as err:
            marker, error = None, str(err)
        return ReceivedMarker(raw, marker, float(lsl_time), self.correction, t, now, error)

    def close(self) -> None:
        if self.inlet is not None:
            self.inlet.close_stream()
            self.inlet = None
