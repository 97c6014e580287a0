"""Plain records that :class:`gui.model.SessionModel` hands to the widgets (no Qt here).

A :class:`Snapshot` is a consistent copy of what the console shows at one moment; widgets
compare its ``versions`` with the ones they last drew and redraw only what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: the states of a stage's health (:class:`StageHealth`), each with its colour in the console
HEALTH_STATES = ("waiting", "ok", "stale", "error", "stopped")
#: framewise displacement (mm) above which a TR counts as head motion (Power et al. 2012)
FD_THRESHOLD_MM = 0.5
#: the six rigid motion parameters of a ``tr`` message's ``meta["motion"]["params"]``
MOTION_PARAMS = ("tx", "ty", "tz", "rx", "ry", "rz")  # mm, mm, mm, degrees x 3


@dataclass
class SessionInfo:
    """What the current session and run are (from ``run_start`` and the source's status)."""

    dataset: str | None = None
    dataset_path: str | None = None
    simulated: bool | None = None
    run: str | None = None
    runs_started: int = 0
    tr: float | None = None
    n_volumes: int | None = None
    n_trials: int | None = None
    shape: tuple[int, ...] | None = None
    affine: list[list[float]] | None = None
    ended: bool = False
    stopped: bool = False
    paused: bool | None = None
    speed: float | None = None


@dataclass
class TrialInfo:
    """One trial of a run on the timeline.

    ``decode_time`` is the data time (s) of the volume at which it was decoded; ``rank`` the
    rank of the true image among the candidates (None: not in the bank, i.e. not scored).
    """

    run: str | None
    index: int
    onset: float
    duration: float
    image_id: int | None
    split: str | None = None
    repetition: int | None = None
    decode_time: float | None = None
    decoded: bool = False
    rank: int | None = None
    top1: int | None = None
    truncated: bool = False
    reconstructed: bool = False

    @property
    def correct(self) -> bool | None:
        """True/False for a scored trial (top-1 hit or not), None otherwise."""
        if not self.decoded or self.rank is None:
            return None
        return self.rank == 1


@dataclass
class RetrievalInfo:
    """The latest trial's retrieval: top-k ids (k,) and scores (k,), and the true image."""

    run: str | None
    trial: int | None
    ids: np.ndarray
    scores: np.ndarray
    true_id: int | None
    rank: int | None
    ways: int | None
    split: str | None
    repetition: int | None


@dataclass
class Accuracy:
    """Running retrieval accuracy over the scored trials of the session."""

    scored: int = 0
    top1: int = 0
    topk: int = 0
    k: int = 0
    ways: int | None = None
    decoded: int = 0
    rank_sum: int = 0

    @property
    def top1_rate(self) -> float | None:
        return self.top1 / self.scored if self.scored else None

    @property
    def topk_rate(self) -> float | None:
        return self.topk / self.scored if self.scored else None

    @property
    def chance(self) -> float | None:
        return 1.0 / self.ways if self.ways else None

    @property
    def mean_rank(self) -> float | None:
        return self.rank_sum / self.scored if self.scored else None


@dataclass
class StageHealth:
    """A stage's health: ``state`` one of :data:`HEALTH_STATES`; ``age_s`` since its status."""

    name: str
    state: str = "waiting"
    age_s: float | None = None
    detail: str = ""


@dataclass
class LogEntry:
    """One log line; ``serial`` increases by one per entry over the model's life."""

    serial: int
    time: float
    stage: str
    level: str
    text: str


@dataclass
class Recon:
    """The latest reconstruction: ``image`` (H, W, 3) uint8 for trial ``trial`` of ``run``.

    ``blurry`` (h, w, 3) uint8 is the low-level (blurry) image a ``"full"`` reconstruction
    starts from (None in ``"lowlevel"`` mode, where ``image`` is that blurry image).
    ``current`` is set in a :class:`Snapshot`: whether it is of the trial whose retrieval is
    shown (reconstructions are slower than retrievals and may lag behind them).
    """

    run: str | None
    trial: int | None
    image: np.ndarray
    blurry: np.ndarray | None = None
    mode: str | None = None
    compute_ms: float | None = None
    backlog: int | None = None
    image_id: int | None = None
    generator: str | None = None
    current: bool = False


@dataclass
class ReconStage:
    """The reconstruct stage's latest status: trials queued and not yet started
    (``backlog``), how long the oldest of them has waited since it was decoded (``behind_s``),
    trials reconstructed so far, the recent median compute time per trial and the mode
    (``"lowlevel"`` or ``"full"``); ``state`` is its health (see :data:`HEALTH_STATES`)."""

    state: str
    backlog: int = 0
    behind_s: float | None = None
    reconstructed: int = 0
    compute_ms: float | None = None
    mode: str | None = None

    @property
    def behind(self) -> str:
        """``"3 trials behind (4.2 s)"``, or ``""`` when nothing is queued."""
        return behind_text(self.backlog, self.behind_s)


def behind_text(backlog: int, behind_s: float | None) -> str:
    """``"3 trials behind (4.2 s)"`` for a stage with ``backlog`` trials queued, the oldest of
    which has waited ``behind_s`` seconds; ``""`` when ``backlog`` is not positive."""
    if backlog <= 0:
        return ""
    text = f"{backlog} trial{'s' if backlog != 1 else ''} behind"
    return text + (f" ({behind_s:.1f} s)" if behind_s is not None and behind_s > 0 else "")


@dataclass
class MotionTrace:
    """Head motion of the current run, one row per TR that reported it.

    ``time`` (n,) data time (s) and ``index`` (n,) TR index of each row; ``params`` (n, 6) the
    rigid parameters in :data:`MOTION_PARAMS` order (translations in mm, rotations in
    degrees); ``fd`` (n,) framewise displacement (mm; NaN where a message gave none);
    ``mode`` ``"estimate"`` or ``"correct"`` (the newest message's); ``threshold`` the FD
    threshold (mm); ``over`` TRs over it per run of the session (runs with motion only);
    ``last_over`` the newest TR over it as (run, TR index, FD), None if none yet.
    """

    time: np.ndarray
    index: np.ndarray
    params: np.ndarray
    fd: np.ndarray
    mode: str | None
    threshold: float
    over: dict[str, int]
    last_over: tuple[str, int, float] | None = None


@dataclass
class BadVolumes:
    """The volumes the preprocess stage flagged bad and censored (``bad_volume`` in a ``tr``):
    ``per_run`` their count per run of the session; ``last`` the newest as (run, TR index,
    reasons), None if none yet; ``warning`` a line about it for the operator, None if none."""

    per_run: dict[str, int] = field(default_factory=dict)
    last: tuple[str, int, list[str]] | None = None

    @property
    def total(self) -> int:
        return sum(self.per_run.values())

    @property
    def warning(self) -> str | None:
        if self.last is None:
            return None
        run, index, reasons = self.last
        why = ", ".join(reasons) or "reason not given"
        return f"{self.total} bad volume(s) censored; last {run} TR {index + 1} ({why})"


@dataclass
class Snapshot:
    """A consistent copy of the model's state for one redraw.

    ``recon`` is the latest reconstruction (None: none yet this session); ``recon_stage`` the
    reconstruct stage's latest status (None: no status from a reconstruct stage this session,
    i.e. the session does not reconstruct or its stage has not reported yet).  ``motion`` is
    the current run's head motion (None: no ``tr`` message of this run reported any, e.g.
    motion correction is off).
    """

    versions: dict[str, int]
    session: SessionInfo
    volume: np.ndarray | None
    volume_index: int | None
    volume_levels: tuple[float, float] | None
    roi_mask: np.ndarray | None
    slice_pos: tuple[int, int, int] | None
    stimuli: np.ndarray | None
    trace_time: np.ndarray
    trace_mean: np.ndarray
    trials: list[TrialInfo]
    retrieval: RetrievalInfo | None
    accuracy: Accuracy
    accuracy_history: np.ndarray
    latency: dict[str, tuple[np.ndarray, np.ndarray]]
    health: dict[str, StageHealth]
    tr_index: int | None
    lost_volumes: int
    lost_messages: int
    missed_trials: int
    log: list[LogEntry]
    recon: Recon | None
    recon_stage: ReconStage | None
    telemetry_age_s: float | None
    skipped_volumes: int
    bad_frames: int
    motion: MotionTrace | None = None
    bad_volumes: BadVolumes = field(default_factory=BadVolumes)
