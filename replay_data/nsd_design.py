"""NSD's experimental design: which image each trial showed, its repetition, the shared1000.

Conventions (NSD data manual, "Experiments"; MATLAB indices are 1-based):

- ``nsd_expdesign.mat``: ``masterordering`` (1, 30000) gives, for each of a subject's trials in
  chronological order (750 per session), an index 1..10000 into that subject's row of
  ``subjectim`` (8, 10000), whose values are 73k IDs 1..73000; ``sharedix`` (1, 1000) holds the
  73k IDs of the shared-1000 images that every subject saw (MindEye's test set).
- ``design_sessionBB_runCC.tsv``: one integer per time point of the run's func1pt8mm time
  series: 0, or the 73k ID of the image whose 3-s trial starts at that time point.
- The time series and the design files are sampled every 4/3 s (NSD upsampled the 1.6-s
  acquisition during slice-time correction); time point 0 is the start of the first volume.

Everything here is converted to 0-based ``nsdId`` (= 73k ID - 1 = the row of ``imgBrick``, the
``nsdId`` column of ``nsd_stim_info_merged.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from replay_data.nsd_layout import NSD_SESSIONS, NsdLayout
from rt_base.errors import DatasetError

__all__ = [
    "ACQUISITION_TR",
    "IMAGE_S",
    "NSD_IMAGES",
    "NSD_TR",
    "ExpDesign",
    "RunPlan",
    "plan_session",
    "read_design",
]

#: Seconds between the time points of the func1pt8mm time series and design files.
NSD_TR = 4.0 / 3.0
#: The scanner's repetition time (NSD's 7T acquisition).
ACQUISITION_TR = 1.6
#: Seconds an NSD image stays on screen (then 1 s of grey).
IMAGE_S = 3.0
#: Images in ``nsd_stimuli.hdf5``.
NSD_IMAGES = 73000


def _ids(mat: dict, key: str, path: Path, top: int) -> np.ndarray:
    """The 1-based integer array ``key`` of the .mat file, checked to lie in 1..top."""
    if key not in mat:
        raise DatasetError(f"{str(path)!r} has no variable {key!r}: is it nsd_expdesign.mat?")
    a = np.asarray(mat[key], dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
        raise DatasetError(f"{str(path)!r}: {key!r} must hold integers, got {a.dtype} {a.shape}")
    a = a.astype(np.int64)
    if a.min() < 1 or a.max() > top:
        raise DatasetError(
            f"{str(path)!r}: {key!r} must hold 1-based indices in 1..{top}, got "
            f"{a.min()}..{a.max()}"
        )
    return a


@dataclass(frozen=True)
class ExpDesign:
    """``nsd_expdesign.mat``, 0-based.

    Attributes
    ----------
    masterordering : (n_trials,) int64 array, index 0..9999 into a row of ``subjectim``.
    subjectim : (8, 10000) int64 array of nsdIds (0-based).
    sharedix : (1000,) int64 array of the shared images' nsdIds (0-based).
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> ExpDesign:
        path = Path(path)
        try:
            mat = scipy.io.loadmat(path, variable_names=["masterordering", "subjectim", "sharedix"])
        except (OSError, ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as e:
            raise DatasetError(f"cannot read {str(path)!r} as a MATLAB file ({e})") from None
        subjectim = _ids(mat, "subjectim", path, NSD_IMAGES)
        if subjectim.ndim != 2 or subjectim.shape[0] != 8:
            raise DatasetError(f"{str(path)!r}: 'subjectim' must be (8, N), got {subjectim.shape}")
        order = _ids(mat, "masterordering", path, subjectim.shape[1]).ravel()
        if order.size % NSD_SESSIONS:
            raise DatasetError(
                f"{str(path)!r}: 'masterordering' has {order.size} trials, not a multiple of "
                f"the {NSD_SESSIONS} sessions"
            )
        shared = _ids(mat, "sharedix", path, NSD_IMAGES).ravel()
        return cls(order - 1, subjectim - 1, shared - 1)

    @property
    def trials_per_session(self) -> int:
        """Trials of one session (NSD: 30000 / 40 = 750)."""
        return self.masterordering.size // NSD_SESSIONS

    def trial_images(self, subject: int) -> np.ndarray:
        """(n_trials,) nsdIds that ``subject`` (1-8) saw, in chronological order."""
        return self.subjectim[subject - 1, self.masterordering]

    def repetitions(self, subject: int) -> np.ndarray:
        """(n_trials,) int64: for each trial, how many times its image was shown so far
        (1 the first time, up to 3), counted over all of the subject's sessions."""
        order = self.masterordering
        reps = np.zeros(order.size, np.int64)
        seen: dict[int, int] = {}
        for k, i in enumerate(order.tolist()):
            seen[i] = seen.get(i, 0) + 1
            reps[k] = seen[i]
        return reps

    def session_slice(self, session: int) -> slice:
        n = self.trials_per_session
        return slice((session - 1) * n, session * n)

    def is_shared(self, nsd_ids: np.ndarray) -> np.ndarray:
        """Bool array: which of ``nsd_ids`` are shared-1000 images (MindEye's test set)."""
        return np.isin(nsd_ids, self.sharedix)


def read_design(path: str | Path) -> np.ndarray:
    """A run's design file: (T,) int64, 0 or the 73k ID (1-based) of the trial starting there.

    Raises
    ------
    DatasetError
        A file that is not one column of integers in 0..73000.
    """
    try:
        a = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DatasetError(f"{str(path)!r} is not a column of numbers ({e})") from None
    if a.shape[1] != 1 or a.shape[0] == 0:
        raise DatasetError(f"{str(path)!r} must be one column of integers, got shape {a.shape}")
    a = a[:, 0]
    if np.any(a != np.round(a)) or a.min() < 0 or a.max() > NSD_IMAGES:
        raise DatasetError(f"{str(path)!r} must hold 0 or 73k IDs 1..{NSD_IMAGES}")
    return a.astype(np.int64)


@dataclass(frozen=True)
class RunPlan:
    """One NSD run as a replay run.

    Attributes
    ----------
    session, run : NSD numbers (1-based).
    name : replay run name, ``ses-BB_run-CC``.
    n_volumes : time points of the run (design rows).
    volumes : (n,) int64 time point of each trial's onset.
    nsd_ids : (n,) int64 nsdId (0-based) of each trial.
    trials : (n,) int64 trial index within the session (0-based; the betas' 4th axis).
    repetitions : (n,) int64 presentation count of the image (1-3) over all sessions.
    """

    session: int
    run: int
    name: str
    n_volumes: int
    volumes: np.ndarray
    nsd_ids: np.ndarray
    trials: np.ndarray
    repetitions: np.ndarray

    @property
    def onsets(self) -> np.ndarray:
        """(n,) float seconds from the run's first time point."""
        return self.volumes * NSD_TR


def plan_session(
    layout: NsdLayout, design: ExpDesign, session: int, runs: list[int]
) -> list[RunPlan]:
    """The image runs of ``session``, checked against ``nsd_expdesign.mat``.

    Runs without a trial (the resting-state runs of 14-run sessions) are left out.

    Raises
    ------
    DatasetError
        The design files' images, in order, are not the session's images of the .mat file
        (a missing or foreign design file, another subject's files).
    """
    subject = layout.subject
    window = design.session_slice(session)
    expected = design.trial_images(subject)[window]
    reps = design.repetitions(subject)[window]
    found: list[tuple[int, np.ndarray, np.ndarray, int]] = []  # run, onsets, nsdIds, length
    for run in runs:
        d = read_design(layout.design(session, run))
        volumes = np.flatnonzero(d)
        if len(volumes):
            found.append((run, volumes, d[volumes] - 1, len(d)))
    seq = np.concatenate([f[2] for f in found]) if found else np.zeros(0, np.int64)
    if seq.shape != expected.shape or np.any(seq != expected):
        n_bad = int(np.sum(seq[: len(expected)] != expected[: len(seq)]))
        raise DatasetError(
            f"{layout.subj} session {session}: its design files "
            f"({str(layout.design(session, 1).parent)!r}, runs {runs}) list {len(seq)} trials "
            f"({n_bad} with another image than nsd_expdesign.mat's order), the .mat file "
            f"{len(expected)}: a design file is missing or belongs to another subject"
        )
    plans, start = [], 0
    for run, volumes, ids, n_volumes in found:
        trials = np.arange(start, start + len(ids))
        start += len(ids)
        name = f"ses-{session:02d}_run-{run:02d}"
        plans.append(RunPlan(session, run, name, n_volumes, volumes, ids, trials, reps[trials]))
    return plans
