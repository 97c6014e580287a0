"""Online single-trial betas: each trial's response as soon as its decode volume arrives.

The estimator of the real-time estimate stage.  Each estimate is a small single-trial GLM (ridge
LSA by default, or LSS; see :mod:`fmri_compute.glm_design`) over a sliding window of recent
volumes, so that its result never depends on volumes after the trial's decode point.

Cost: each estimate uses at most ``window_s / tr + 1`` volumes and the trials overlapping the
window, read from a ring buffer of fixed length, so its cost does not grow with the run.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from fmri_compute.glm_design import DEFAULT_RIDGE, check_method, drift_basis, ridge_rows
from fmri_compute.hrf import HRF_DURATION, trial_regressors
from fmri_compute.normalize import RunningZScore
from rt_base.checks import check_number
from rt_base.errors import ConfigError, StageError

__all__ = ["OnlineTrialBetas"]

_EPS = 1e-9


@dataclass
class _Trial:
    onset: float
    duration: float
    decode_index: int


class OnlineTrialBetas:
    """Real-time single-trial betas: each trial's response from the volumes up to its decode
    point (ridge LSA by default, or LSS).

    Trial ``i`` becomes due at volume ``d_i``, the first whose time ``d_i * tr`` reaches
    ``onset_i + decode_delay_s``.  Its beta is fitted on the volumes with indices
    ``d_i - L + 1 .. d_i`` (``L = floor(window_s / tr) + 1``, clipped at 0).  Columns: this
    trial, then (``method="lsa"``) one column per other trial whose response reaches the
    window (onsets before the decode point; the next trial is only partly observed, which the
    ridge keeps in check) or (``method="lss"``) their sum, then Legendre drift up to
    ``drift_order`` over the window.  The window is fixed by the trial, not by when
    :meth:`estimate` is called, so the result never depends on later volumes.  A volume that
    never arrived is simply a missing row.

    Censoring: a volume added with ``censored=True`` (a bad volume, see
    :mod:`fmri_compute.volume_checks`) keeps its TR slot but is a missing row too: it is left
    out of every window's least-squares fit (the frame is omitted, which is the same as a
    censoring regressor that absorbs it), it never enters the running statistics of
    ``standardize``, and its values are not even stored, so NaN or Inf in it cannot reach a
    beta.  A trial whose window has censored frames is still estimated from the rest
    (:meth:`censored_frames` lists them); only when every volume after its onset is missing or
    censored does :meth:`estimate` refuse it.

    Volumes sit in a ring buffer of ``L + ceil(max_lag_s / tr)`` rows and trials whose responses
    ended before the oldest buffered volume are forgotten (only their ids are kept, to refuse
    reuse), so memory and the cost of an estimate (at most ``L`` rows; columns: the trials
    overlapping the window plus ``1 + drift_order``) are bounded by the window whatever the
    length of the run.  Trials not estimated within ``max_lag_s`` of their decode volume are
    listed in :attr:`missed`.

    Parameters
    ----------
    n_voxels : int
        Length of each volume vector.
    tr : float
        Repetition time in seconds.
    decode_delay_s : float
        Seconds from onset to the decode point, in ``(0, 30]``.
    window_s : float or None
        Span of the fitting window in seconds, ending at the decode volume; at least
        ``decode_delay_s``.  Default ``decode_delay_s + 72`` (51 volumes at TR 1.6 s): the
        pre-onset volumes pin down the baseline and the preceding trials' responses; on
        simulated NSD-timed runs 80 s windows decoded better than 40-56 s ones.
    hrf_peak : float
        HRF response delay in seconds.
    drift_order : int
        Highest Legendre degree of the drift within the window.  Default 0 (a constant): a
        linear term is nearly collinear with the rising, partly observed response of the
        trial being estimated and cost about a quarter of the decoding accuracy in simulation.
    max_lag_s : float
        How long after its decode point a trial can still be estimated; older pending
        trials are dropped (see :attr:`missed`).
    standardize : bool
        False: volumes come already normalised (e.g. by
        :class:`~fmri_compute.normalize.RunningZScore`) and betas are in their units.  True:
        volumes come masked but in scanner units; the estimator keeps per-voxel running
        statistics (no look-ahead) and divides each beta by the running standard deviation
        at the trial's last window volume.  Every row of a window then shares one scale
        (a running z-score rescales each row differently, which mostly hurts the first
        trials of a run), and betas have the scale of
        ``trial_betas(zscore_run(Y), ...)`` (:func:`fmri_compute.offline_glm.trial_betas`).
    method : {"lsa", "lss"}
        Estimator (ridge Least-Squares-All or Least-Squares-Separate), see
        :mod:`fmri_compute.glm_design`; use the same one as for the training betas.
    ridge : float
        ``"lsa"`` only: penalty on the trial columns relative to their mean sum of squares.
    """

    def __init__(
        self,
        n_voxels: int,
        tr: float,
        *,
        decode_delay_s: float = 8.0,
        window_s: float | None = None,
        hrf_peak: float = 6.0,
        drift_order: int = 0,
        max_lag_s: float = 16.0,
        standardize: bool = False,
        method: str = "lsa",
        ridge: float = DEFAULT_RIDGE,
    ) -> None:
        self.method, self.ridge = check_method(method, ridge)
        self.n_voxels = int(check_number(n_voxels, "n_voxels", minimum=1, integer=True))
        self.tr = float(check_number(tr, "tr", minimum=0, strict_min=True, unit="seconds"))
        self.decode_delay_s = float(
            check_number(
                decode_delay_s,
                "decode_delay_s",
                minimum=0,
                strict_min=True,
                maximum=30.0,
                unit="seconds",
            )
        )
        if window_s is None:
            window_s = self.decode_delay_s + 72.0
        self.window_s = float(
            check_number(
                window_s, "window_s", minimum=self.decode_delay_s, maximum=600.0, unit="seconds"
            )
        )
        self.hrf_peak = float(
            check_number(hrf_peak, "hrf_peak", minimum=1, strict_min=True, unit="seconds")
        )
        self.drift_order = int(check_number(drift_order, "drift_order", minimum=0, integer=True))
        self.max_lag_s = float(
            check_number(max_lag_s, "max_lag_s", minimum=0, maximum=600.0, unit="seconds")
        )
        self.window_volumes = int(math.floor(self.window_s / self.tr + _EPS)) + 1
        self.capacity = self.window_volumes + int(math.ceil(self.max_lag_s / self.tr - _EPS))
        self._buffer = np.zeros((self.capacity, self.n_voxels), dtype=np.float32)
        self._slot_index = np.full(self.capacity, -1, dtype=np.int64)
        self._censored = np.zeros(self.capacity, dtype=bool)
        self.standardize = bool(standardize)
        if self.standardize:
            self._stats = RunningZScore(self.n_voxels, warmup=2)
            self._scale = np.zeros((self.capacity, self.n_voxels), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget all volumes and trials (call between runs)."""
        self._slot_index[:] = -1
        self._trials: dict[Hashable, _Trial] = {}
        self._done: set[Hashable] = set()
        self._forgotten: set[Hashable] = set()
        self.missed: list[Hashable] = []
        self.latest_index = -1
        self.n_missing = 0
        self.n_censored = 0
        self._censored[:] = False
        if self.standardize:
            self._stats.reset()

    # -- inputs ------------------------------------------------------------------------------

    def add_trial(self, trial_id: Hashable, onset: float, duration: float) -> None:
        """Register a trial (before or after its volumes arrive, but before it is due)."""
        if trial_id in self._trials or trial_id in self._forgotten:
            raise ConfigError(f"'trial_id' {trial_id!r} was already added to this run")
        onset = float(check_number(onset, "onset", unit="seconds"))
        duration = float(check_number(duration, "duration", minimum=0, unit="seconds"))
        decode_index = max(0, math.ceil((onset + self.decode_delay_s) / self.tr - _EPS))
        self._trials[trial_id] = _Trial(onset, duration, decode_index)

    def add_volume(self, index: int, y: ArrayLike, *, censored: bool = False) -> None:
        """Buffer the normalised, masked volume with TR index ``index``.

        Parameters
        ----------
        index : int
            TR index within the run; must exceed the previous one.  Skipped indices are
            missing volumes (counted in :attr:`n_missing`).
        y : (V,) float32 array
            Normalised, or in scanner units with ``standardize=True``.  Must be finite unless
            ``censored``.
        censored : bool
            A bad volume: it takes its TR slot but never enters a fit or the statistics
            (counted in :attr:`n_censored`; see the class).
        """
        index = int(check_number(index, "index", minimum=0, integer=True))
        if index <= self.latest_index:
            raise ConfigError(
                f"'index' must increase: got volume {index} after volume {self.latest_index} "
                "(repeated or out-of-order volume)"
            )
        y = np.asarray(y)
        if y.shape != (self.n_voxels,):
            raise ConfigError(f"'y' must have shape ({self.n_voxels},), got {y.shape}")
        if not censored and not np.isfinite(y).all():
            raise ConfigError(
                f"volume {index} has non-finite values (NaN or Inf): add it with censored=True"
            )
        self.n_missing += index - self.latest_index - 1
        slot = index % self.capacity
        self._censored[slot] = censored
        if censored:
            self.n_censored += 1
            self._buffer[slot] = 0.0  # never read (no weight), and never NaN
            if self.standardize:
                self._scale[slot] = self._stats.std
        else:
            self._buffer[slot] = y
            if self.standardize:
                self._stats.update(y)
                self._scale[slot] = self._stats.std
        self._slot_index[slot] = index
        self.latest_index = index
        self._expire()

    def _expire(self) -> None:
        oldest = max(0, self.latest_index - self.capacity + 1)
        for tid, trial in list(self._trials.items()):
            pending = tid not in self._done
            first = max(0, trial.decode_index - self.window_volumes + 1)
            if pending and first < oldest:
                self.missed.append(tid)
                self._done.add(tid)
            end = trial.onset + trial.duration + HRF_DURATION
            if end < oldest * self.tr and tid in self._done:
                del self._trials[tid]
                self._done.discard(tid)
                self._forgotten.add(tid)

    # -- queries -----------------------------------------------------------------------------

    @property
    def n_trials_held(self) -> int:
        """Trials currently remembered (bounded by the window, not the run)."""
        return len(self._trials)

    def _trial(self, trial_id: Hashable) -> _Trial:
        if trial_id in self._forgotten:
            raise StageError(f"trial {trial_id!r} is too old: its volumes left the buffer")
        if trial_id not in self._trials:
            raise StageError(f"trial {trial_id!r} was never added with add_trial()")
        return self._trials[trial_id]

    def decode_time(self, trial_id: Hashable) -> float:
        """Time (s) of the volume at which ``trial_id`` becomes due: ``decode_index * tr``."""
        return self.decode_index(trial_id) * self.tr

    def decode_index(self, trial_id: Hashable) -> int:
        """TR index of the first volume at or after ``onset + decode_delay_s``."""
        return self._trial(trial_id).decode_index

    def due(self, latest_index: int | None = None) -> list[Hashable]:
        """Trials whose decode point is reached by volume ``latest_index`` and not yet estimated.

        ``latest_index`` defaults to the last volume added.  Sorted by decode index, then onset.
        """
        latest = self.latest_index if latest_index is None else int(latest_index)
        ready = [
            (t.decode_index, t.onset, tid)
            for tid, t in self._trials.items()
            if t.decode_index <= latest and tid not in self._done
        ]
        return [tid for _, _, tid in sorted(ready, key=lambda r: (r[0], r[1]))]

    def design(self, trial_id: Hashable, *, partial: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The rows and design matrix :meth:`estimate` uses for ``trial_id``.

        The trial's beta is the first coefficient of the fit of the window's rows on ``X``
        (ridge-penalised on the trial columns for ``method="lsa"``, see :meth:`weights`).

        Parameters
        ----------
        trial_id : hashable
        partial : bool
            See :meth:`estimate`.

        Returns
        -------
        indices : (m,) int array
            TR indices of the buffered volumes in the window (``m <= window_volumes``).
        X : (m, p) float64 array
            Columns: the trial, the other trials that reach the window (each its own column
            for ``"lsa"``, summed for ``"lss"``), drift.
        """
        indices, X, _ = self._design(trial_id, partial)
        return indices, X

    def weights(
        self, trial_id: Hashable, *, partial: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The window's TR indices and the weights whose dot product with them is the beta.

        Returns
        -------
        indices : (m,) int array
        w : (m,) float64 array
            Before the ``standardize`` scaling.
        """
        indices, X, n_trials = self._design(trial_id, partial)
        ridge = self.ridge if self.method == "lsa" else 0.0
        return indices, ridge_rows(X, n_trials, ridge)[0]

    def _design(self, trial_id: Hashable, partial: bool) -> tuple[np.ndarray, np.ndarray, int]:
        trial = self._trial(trial_id)
        first = max(0, trial.decode_index - self.window_volumes + 1)
        last = trial.decode_index
        if last > self.latest_index:
            if not partial:
                raise StageError(
                    f"trial {trial_id!r} is not due until volume {last} "
                    f"(latest volume is {self.latest_index}); at the end of a run, "
                    "use estimate(trial_id, partial=True)"
                )
            last = max(first, self.latest_index)
        if first < self.latest_index - self.capacity + 1:
            raise StageError(f"trial {trial_id!r} is too old: its volumes left the buffer")
        wanted = np.arange(first, last + 1)
        slots = wanted % self.capacity
        indices = wanted[(self._slot_index[slots] == wanted) & ~self._censored[slots]]
        times = indices * self.tr
        t_start, t_stop = first * self.tr, last * self.tr
        others = [
            t
            for tid, t in self._trials.items()
            if tid != trial_id
            and t.onset < t_stop
            and t.onset + t.duration + HRF_DURATION > t_start
        ]
        onsets = [trial.onset] + [t.onset for t in others]
        durations = [trial.duration] + [t.duration for t in others]
        R = trial_regressors(onsets, durations, times, self.tr, peak=self.hrf_peak)
        columns = [R[:, 0]]
        if self.method == "lsa":
            columns += [R[:, j] for j in range(1, R.shape[1]) if np.any(R[:, j] != 0)]
        elif R.shape[1] > 1 and np.any(R[:, 1:] != 0):
            columns.append(R[:, 1:].sum(axis=1))
        # Keep at least one spare row: drop the highest drift degrees if rows are short.
        order = min(self.drift_order, max(0, len(indices) - len(columns) - 2))
        D = drift_basis(times, order, span=(t_start, t_stop))
        X = np.column_stack([*columns, D]) if len(indices) else np.zeros((0, len(columns) + 1))
        return indices, X, len(columns)

    def censored_frames(self, trial_id: Hashable) -> list[int]:
        """TR indices of the censored volumes in ``trial_id``'s window (left out of its fit),
        among those still buffered."""
        trial = self._trial(trial_id)
        first = max(0, trial.decode_index - self.window_volumes + 1)
        wanted = np.arange(first, min(trial.decode_index, self.latest_index) + 1)
        slots = wanted % self.capacity
        return wanted[(self._slot_index[slots] == wanted) & self._censored[slots]].tolist()

    def estimate(self, trial_id: Hashable, *, partial: bool = False) -> np.ndarray:
        """Estimate the response of a due trial and mark it done.

        Parameters
        ----------
        trial_id : hashable
        partial : bool
            Allow a trial that is not due yet: its window is cut at the latest volume.  Meant
            for the end of a run, when the decode volume will never come; during a run the
            result would depend on when it is called.

        Returns
        -------
        beta : (V,) float32 array

        Raises
        ------
        StageError
            The trial is unknown, not due yet, too old, or none of its window's volumes after
            onset arrived (its regressor is zero on the rows present; the trial then goes to
            :attr:`missed` and leaves :meth:`due`).
        """
        indices, X, n_trials = self._design(trial_id, partial)
        if not np.any(X[:, 0] != 0):
            self._done.add(trial_id)
            self.missed.append(trial_id)
            raise StageError(
                f"trial {trial_id!r} cannot be estimated: no volume of its window after onset "
                f"arrived or passed the checks ({self.n_missing} missing and {self.n_censored} "
                "censored volumes in this run)"
            )
        # One weight per buffer slot (0 outside the window): no copy of the rows.  einsum,
        # not BLAS: a threaded sgemv stalls for milliseconds when the cores are contended.
        w = np.zeros(self.capacity, dtype=np.float32)
        ridge = self.ridge if self.method == "lsa" else 0.0
        w[indices % self.capacity] = ridge_rows(X, n_trials, ridge)[0]
        beta = np.einsum("i,ij->j", w, self._buffer)
        if self.standardize:
            std = self._scale[indices[-1] % self.capacity]
            beta = np.divide(beta, std, out=np.zeros_like(beta), where=std > 0)
        self._done.add(trial_id)
        return beta.astype(np.float32, copy=False)
