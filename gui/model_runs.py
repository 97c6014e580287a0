"""The session model's handlers of the source's run lifecycle and of the per-TR data.

``run_start`` starts a run (resetting the per-run views) or, after ``end`` or with sequence
number 0, a whole new session; ``volume`` and ``tr`` feed the slices, the ROI trace and the
head motion (:mod:`gui.model_motion`);
``gap``, ``run_end`` and ``end`` count what was lost and how the run ended.
"""

from __future__ import annotations

import numpy as np

from gui.model_motion import MotionFeed
from gui.values import as_float, as_int, is_affine, robust_levels
from rt_base.errors import MessageError
from rt_wire.message import Message
from rt_wire.volume import volume_values


class RunFeed(MotionFeed):
    """Handlers of ``run_start``, ``volume``, ``tr``, ``gap``, ``run_end`` and ``end``."""

    def _on_run_start(self, msg: Message) -> None:
        if msg.seq == 0 or self.session.ended:
            if self.session.runs_started:
                self.add_log("console", "info", "a new session started: display reset")
            self._reset_session()
        meta = msg.meta
        s = self.session
        previous, s.run = s.run, msg.run
        s.runs_started += 1
        s.tr = as_float(meta.get("tr"))
        s.n_volumes = as_int(meta.get("n_volumes"))
        s.n_trials = as_int(meta.get("n_trials"))
        shape = meta.get("shape")
        s.shape = tuple(int(n) for n in shape) if isinstance(shape, list) else None
        affine = meta.get("affine")
        s.affine = affine if is_affine(affine) else None
        s.dataset = meta.get("dataset") or s.dataset
        s.simulated = meta.get("simulated", s.simulated)
        s.ended = s.stopped = False
        self._reset_run()
        # keep only the newest runs' trials (the previous run's last trials still decode)
        for key in [k for k in self._trials if k[0] not in (msg.run, previous)]:
            del self._trials[key]
        path = meta.get("dataset_path")
        if path:
            self._use_dataset(str(path))
        tr = f", TR {s.tr:g} s" if s.tr else ""
        self.add_log("source", "info", f"{msg.run} started ({s.n_volumes} volumes{tr})")
        self._versions["session"] += 1

    def _on_volume(self, msg: Message) -> None:
        vol = msg.buffers.get("volume")
        if vol is None or vol.ndim != 3:
            return
        try:  # scanner units: stored integers and their scale, or floats
            vol = volume_values(vol, msg.meta)
        except MessageError:
            return
        if self.session.run is not None and msg.run != self.session.run:
            return  # a late volume of an earlier run
        self._volume = vol
        self._volume_index = msg.index
        if msg.index is not None:
            self.tr_index = msg.index if self.tr_index is None else max(self.tr_index, msg.index)
        if self._levels is None:
            self._levels = robust_levels(vol)
        self._versions["volume"] += 1
        self._versions["session"] += 1

    def _on_tr(self, msg: Message) -> None:
        if self.session.run is not None and msg.run != self.session.run:
            return
        self._add_motion(msg)
        self._add_bad_volume(msg)
        raw = msg.buffers.get("raw")
        if raw is None or msg.index is None or raw.size == 0:
            return
        tr = self.session.tr or 1.0
        self._trace.append((msg.index * tr, float(np.mean(raw, dtype=np.float64))))
        self._versions["trace"] += 1

    def _on_gap(self, msg: Message) -> None:
        meta = msg.meta
        lost = meta.get("lost_volumes") or []
        stop = self._stopped_at.get(msg.run)
        if stop is not None:  # volumes the operator's stop never sent are not lost
            lost = [i for i in lost if isinstance(i, int) and i < stop]
        self.lost_volumes += len(lost)
        self.lost_messages += as_int(meta.get("lost_messages")) or 0
        self.missed_trials += len(meta.get("missed_trials") or [])
        if lost:
            shown = ", ".join(str(i) for i in lost[:8]) + (" ..." if len(lost) > 8 else "")
            self.add_log(str(meta.get("stage", "?")), "error", f"{msg.run}: lost volume(s) {shown}")
        self._versions["session"] += 1

    def _on_run_end(self, msg: Message) -> None:
        text = f"{msg.run} ended"
        if msg.meta.get("stopped"):
            sent = as_int(msg.meta.get("n_volumes_sent")) or 0
            self._stopped_at[msg.run] = sent
            self.session.stopped = True
            text += f" (stopped by the operator after {sent} volumes)"
        self.add_log("source", "info", text)
        self._versions["session"] += 1

    def _on_end(self, msg: Message) -> None:
        self.session.ended = True
        self.session.stopped = self.session.stopped or bool(msg.meta.get("stopped"))
        self.add_log(
            "source", "info", "session ended" + (" (stopped)" if msg.meta.get("stopped") else "")
        )
        self._versions["session"] += 1
