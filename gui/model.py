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
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from gui.state import (
    LATENCY_SPANS,
    OPTIONAL_STAGES,
    STAGES,
    Accuracy,
    LogEntry,
    Recon,
    ReconStage,
    RetrievalInfo,
    SessionInfo,
    Snapshot,
    StageHealth,
    TrialInfo,
    behind_text,
)
from rt_base.checks import check_number
from rt_wire.message import Message

log = logging.getLogger("mindeye_rt.console")

STALE_S = 3.0  # a stage whose last status is older than this is "stale"
ERROR_HOLD_S = 10.0  # an error log keeps its stage marked "error" this long

_VERSION_KEYS = ("session", "volume", "trace", "trials", "retrieval", "latency", "log", "recon")


def open_dataset(path: str) -> Any:
    """The default dataset loader: a :class:`~replay_data.dataset_reader.ReplayDataset`."""
    from replay_data.dataset_reader import ReplayDataset

    return ReplayDataset.open(path)


class SessionModel:
    """What the console shows, built from the telemetry stream.

    Parameters
    ----------
    trace_len : TRs of ROI mean signal kept per run.
    trial_len : trials kept on the timeline (over the newest runs).
    latency_len : latency samples kept per stage.
    log_len : log lines kept.
    history_len : per-trial accuracy points kept (running top-1 curve).
    stale_s : seconds without a status after which a stage shows as stale.
    clock : monotonic clock (seconds); injectable for tests.
    dataset_loader : ``path -> dataset`` with ``roi_mask()`` and ``stimuli()``; None: do not
        load datasets (no ROI outline, no thumbnails).
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
        self._clock = clock
        self._loader = dataset_loader
        self._lock = threading.RLock()
        self._trace_len, self._trial_len = trace_len, trial_len
        self._latency_len, self._history_len = latency_len, history_len
        self._log: deque[LogEntry] = deque(maxlen=log_len)
        self._log_serial = 0
        self._versions = dict.fromkeys(_VERSION_KEYS, 0)
        self._datasets: dict[str, Any] = {}
        self._status: dict[str, dict] = {}
        self.skipped_volumes = 0
        self.bad_frames = 0
        self._last_message: float | None = None
        self._reset_session()

    # -- resets ------------------------------------------------------------------------------
    def _reset_session(self) -> None:
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
        self._latency = {k: deque(maxlen=self._latency_len) for k in LATENCY_SPANS}
        self.lost_volumes = 0
        self.lost_messages = 0
        self.missed_trials = 0
        self._stopped_at: dict[str | None, int] = {}
        self._recon: Recon | None = None
        # an optional stage of the previous session is forgotten (this one may run without
        # it), unless it is still reporting: a fresh, non-final status is this session's
        now = self._clock()
        for name in OPTIONAL_STAGES:
            entry = self._status.get(name)
            if entry is not None and (
                entry["meta"].get("final") or now - entry["time"] > self.stale_s
            ):
                del self._status[name]
        self._reset_run()
        for key in self._versions:
            self._versions[key] += 1

    def _reset_run(self) -> None:
        self._volume: np.ndarray | None = None
        self._volume_index: int | None = None
        self._levels: tuple[float, float] | None = None
        self._trace: deque[tuple[float, float]] = deque(maxlen=self._trace_len)
        self.tr_index: int | None = None
        for key in ("volume", "trace", "trials"):
            self._versions[key] += 1

    # -- feeding -----------------------------------------------------------------------------
    def feed_many(self, msgs: Iterable[Message]) -> None:
        """Feed messages in arrival order (one lock for the batch)."""
        with self._lock:
            for msg in msgs:
                self.feed(msg)

    def feed(self, msg: Message) -> None:
        """Update the state from one telemetry message (unknown kinds are ignored)."""
        with self._lock:
            self._last_message = self._clock()
            handler = getattr(self, f"_on_{msg.kind}", None)
            if handler is not None:
                handler(msg)
            span = [k for k, v in LATENCY_SPANS.items() if v[0] == msg.kind]
            for name in span:
                _, a, b = LATENCY_SPANS[name]
                if a in msg.t and b in msg.t:
                    ms = 1e3 * (msg.t[b] - msg.t[a])
                    self._latency[name].append((self._clock() - self._t0, ms))
                    self._versions["latency"] += 1

    def _on_run_start(self, msg: Message) -> None:
        if msg.seq == 0 or self.session.ended:
            if self.session.runs_started:
                self.add_log("console", "info", "a new session started: display reset")
            self._reset_session()
        meta = msg.meta
        s = self.session
        previous, s.run = s.run, msg.run
        s.runs_started += 1
        s.tr = _float(meta.get("tr"))
        s.n_volumes = _int(meta.get("n_volumes"))
        s.n_trials = _int(meta.get("n_trials"))
        shape = meta.get("shape")
        s.shape = tuple(int(n) for n in shape) if isinstance(shape, list) else None
        affine = meta.get("affine")
        s.affine = affine if _is_affine(affine) else None
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
        if self.session.run is not None and msg.run != self.session.run:
            return  # a late volume of an earlier run
        self._volume = vol
        self._volume_index = msg.index
        if msg.index is not None:
            self.tr_index = msg.index if self.tr_index is None else max(self.tr_index, msg.index)
        if self._levels is None:
            self._levels = _robust_levels(vol)
        self._versions["volume"] += 1
        self._versions["session"] += 1

    def _on_tr(self, msg: Message) -> None:
        raw = msg.buffers.get("raw")
        if raw is None or msg.index is None or raw.size == 0:
            return
        if self.session.run is not None and msg.run != self.session.run:
            return
        tr = self.session.tr or 1.0
        self._trace.append((msg.index * tr, float(np.mean(raw, dtype=np.float64))))
        self._versions["trace"] += 1

    def _on_trial(self, msg: Message) -> None:
        if msg.index is None:
            return
        if (msg.run, int(msg.index)) in self._trials:
            return  # estimate republishes the source's trial events
        self._trial_for(msg)  # records it
        self._versions["trials"] += 1

    def _on_response(self, msg: Message) -> None:
        trial = self._trial_for(msg)
        if trial is not None:
            trial.decode_time = self._decode_time(msg)
            trial.truncated = bool(msg.meta.get("truncated", False))
            self._versions["trials"] += 1

    def _on_retrieval(self, msg: Message) -> None:
        ids = np.asarray(msg.buffers.get("ids", np.zeros(0, np.int64))).astype(np.int64)
        scores = np.asarray(msg.buffers.get("scores", np.zeros(0, np.float32)), np.float32)
        meta = msg.meta
        true_id, rank, ways = (
            _int(meta.get("image_id")),
            _int(meta.get("rank")),
            _int(meta.get("ways")),
        )
        self._retrieval = RetrievalInfo(
            run=msg.run,
            trial=msg.index,
            ids=ids.copy(),
            scores=scores.copy(),
            true_id=true_id,
            rank=rank,
            ways=ways,
            split=meta.get("split"),
            repetition=_int(meta.get("repetition")),
        )
        acc = self._accuracy
        acc.decoded += 1
        acc.k = max(acc.k, int(ids.size))
        if ways:
            acc.ways = ways
        if rank is not None:
            acc.scored += 1
            acc.top1 += rank == 1
            acc.topk += rank <= max(1, ids.size)
            acc.rank_sum += rank
            self._history.append(acc.top1 / acc.scored)
        trial = self._trial_for(msg)
        if trial is not None:
            trial.decoded = True
            trial.rank = rank
            trial.top1 = int(ids[0]) if ids.size else None
            if trial.decode_time is None:
                trial.decode_time = self._decode_time(msg)
            self._versions["trials"] += 1
        self._versions["retrieval"] += 1

    def _on_recon(self, msg: Message) -> None:
        image = msg.buffers.get("image")
        if not _is_rgb(image):
            self.add_log(
                "console",
                "warning",
                f"dropped a 'recon' message of trial {msg.index}: it needs buffer 'image' "
                f"(H, W, 3) uint8, got {_describe_array(image)}",
            )
            return
        blurry = msg.buffers.get("blurry")
        if blurry is not None and not _is_rgb(blurry):
            self.add_log(
                "console",
                "warning",
                f"ignored the 'blurry' image of trial {msg.index}'s reconstruction: it must be "
                f"(h, w, 3) uint8, got {_describe_array(blurry)}",
            )
            blurry = None
        meta = msg.meta
        mode, generator = meta.get("mode"), meta.get("generator")
        self._recon = Recon(
            run=msg.run,
            trial=msg.index,
            image=np.array(image),  # a copy: the received frame's memory is not kept
            blurry=None if blurry is None else np.array(blurry),
            mode=mode if isinstance(mode, str) else None,
            compute_ms=_float(meta.get("compute_ms")),
            backlog=_int(meta.get("backlog")),
            image_id=_int(meta.get("image_id")),
            generator=generator if isinstance(generator, str) else None,
        )
        self._versions["recon"] += 1
        # only a trial already on the timeline is marked: a late reconstruction of a run that
        # is no longer shown must not bring its trial back
        trial = None if msg.index is None else self._trials.get((msg.run, int(msg.index)))
        if trial is not None and not trial.reconstructed:
            trial.reconstructed = True
            self._versions["trials"] += 1

    def _on_gap(self, msg: Message) -> None:
        meta = msg.meta
        lost = meta.get("lost_volumes") or []
        stop = self._stopped_at.get(msg.run)
        if stop is not None:  # volumes the operator's stop never sent are not lost
            lost = [i for i in lost if isinstance(i, int) and i < stop]
        self.lost_volumes += len(lost)
        self.lost_messages += _int(meta.get("lost_messages")) or 0
        self.missed_trials += len(meta.get("missed_trials") or [])
        if lost:
            shown = ", ".join(str(i) for i in lost[:8]) + (" ..." if len(lost) > 8 else "")
            self.add_log(str(meta.get("stage", "?")), "error", f"{msg.run}: lost volume(s) {shown}")
        self._versions["session"] += 1

    def _on_run_end(self, msg: Message) -> None:
        text = f"{msg.run} ended"
        if msg.meta.get("stopped"):
            sent = _int(msg.meta.get("n_volumes_sent")) or 0
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

    def _on_status(self, msg: Message) -> None:
        stage = msg.meta.get("stage")
        if not isinstance(stage, str):
            return
        prev = self._status.get(stage)
        errors = _int(msg.meta.get("errors")) or 0
        entry = {"time": self._clock(), "meta": dict(msg.meta), "error_time": None}
        if prev is not None:
            entry["error_time"] = prev["error_time"]
            if errors > (_int(prev["meta"].get("errors")) or 0):
                entry["error_time"] = self._clock()
        self._status[stage] = entry
        if stage == "source":
            s = self.session
            s.paused = msg.meta.get("paused", s.paused)
            s.speed = _float(msg.meta.get("speed")) if "speed" in msg.meta else s.speed
            path = msg.meta.get("dataset_path")
            if path and self._dataset is None:
                self._use_dataset(str(path))  # a console that joined after run_start
        self._versions["session"] += 1

    def _on_log(self, msg: Message) -> None:
        stage = str(msg.meta.get("stage", "?"))
        level = str(msg.meta.get("level", "info"))
        self.add_log(stage, level, str(msg.meta.get("text", "")))
        if level == "error" and stage in self._status:
            self._status[stage]["error_time"] = self._clock()

    # -- helpers -----------------------------------------------------------------------------
    def _trial_for(self, msg: Message) -> TrialInfo | None:
        if msg.index is None:
            return None
        trial = self._trials.get((msg.run, int(msg.index)))
        if trial is None:  # a new trial (or joined late: its trial event was not seen)
            meta = msg.meta
            trial = TrialInfo(
                run=msg.run,
                index=int(msg.index),
                onset=_float(meta.get("onset")) or 0.0,
                duration=_float(meta.get("duration")) or 0.0,
                image_id=_int(meta.get("image_id")),
                split=meta.get("split"),
                repetition=_int(meta.get("repetition")),
            )
            self._trials[(msg.run, int(msg.index))] = trial
            while len(self._trials) > self._trial_len:
                self._trials.popitem(last=False)
        return trial

    def _decode_time(self, msg: Message) -> float | None:
        index = _int(msg.meta.get("decode_index"))
        if index is None or not self.session.tr:
            return None
        return index * self.session.tr

    def _use_dataset(self, path: str) -> None:
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
            self._slice_pos = _slice_position(mask)
            self._stimuli = ds.stimuli()
        except Exception as err:  # noqa: BLE001
            self.add_log("console", "warning", f"dataset {path!r}: {err}")
        self._versions["volume"] += 1
        self._versions["retrieval"] += 1

    def set_dataset(self, path: str) -> None:
        """Use the dataset at ``path`` for the ROI outline and thumbnails (e.g. ``--dataset``)."""
        with self._lock:
            self._use_dataset(path)

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

    # -- reading -----------------------------------------------------------------------------
    def _recon_stage(self, health: dict[str, StageHealth]) -> ReconStage | None:
        entry = self._status.get("reconstruct")
        if entry is None:
            return None
        meta = entry["meta"]
        mode = meta.get("mode")
        return ReconStage(
            state=health["reconstruct"].state,
            backlog=max(0, _int(meta.get("backlog")) or 0),
            behind_s=_float(meta.get("behind_s")),
            reconstructed=_int(meta.get("reconstructed")) or 0,
            compute_ms=_float(meta.get("compute_ms")),
            mode=mode if isinstance(mode, str) else None,
        )

    def health(self) -> dict[str, StageHealth]:
        """Each stage's health now (see :class:`~gui.state.StageHealth`)."""
        with self._lock:
            now = self._clock()
            out: dict[str, StageHealth] = {}
            for name in (*STAGES, *sorted(set(self._status) - set(STAGES))):
                entry = self._status.get(name)
                if entry is None:
                    if name not in OPTIONAL_STAGES:  # e.g. no reconstruct stage: not shown
                        out[name] = StageHealth(name)
                    continue
                age = now - entry["time"]
                meta = entry["meta"]
                errors = _int(meta.get("errors")) or 0
                detail = f"{errors} error(s)" if errors else ""
                if entry["error_time"] is not None and now - entry["error_time"] < ERROR_HOLD_S:
                    state = "error"
                elif meta.get("final") or (self.session.ended and age > self.stale_s):
                    state = "stopped"  # stages exit after the session's end
                elif age > self.stale_s:
                    state = "stale"
                    detail = f"no status for {age:.0f} s"
                else:
                    state = "ok"
                behind = _behind_text(meta)
                if behind and state != "stopped":
                    detail = f"{detail}, {behind}" if detail else behind
                out[name] = StageHealth(name, state, age, detail)
            return out

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
            )


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _behind_text(meta: dict) -> str:
    """What a status's ``backlog`` and ``behind_s`` say, or ``""`` without a backlog."""
    return behind_text(_int(meta.get("backlog")) or 0, _float(meta.get("behind_s")))


