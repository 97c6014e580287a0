"""The replay source driven by a stimulus program's markers (``stream --replay X --markers lsl``).

In a replay the source plays the scanner, and the stimulus program (PsychoPy, or
``mindeye-rt stim-sim``) tells it what was shown.  The two share time so:

- each run starts when the program's ``run_start`` marker arrives: data time 0 is that
  marker's time on the session clock (the pacer is anchored there), as a scanner's first volume
  is the program's first trigger;
- volume ``k`` is sent at data time ``k * TR`` (``TR / speed`` apart), and before it the trials
  whose onsets it has reached, timed from the markers (:mod:`realtime.stages.marker_events`);
  its time on the session clock is when it was due (``run_start``'s time + ``k * TR / speed``),
  so a source that starts late catches up without shifting the onsets;
- at speed 0 there is no clock: each trial marker carries its ``onset``, and volume ``k`` waits
  until the program's markers have reached data time ``k * TR`` (a trial with a later onset,
  or ``run_stop``), so trials and volumes are merged exactly as from ``events.tsv``.

The dataset's ``events.tsv`` is not read: every trial's image and onset come from the markers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from realtime.stages.source_control import run_start_message
from rt_wire.message import Message

_POLL_S = 0.002  # how often markers are polled while the source waits for the program


class MarkerReplayMixin:
    """``_replay_run_markers``: one replay run whose trial events come from markers (mixed into
    :class:`realtime.stages.source.ReplaySource`, which provides the dataset, pacer and
    ``self.markers``, a :class:`~realtime.stages.marker_events.MarkerEvents`)."""

    def _wait_for(self, ready) -> bool:
        """Poll markers until ``ready()``; False when stopped or halted meanwhile."""
        while not ready():
            if self._stop.is_set() or self.pacer.halted:
                return False
            self.markers.poll()
            self.flush_notices()
            self._maybe_status()
            self._stop.wait(_POLL_S)
        return True

    def _replay_run_markers(self, run: str) -> Iterator[Message]:
        tr, speed = float(self.dataset.meta.tr), self.pacer.speed
        self.current_run = run
        data = self.dataset.load_run(run)
        n_vols = (
            data.shape[-1] if self.max_volumes is None else min(data.shape[-1], self.max_volumes)
        )
        self.notice("info", f"run {run}: waiting for the stimulus program's run_start marker")
        if not self._wait_for(lambda: self.markers.waiting_run_start):
            return
        start = next(m for m in self.markers.held if m.marker and m.marker.type == "run_start")
        self.markers.begin_run(run, tr)
        yield run_start_message(
            run,
            tr=tr,
            n_volumes=n_vols,
            shape=data.shape[:3],
            affine=self.dataset.affine,
            input="replay",
            trials_from="markers",
            dataset=self.dataset.meta.name,
            dataset_path=str(self.dataset.root),
            simulated=bool(self.dataset.meta.simulated),
        )
        # data time 0 is the program's run_start: later by however long it took to get here
        self.pacer.restart(max(0.0, (time.time() - start.time) * speed) if speed else 0.0)
        next_index = 0
        for k in range(n_vols):
            if not self._reach(k * tr):
                break
            now = time.time()
            yield from self._marker_trials(run, k, tr, now)
            if (run, k) in self.drop:
                continue
            vol = np.ascontiguousarray(data[..., k], dtype=np.float32)
            self.sent_volumes += 1
            next_index = k + 1
            # its acquisition time is when it was due: a late send is a late file, not a shift
            self.markers.volume(k, start.time + (k * tr / speed if speed else 0.0))
            yield Message(
                "volume",
                run=run,
                index=k,
                meta={"time": k * tr},
                t={"source.acquired": now},
                buffers={"volume": vol},
            )
        del data
        if self._stop.is_set():
            return
        if not self.pacer.halted and self._reach(n_vols * tr):
            yield from self._marker_trials(run, n_vols, tr, time.time(), end=True)
        meta = {"n_volumes": n_vols, "markers": self.markers.end_run(n_vols)}
        if self.pacer.halted:
            meta.update(stopped=True, n_volumes_sent=next_index)
        yield Message("run_end", run=run, meta=meta, t={"source.sent": time.time()})

    def _reach(self, data_time: float) -> bool:
        """Wait until ``data_time`` is due (and, at speed 0, the program's markers reach it)."""
        if not self.pacer.speed and not self._wait_for(lambda: self.markers.covered() >= data_time):
            return False
        return self.pacer.wait_until(data_time)

    def _marker_trials(
        self, run: str, k: int, tr: float, now: float, *, end: bool = False
    ) -> Iterator[Message]:
        """Before volume ``k`` (``end``: after the run's last volume, ``k`` its count): the
        trials whose onsets its data time reached.  A trial whose onset an earlier volume
        reached had its marker come late: flagged and told, as the scanner source does."""
        self.markers.poll()
        self.flush_notices()
        yield from self.markers.trial_messages(k * tr - 1e-9 if end else k * tr, k, tr, now)
