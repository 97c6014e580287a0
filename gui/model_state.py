"""The session model's state: what it keeps, its lock, its resets, its log and its dataset.

:class:`ModelState` is the base of :class:`gui.model.SessionModel` and of the per-kind
message handlers it is assembled from (:mod:`gui.model_runs`, :mod:`gui.model_trials`,
:mod:`gui.model_health`): every attribute they share is set here.  Memory stays bounded however
long a session runs: the latest volume only, per-run series in ring buffers, a bounded log.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import numpy as np

from gui.state import (
    FD_THRESHOLD_MM,
    Accuracy,
    LogEntry,
    Recon,
    RetrievalInfo,
    SessionInfo,
    TrialInfo,
)
from gui.values import slice_position
from rt_base.checks import check_number
from rt_base.names import LIVE_SPANS, OPTIONAL_STAGES

STALE_S = 3.0  # a stage whose last status is older than this is "stale"

#: the parts of a :class:`~gui.state.Snapshot` a widget redraws on its own
VERSION_KEYS = (
    "session", "volume", "trace", "trials", "retrieval", "latency", "log", "recon", "motion",
)  # fmt: skip


def open_dataset(path: str) -> Any:
    """The default dataset loader: a :class:`~replay_data.dataset_reader.ReplayDataset`."""
    from replay_data.dataset_reader import ReplayDataset

    return ReplayDataset.open(path)


class ModelState:
    """The state of a :class:`~gui.model.SessionModel` (see there for the parameters).

    All reads and writes hold ``self._lock`` (re-entrant): the public methods take it, the
    message handlers run under the lock :meth:`~gui.model.SessionModel.feed` holds.
    """

    def __init__(
        self,
        *,
        trace_len: int = 4096,
        trial_len: int = 1000,
        latency_len: int = 600,
        log_len: int = 1000,
        history_len: int = 2000,
        stale_s: float = STALE_S,
        fd_threshold: float = FD_THRESHOLD_MM,
        clock: Callable[[], float] = time.monotonic,
        dataset_loader: Callable[[str], Any] | None = open_dataset,
    ) -> None:
        for name, value in (
            ("trace_len", trace_len),
            ("trial_len", trial_len),
            ("latency_len", latency_len),
            ("log_len", log_len),
            ("history_len", history_len),
        ):
            check_number(value, name, minimum=1, integer=True)
        self.stale_s = float(check_number(stale_s, "stale_s", minimum=0, strict_min=True))
        self.fd_threshold = float(
            check_number(fd_threshold, "fd_threshold", minimum=0, strict_min=True, unit="mm")
        )
        self._clock = clock
        self._loader = dataset_loader
        self._lock = threading.RLock()
        self._trace_len, self._trial_len = trace_len, trial_len
        self._latency_len, self._history_len = latency_len, history_len
        self._log: deque[LogEntry] = deque(maxlen=log_len)
        self._log_serial = 0
        self._versions = dict.fromkeys(VERSION_KEYS, 0)
        self._datasets: dict[str, Any] = {}
        self._status: dict[str, dict] = {}
        self.skipped_volumes = 0
        self.bad_frames = 0
        self._last_message: float | None = None
        self._reset_session()

    # -- resets ------------------------------------------------------------------------------
    def _reset_session(self) -> None:
        """Forget the session: a restarted source starts a new one."""
        self.session = SessionInfo()
        self._t0 = self._clock()
        self._dataset: Any = None
        self._roi_mask: np.ndarray | None = None
        self._slice_pos: tuple[int, int, int] | None = None
        self._stimuli: np.ndarray | None = None
        self._trials: OrderedDict[tuple[str | None, int], TrialInfo] = OrderedDict()
        self._retrieval: RetrievalInfo | None = None
        self._accuracy = Accuracy()
        self._history: deque[float] = deque(maxlen=self._history_len)
        self._latency = {k: deque(maxlen=self._latency_len) for k in LIVE_SPANS}
        self.lost_volumes = 0
        self.lost_messages = 0
        self.missed_trials = 0
        self._stopped_at: dict[str | None, int] = {}
        self._recon: Recon | None = None
        self._motion_over: dict[str, int] = {}  # run -> TRs over the FD threshold
        self._motion_last_over: tuple[str, int, float] | None = None
        self._bad_volumes: dict[str, int] = {}  # run -> volumes flagged bad (censored)
        self._bad_last: tuple[str, int, list[str]] | None = None
        self._forget_optional_stages()
        self._reset_run()
        for key in self._versions:
            self._versions[key] += 1

    def _forget_optional_stages(self) -> None:
        """An optional stage of the previous session is forgotten (this one may run without
        it), unless it is still reporting: a fresh, non-final status is this session's."""
        now = self._clock()
        for name in OPTIONAL_STAGES:
            entry = self._status.get(name)
            if entry is not None and (
                entry["meta"].get("final") or now - entry["time"] > self.stale_s
            ):
                del self._status[name]

    def _reset_run(self) -> None:
        """Forget the run's volume, ROI trace, head motion and TR index (a new run starts)."""
        self._volume: np.ndarray | None = None
        self._volume_index: int | None = None
        self._levels: tuple[float, float] | None = None
        self._trace: deque[tuple[float, float]] = deque(maxlen=self._trace_len)
        self.tr_index: int | None = None
        # head motion: (time, TR index, tx, ty, tz, rx, ry, rz, fd) per TR that reported it
        self._motion: deque[tuple[float, ...]] = deque(maxlen=self._trace_len)
        self._motion_mode: str | None = None
        for key in ("volume", "trace", "trials", "motion"):
            self._versions[key] += 1

    # -- notes from outside the stream -------------------------------------------------------
    def add_log(self, stage: str, level: str, text: str) -> None:
        """Append a log line (the console's own notices use stage ``console``)."""
        with self._lock:
            self._log_serial += 1
            self._log.append(LogEntry(self._log_serial, time.time(), stage, level, text))
            self._versions["log"] += 1

    def note_skipped(self, n: int) -> None:
        """The receiver skipped ``n`` stale volumes to catch up."""
        with self._lock:
            self.skipped_volumes += int(n)

    def note_bad_frame(self, error: Exception) -> None:
        """The receiver dropped a frame that failed validation."""
        with self._lock:
            self.bad_frames += 1
            self.add_log("console", "warning", f"dropped a telemetry frame: {error}")

    # -- the dataset -------------------------------------------------------------------------
    def set_dataset(self, path: str) -> None:
        """Use the dataset at ``path`` for the ROI outline and thumbnails (e.g. ``--dataset``)."""
        with self._lock:
            self._use_dataset(path)

    def _use_dataset(self, path: str) -> None:
        """Load the dataset at ``path`` once (a failure is logged and remembered) and take its
        ROI mask and stimulus images; the only I/O done under the lock."""
        self.session.dataset_path = path
        if self._loader is None:
            return
        ds = self._datasets.get(path)
        if ds is None:
            try:
                ds = self._loader(path)
            except Exception as err:  # noqa: BLE001 - a display without outline is still useful
                self.add_log("console", "warning", f"cannot open dataset {path!r}: {err}")
                self._datasets[path] = False
                return
            self._datasets[path] = ds
        if ds is False or ds is self._dataset:
            return
        self._dataset = ds
        try:
            mask = np.asarray(ds.roi_mask(), bool)
            self._roi_mask = mask
            self._slice_pos = slice_position(mask)
            self._stimuli = ds.stimuli()
        except Exception as err:  # noqa: BLE001
            self.add_log("console", "warning", f"dataset {path!r}: {err}")
        self._versions["volume"] += 1
        self._versions["retrieval"] += 1
