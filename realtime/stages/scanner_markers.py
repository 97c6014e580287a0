"""The scanner source's trial events from the stimulus program's markers (``stream --scanner DIR
--markers lsl[:NAME]``): a live session.

In a live session the scanner sets the pace and only the stimulus program knows what was shown
and when.  The two meet on one clock (:mod:`realtime.marker_clock`): the markers' LSL timestamps
and the volumes' file times (``source.acquired``) are both put on the wall clock, and each run's
:class:`~realtime.marker_clock.LiveRunClock` pins volume index to time, by the program's
trigger markers when it forwards them (the scanner's '5' key presses), else by the volumes'
file times.  A trial's onset is its marker's time in data time (seconds from the run's first
volume), as ``events.tsv`` gives it.

- A run is a scanner series, as without markers; the program's ``run_start`` may come before
  the series' first volume (held for it) or after it.
- Before volume ``k`` is sent, the trials whose onsets ``k * TR`` reached are sent, as a replay
  of ``events.tsv`` sends them.  A trial's marker normally comes before the volumes that make
  it due; one that comes after (its onset is behind a volume already sent) is sent as soon as it
  comes, marked ``late`` (``late_s``: how far behind, in data seconds) and counted: the estimate
  stage decodes it at its next volume if its decode point has passed (or at the run's end),
  never drops it.
- The design dataset's ``events.tsv`` is not read; the design still gives the run's name, TR,
  expected length, and the images' splits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from rt_base.checks import check_number
from rt_wire.message import Message


class ScannerMarkersMixin:
    """Markers for :class:`realtime.stages.scanner_source.ScannerSource`, which provides
    ``self.run`` (a :class:`~realtime.stages.scanner_runs.ScannerRun`), ``self.design``,
    ``notice``/``report`` and ``_stop``.  ``self.markers`` is None without ``--markers``."""

    def _init_markers(self, markers: str | None, wait_s: float, record_dir: str | None) -> None:
        self.markers = None
        self._marker_options = None
        if markers is not None:
            from realtime.lsl_markers import parse_markers_option

            name = parse_markers_option(markers)
            wait = check_number(wait_s, "markers_wait", minimum=0.1, unit="seconds")
            self._marker_options = (name, wait, record_dir)

    def _open_markers(self) -> None:
        """Find the program's marker stream (on the producing thread: it may take a while)."""
        if self._marker_options is None:
            return
        from realtime.lsl_markers import MarkerInlet
        from realtime.marker_clock import LiveRunClock
        from realtime.stages.marker_events import MarkerEvents

        name, wait, record_dir = self._marker_options
        inlet = MarkerInlet(name, wait_s=wait)
        self.report("info", f"looking for the {inlet.describe()} (up to {wait:g} s)")
        inlet.open(self._stop)
        self.report("info", f"trial events from the {inlet.describe()}")
        self.markers = MarkerEvents(
            inlet,
            speed=1.0,
            design=self.design,
            notice=self.notice,
            record_dir=record_dir,
            clock=LiveRunClock,
        )

    def _close_markers(self) -> None:
        if self.markers is not None:
            self.markers.close()
            self.markers.inlet.close()

    def _marker_status(self) -> dict:
        return {} if self.markers is None else {"markers": dict(self.markers.counts)}

    def _markers_run_end(self, n_volumes: int) -> dict:
        """The run's markers figures for ``run_end``'s meta (``{}`` without markers)."""
        return {} if self.markers is None else {"markers": self.markers.end_run(n_volumes)}

    def _poll_markers(self) -> Iterator[Message]:
        """Take what came; send the trials already behind the volumes sent (late ones)."""
        if self.markers is None:
            return
        self.markers.poll()
        if self.run is not None and self.run.next_index > 0:
            yield from self._marker_trials((self.run.next_index - 1) * self.run.tr)

    def _marker_trials_before(self, k: int, acquired: float) -> Iterator[Message]:
        """Volume ``k``, written at session time ``acquired``, is next: the trials it reached."""
        self.markers.poll()
        self.markers.volume(k, acquired)
        yield from self._marker_trials(k * self.run.tr)

    def _marker_trials_at_end(self, data_time: float) -> Iterator[Message]:
        """The run's volumes are over: its trials with onsets before ``data_time``."""
        self.markers.poll()
        self.markers.finish_run()
        yield from self._marker_trials(data_time)

    def _marker_trials(self, data_time: float) -> Iterator[Message]:
        run = self.run
        yield from self.markers.trial_messages(data_time, run.next_index, run.tr, time.time())