def _is_rgb(value: Any) -> bool:
    """Whether ``value`` is an (H, W, 3) uint8 image with at least one pixel."""
    return (
        isinstance(value, np.ndarray)
        and value.ndim == 3
        and value.shape[-1] == 3
        and value.dtype == np.uint8
        and value.size > 0
    )


def _describe_array(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, np.ndarray):
        return f"{value.dtype.name} {tuple(value.shape)}"
    return type(value).__name__


def _is_affine(value: Any) -> bool:
    try:
        return np.asarray(value, float).shape == (4, 4)
    except (TypeError, ValueError):
        return False


def _robust_levels(vol: np.ndarray) -> tuple[float, float]:
    """Display range of a volume: 1st-99.5th percentile of its non-zero voxels (subsampled)."""
    sample = np.asarray(vol, np.float32).reshape(-1)[::7]
    sample = sample[np.isfinite(sample) & (sample != 0)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _slice_position(mask: np.ndarray) -> tuple[int, int, int]:
    """Where the three slices cut: along each axis, the plane with the most ROI voxels (so the
    outline shows in every view); the grid's centre for an empty mask."""
    if mask.ndim != 3 or not mask.any():
        return tuple(int(n) // 2 for n in mask.shape[:3])  # type: ignore[return-value]
    pos = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        pos.append(int(np.argmax(mask.sum(axis=others))))
    return pos[0], pos[1], pos[2]
