"""Per-volume quality checks: is this volume fit to enter the normalization and the GLM?

A few cheap checks, run on each acquired volume before anything else touches it, each a
different way scanner data goes bad:

``nonfinite``
    NaN or Inf voxels anywhere in the volume (a reconstruction or conversion fault).  Checked
    on the whole volume, not only the mask: motion correction resamples from outside the ROI.
``dropout``
    an empty or near-empty volume: more than half of the checked voxels exactly zero, or the
    in-mask mean below ``dropout_ratio`` times the median of the recent good volumes' means.
``dropped_slice``
    one or more slices whose in-mask mean fell below ``slice_drop_ratio`` times that slice's
    median over the recent good volumes (a slice lost in reconstruction or transfer).
``spike``
    a jump of the in-mask mean since the last good volume that is both robustly far outside
    the recent good volumes' jumps (a z-score on their median and MAD above ``spike_z``) and
    larger than ``spike_min_change`` of the recent level.  Jumps, not levels: the slow drift
    and the evoked responses move the level by a few percent over a run, but only by tenths of
    a percent from one volume to the next.

The checks run in that order and stop at the first that fails (the volume is bad whatever
the others say; the later ones would only restate it: a dropout also drops every slice).
Only good volumes join the recent history the ratios are taken against, so a bad volume
never moves the reference; the history holds the last ``history`` good volumes of the run
(:meth:`VolumeChecker.reset` between runs).  The slice and ratio checks need one good volume
of history, the spike check ``warmup``: a run's first volumes are checked for the faults that
need no reference only (non-finite voxels, mostly zero voxels).

A level shift that lasts (``warmup`` spikes in a row on the same side) is taken as the new
baseline: the spike history restarts from there, so one step in the scanner's scaling does not
censor the rest of the run.  The volumes of the step stay flagged.

Cost: the whole volume is summed once (non-finite values propagate into the sum; they are
counted only when the sum is not finite) and at most ``max_voxels`` mask voxels, sorted by
slice, are gathered for the means.  Measured with ``benchmarks/bench_volume_checks.py``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np
from numpy.typing import ArrayLike

from rt_base.checks import check_number
from rt_base.errors import ConfigError

__all__ = [
    "REASONS",
    "VolumeCheckOptions",
    "VolumeChecker",
    "VolumeVerdict",
    "check_options",
]

#: every reason a volume can be bad, in the order the checks run
REASONS = ("nonfinite", "dropout", "dropped_slice", "spike")

#: MAD of a normal distribution times this is its standard deviation
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class VolumeCheckOptions:
    """Thresholds of :class:`VolumeChecker`; every field is checked, and an error names it.

    Defaults, from the clean runs of the simulated subjects (first run of ``subj01`` and
    ``subj01-moving``, both runs of the test suite's ``tiny``): the in-mask mean jumps from one
    volume to the next by at most 0.34 % (brain mask) and 1.2 % (ROI mask) on still subjects,
    0.74 % and 3.7 % on the moving one (its sudden head jumps); the jumps' robust z-score
    reached 15 (brain mask, moving); a slice's mean never fell below 0.77 of its recent median.
    A lost slice or a dropout reads near zero, far below the ratios.

    Parameters
    ----------
    dropout_ratio : a volume whose in-mask mean is below this fraction of the recent median is
        a dropout, in ``(0, 1)``.  0.5: half the signal gone is no drift or motion.
    slice_drop_ratio : a slice whose in-mask mean is below this fraction of its recent median
        is dropped, in ``(0, 1)``.  0.5: head motion changes a slice's mean by a few percent.
    spike_z : robust z-score (median and MAD of the recent jumps) above which a jump of the
        in-mask mean may be a spike, > 0.  5: a normal variable passes it once in ~1.7 million
        draws; with the next threshold it only guards a noisy run's big natural jumps.
    spike_min_change : and the jump must exceed this fraction of the recent level, in
        ``(0, 1)``.  0.05: above the largest natural jump measured (3.7 %, ROI mask, moving
        subject) and 15 times the still brain's.
    warmup : good volumes needed before the spike check judges, at least 3.
    history : good volumes the references are taken over, at least ``warmup``.  30 (48 s at
        TR 1.6 s): long enough for a stable median, short enough to follow the slow drift.
    slice_axis : the array axis slices are acquired along (2 for axial volumes in RAS+).
    max_voxels : mask voxels used for the means (an even subsample above it), at least 100.
    min_slice_voxels : a slice with fewer mask voxels than this is not checked on its own.
    """

    dropout_ratio: float = 0.5
    slice_drop_ratio: float = 0.5
    spike_z: float = 5.0
    spike_min_change: float = 0.05
    warmup: int = 5
    history: int = 30
    slice_axis: int = 2
    max_voxels: int = 20_000
    min_slice_voxels: int = 16

    def __post_init__(self) -> None:
        for name in ("dropout_ratio", "slice_drop_ratio", "spike_min_change"):
            check_number(getattr(self, name), name, minimum=0, strict_min=True, maximum=0.999)
        check_number(self.spike_z, "spike_z", minimum=0, strict_min=True, maximum=1e3)
        check_number(self.warmup, "warmup", minimum=3, integer=True, unit="volumes")
        check_number(
            self.history, "history", minimum=self.warmup, maximum=1000, integer=True, unit="volumes"
        )
        check_number(self.slice_axis, "slice_axis", minimum=0, maximum=2, integer=True)
        check_number(self.max_voxels, "max_voxels", minimum=100, integer=True)
        check_number(self.min_slice_voxels, "min_slice_voxels", minimum=1, integer=True)


def check_options(value: bool | Mapping | None, name: str = "volume_checks"):
    """The checks' options from a spec value: ``True`` the defaults, ``False`` no checks
    (None), or a mapping of :class:`VolumeCheckOptions` fields to change.

    Raises
    ------
    ConfigError
        Not a bool or a mapping, or a key that is no option (the error lists them).
    """
    if value is True:
        return VolumeCheckOptions()
    if value is False:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"'{name}' must be true, false or a mapping of thresholds, got {value!r}")
    known = [f.name for f in fields(VolumeCheckOptions)]
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigError(f"'{name}' has unknown option(s) {unknown}; it takes {known}")
    return VolumeCheckOptions(**value)


@dataclass(frozen=True)
class VolumeVerdict:
    """What the checks found in one volume.

    ``reasons``: the failed check (a tuple of :data:`REASONS`; empty for a good volume);
    ``details``: JSON-ready figures of the failure (``nonfinite`` the count of NaN/Inf
    voxels, ``zero_fraction`` or ``mean_ratio`` for a dropout, ``slices`` the dropped slices'
    indices and ``slice_ratios`` their ratios, ``spike_z`` (None when the recent jumps had no
    spread) and ``change`` (the jump, a fraction of the level) for a spike).
    """

    reasons: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)

    @property
    def bad(self) -> bool:
        """Whether the volume failed a check."""
        return bool(self.reasons)

    def describe(self) -> str:
        """One line for a log: ``"dropped_slice (slices [12], ratios [0.02])"``."""
        if not self.reasons:
            return "good"
        figures = ", ".join(f"{k} {v}" for k, v in self.details.items())
        return f"{', '.join(self.reasons)} ({figures})" if figures else ", ".join(self.reasons)


class VolumeChecker:
    """Checks the volumes of a run one by one, against the run's recent good volumes.

    Parameters
    ----------
    mask : (X, Y, Z) bool array
        The voxels the means are taken over (a brain mask is best; an ROI mask checks only
        the slices it covers).
    options : the thresholds (:class:`VolumeCheckOptions`).
    """

    def __init__(self, mask: ArrayLike, options: VolumeCheckOptions | None = None) -> None:
        self.options = options or VolumeCheckOptions()
        mask = np.asarray(mask, bool)
        if mask.ndim != 3 or not mask.any():
            raise ConfigError(
                f"the volume checks' 'mask' must be a non-empty 3-D array, got shape {mask.shape} "
                f"with {int(mask.sum())} voxels; give a brain or ROI mask of the volumes' grid"
            )
        self.shape = mask.shape
        flat = np.flatnonzero(mask)
        step = -(-flat.size // self.options.max_voxels)  # ceil: an even subsample
        flat = flat[::step]
        slices = np.unravel_index(flat, mask.shape)[self.options.slice_axis]
        order = np.argsort(slices, kind="stable")
        self._index = flat[order]
        slice_ids, starts, counts = np.unique(slices[order], return_index=True, return_counts=True)
        self._starts = starts
        self._counts = counts.astype(np.float64)
        self._slice_ids = slice_ids
        self._checked_slices = counts >= self.options.min_slice_voxels
        self.n_voxels = int(self._index.size)
        self.reset()

    def reset(self) -> None:
        """Forget the recent volumes (call at the start of each run)."""
        n = self.options.history
        self._means: deque[float] = deque(maxlen=n)
        self._profiles: deque[np.ndarray] = deque(maxlen=n)
        self._changes: deque[float] = deque(maxlen=n)  # jumps of the mean between good volumes
        self._last_mean: float | None = None
        self._spike_run: list[int] = []  # signs of the consecutive spikes just seen
        self.checked = 0
        self.rebaselined = 0

    @property
    def n_good(self) -> int:
        """Good volumes in the recent history (at most ``history``)."""
        return len(self._means)

    def check(self, volume: ArrayLike) -> VolumeVerdict:
        """Check one volume; a good one joins the history the next volumes are judged against.

        Parameters
        ----------
        volume : (X, Y, Z) array on the mask's grid

        Returns
        -------
        VolumeVerdict
        """
        vol = np.asarray(volume)
        if vol.shape != self.shape:
            raise ConfigError(
                f"'volume' has shape {vol.shape} but the check mask has shape {self.shape}; "
                "use a mask of the volumes' grid"
            )
        self.checked += 1
        flat = vol.reshape(-1)
        if np.issubdtype(vol.dtype, np.inexact) and not np.isfinite(flat.sum()):
            n_bad = int(flat.size - np.count_nonzero(np.isfinite(flat)))
            if n_bad:  # (a finite overflow of the sum is left to the other checks)
                return VolumeVerdict(("nonfinite",), {"nonfinite": n_bad})
        sample = flat[self._index]
        sums = np.add.reduceat(sample, self._starts, dtype=np.float64)
        mean = float(sums.sum() / self.n_voxels)
        profile = sums / self._counts
        # the recent good volumes' median level; ratios need a positive one (scanner units)
        level = float(np.median(self._means)) if self._means else None
        level = level if level is not None and level > 0 else None
        verdict = (
            self._dropout(sample, mean, level)
            or self._dropped_slices(profile)
            or self._spike(mean, level)
        )
        if verdict is not None:
            return verdict
        if self._last_mean is not None and level is not None:
            self._changes.append((mean - self._last_mean) / level)
        self._last_mean = mean
        self._means.append(mean)
        self._profiles.append(profile)
        return VolumeVerdict()

    def _dropout(
        self, sample: np.ndarray, mean: float, level: float | None
    ) -> VolumeVerdict | None:
        zeros = 1.0 - np.count_nonzero(sample) / sample.size
        if zeros > 0.5:
            return VolumeVerdict(("dropout",), {"zero_fraction": round(zeros, 4)})
        if level is not None and mean < self.options.dropout_ratio * level:
            return VolumeVerdict(("dropout",), {"mean_ratio": round(mean / level, 4)})
        return None

    def _dropped_slices(self, profile: np.ndarray) -> VolumeVerdict | None:
        if not self._profiles:
            return None
        ref = np.median(np.asarray(self._profiles), axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = profile / ref
        low = self._checked_slices & (ref > 0) & (ratio < self.options.slice_drop_ratio)
        if not low.any():
            return None
        details = {
            "slices": self._slice_ids[low].tolist(),
            "slice_ratios": [round(float(r), 4) for r in ratio[low]],
        }
        return VolumeVerdict(("dropped_slice",), details)

    def _spike(self, mean: float, level: float | None) -> VolumeVerdict | None:
        """A jump of the in-mask mean since the last good volume, robustly far outside the
        recent good volumes' jumps and larger than ``spike_min_change`` of the level."""
        if level is None or self._last_mean is None or len(self._changes) < self.options.warmup:
            return None
        change = (mean - self._last_mean) / level
        changes = np.asarray(self._changes)
        med = float(np.median(changes))
        mad = _MAD_TO_SD * float(np.median(np.abs(changes - med)))
        z = (change - med) / mad if mad > 0 else np.inf
        if abs(z) <= self.options.spike_z or abs(change) <= self.options.spike_min_change:
            self._spike_run.clear()
            return None
        sign = 1 if change > 0 else -1
        self._spike_run = [s for s in self._spike_run if s == sign] + [sign]
        if len(self._spike_run) >= self.options.warmup:  # a lasting step: the new baseline
            self._means.clear()
            self._changes.clear()
            self._spike_run.clear()
            self._last_mean = mean
            self.rebaselined += 1
        shown_z = round(float(z), 2) if np.isfinite(z) else None  # None: no spread (MAD 0)
        return VolumeVerdict(("spike",), {"spike_z": shown_z, "change": round(change, 4)})
