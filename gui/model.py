"""The console's data model: fed telemetry :class:`~rt_wire.message.Message` objects, no Qt.

:class:`SessionModel` keeps what the operator console and the participant viewer show, with
bounded memory however long the session runs: the latest volume only, per-run series in
ring buffers, and a bounded log.  The receiver thread calls :meth:`SessionModel.feed`; the GUI
thread calls :meth:`SessionModel.snapshot` on its redraw timer.  Both take one lock, held only
for bookkeeping (never for I/O except the one-off dataset lookup of a new run).

Per-run state (volume, ROI trace, timeline, TR index) resets at each ``run_start``; the whole
session resets when the source restarts (a ``run_start`` with sequence number 0, or one after
``end``), so a console left open across pipeline restarts shows the new session only.

Reconstructions: the newest ``"recon"`` message (buffer ``image`` (H, W, 3) uint8, in
``"full"`` mode also ``blurry``) is kept as :attr:`Snapshot.recon`, and its trial is marked
reconstructed on the timeline.  The reconstruct stage is optional (``--recon none``): its
health and backlog (:attr:`Snapshot.recon_stage`) are reported only once a status from it has
been seen in the current session, so a session without one shows no reconstruct stage at all.

The model is assembled from parts, one file each: its state, lock and resets
(:mod:`gui.model_state`); the handlers of the run lifecycle and per-TR data
(:mod:`gui.model_runs`, with head motion in :mod:`gui.model_motion`), of trials, retrievals
and reconstructions (:mod:`gui.model_trials`), and of status and log messages with each
stage's health (:mod:`gui.model_health`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np

from gui.model_health import HealthFeed
from gui.model_runs import RunFeed
from gui.model_trials import TrialFeed
from gui.state import Accuracy, SessionInfo, Snapshot, TrialInfo
from rt_base.names import LIVE_SPANS
from rt_wire.message import Message

#: message kind -> its handler (other kinds are ignored)
HANDLERS: dict[str, Callable[..., None]] = {
    "run_start": RunFeed._on_run_start,
    "volume": RunFeed._on_volume,
    "tr": RunFeed._on_tr,
    "gap": RunFeed._on_gap,
    "run_end": RunFeed._on_run_end,
    "end": RunFeed._on_end,
    "trial": TrialFeed._on_trial,
    "response": TrialFeed._on_response,
    "retrieval": TrialFeed._on_retrieval,
    "recon": TrialFeed._on_recon,
    "status": HealthFeed._on_status,
    "log": HealthFeed._on_log,
}


class SessionModel(RunFeed, TrialFeed, HealthFeed):
    """What the console shows, built from the telemetry stream.

    Parameters
    ----------
    trace_len : TRs of ROI mean signal kept per run.
    trial_len : trials kept on the timeline (over the newest runs).
    latency_len : latency samples kept per stage.
    log_len : log lines kept.
    history_len : per-trial accuracy points kept (running top-1 curve).
    stale_s : seconds without a status after which a stage shows as stale.
    fd_threshold : framewise displacement (mm) over which a TR counts as head motion.
    clock : monotonic clock (seconds); injectable for tests.
    dataset_loader : ``path -> dataset`` with ``roi_mask()`` and ``stimuli()``; None: do not
        load datasets (no ROI outline, no thumbnails).
    """

    def feed_many(self, msgs: Iterable[Message]) -> None:
        """Feed messages in arrival order (one lock for the batch)."""
        with self._lock:
            for msg in msgs:
                self.feed(msg)

    def feed(self, msg: Message) -> None:
        """Update the state from one telemetry message (unknown kinds are ignored)."""
        with self._lock:
            self._last_message = self._clock()
            handler = HANDLERS.get(msg.kind)
            if handler is not None:
                handler(self, msg)
            self._add_latencies(msg)

    def _add_latencies(self, msg: Message) -> None:
        """Record the live latency spans measured on ``msg``'s kind whose stamps it carries."""
        for name, (kind, start, end) in LIVE_SPANS.items():
            if kind == msg.kind and start in msg.t and end in msg.t:
                ms = 1e3 * (msg.t[end] - msg.t[start])
                self._latency[name].append((self._clock() - self._t0, ms))
                self._versions["latency"] += 1

    def snapshot(self) -> Snapshot:
        """A consistent copy of the state for the GUI thread."""
        with self._lock:
            run = self.session.run
            trials = [
                TrialInfo(**vars(t))
                for (r, _), t in self._trials.items()
                if run is None or r == run
            ]
            trace = np.array(self._trace, np.float64).reshape(-1, 2)
            latency = {}
            for name, series in self._latency.items():
                arr = np.array(series, np.float64).reshape(-1, 2)
                latency[name] = (arr[:, 0], arr[:, 1])
            now = self._clock()
            health = self.health()
            recon = self._recon
            if recon is not None:
                r = self._retrieval
                shown = r is not None and (r.run, r.trial) == (recon.run, recon.trial)
                recon = replace(recon, current=shown)  # arrays shared, not copied
            return Snapshot(
                versions=dict(self._versions),
                session=SessionInfo(**vars(self.session)),
                volume=self._volume,
                volume_index=self._volume_index,
                volume_levels=self._levels,
                roi_mask=self._roi_mask,
                slice_pos=self._slice_pos,
                stimuli=self._stimuli,
                trace_time=trace[:, 0],
                trace_mean=trace[:, 1],
                trials=trials,
                retrieval=self._retrieval,
                accuracy=Accuracy(**vars(self._accuracy)),
                accuracy_history=np.array(self._history, np.float64),
                latency=latency,
                health=health,
                tr_index=self.tr_index,
                lost_volumes=self.lost_volumes,
                lost_messages=self.lost_messages,
                missed_trials=self.missed_trials,
                log=list(self._log),
                recon=recon,
                recon_stage=self._recon_stage(health),
                telemetry_age_s=None if self._last_message is None else now - self._last_message,
                skipped_volumes=self.skipped_volumes,
                bad_frames=self.bad_frames,
                motion=self._motion_snapshot(),
                bad_volumes=self._bad_volumes_snapshot(),
            )
