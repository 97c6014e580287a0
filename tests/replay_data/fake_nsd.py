"""A tiny fake Natural Scenes Dataset copy, in NSD's layout and file formats, for the tests.

Same paths, file types and conventions as the real one (:mod:`replay_data.nsd_layout`,
:mod:`replay_data.nsd_design`): int16 NIfTI time series and betas (percent signal change x
300), one-column design TSVs of 73k IDs (1-based) on the 4/3-s grid, a MATLAB
``nsd_expdesign.mat`` (``masterordering``, ``subjectim``, ``sharedix``, 1-based doubles), an
HDF5 ``imgBrick`` of (73000, 425, 425, 3) uint8 (only the images used are stored: chunks
never written take no space) and an int16 ``nsdgeneral`` ROI (-1 outside the brain, 0, 1).
Sizes are small: a 10 x 12 x 10 grid, 24 trials per session (3 runs of 8), 36 time points.
The session ``rest_session`` has NSD's 14-run form in miniature: a rest run (all-zero design)
before and after its image runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import scipy.io

from replay_data.nsd_layout import NSD_SESSIONS, NsdLayout

SHAPE = (10, 12, 10)
RUNS = 3
TRIALS_PER_RUN = 8
SLOTS = 10  # trial slots of 3 time points (4 s) per run
LEAD = 3  # blank time points before the first slot
N_VOLUMES = LEAD + 3 * SLOTS + 3
SHARED_USED = 6  # shared-1000 images the fake sessions show (3 times each)


@dataclass(frozen=True)
class FakeNsd:
    root: Path
    subject: int
    sessions: tuple[int, ...]
    rest_session: int | None

    @property
    def layout(self) -> NsdLayout:
        return NsdLayout(self.root, self.subject)


def _affine() -> np.ndarray:
    aff = np.diag([1.8, 1.8, 1.8, 1.0])
    aff[:3, 3] = [-9.0, -12.0, -8.0]
    return aff


def _save(data: np.ndarray, path: Path, dtype=np.int16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data.astype(dtype), _affine())
    img.header.set_data_dtype(dtype)
    nib.save(img, path)


def fake_image(nsd_id: int) -> np.ndarray:
    """The fake ``imgBrick[nsd_id]``: gradients offset by the id (distinct, compressible)."""
    ramp = np.arange(425)
    img = np.empty((425, 425, 3), np.uint8)
    img[..., 0] = (ramp[None, :] + nsd_id) % 256
    img[..., 1] = (ramp[:, None] + 7 * nsd_id) % 256
    img[..., 2] = (nsd_id * 13) % 256
    return img


def _masterordering(rng: np.random.Generator, n_used: int, per_session: int) -> np.ndarray:
    """0-based 10k indices of every trial: the used sessions show SHARED_USED shared images
    (indices 0..5) three times each and non-shared ones (from 1000) twice each."""
    n_trials = n_used * per_session
    shared = np.repeat(np.arange(SHARED_USED), 3)
    other = 1000 + np.arange(n_trials - len(shared)) // 2
    used = rng.permutation(np.concatenate([shared, other]))
    rest = rng.integers(2000, 10000, NSD_SESSIONS * per_session - n_trials)
    return np.concatenate([used, rest])


def make_fake_nsd(
    root: str | Path,
    *,
    subject: int = 1,
    sessions: tuple[int, ...] = (1, 2),
    rest_session: int | None = 2,
    seed: int = 0,
) -> FakeNsd:
    """Write a fake NSD copy for ``subject`` with ``sessions`` (consecutive from 1) into
    ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    lay = NsdLayout(root, subject)
    per_session = RUNS * TRIALS_PER_RUN
    # experimental design (73k IDs, 1-based, as MATLAB doubles)
    sharedix = rng.choice(73000, 1000, replace=False)
    others = np.setdiff1d(np.arange(73000), sharedix)
    subjectim = np.empty((8, 10000), np.int64)
    for k in range(8):
        subjectim[k, :1000] = sharedix
        subjectim[k, 1000:] = rng.choice(others, 9000, replace=False)
    order = _masterordering(rng, len(sessions), per_session)
    lay.expdesign.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        lay.expdesign,
        {
            "masterordering": (order + 1.0)[None, :],
            "subjectim": subjectim + 1.0,
            "sharedix": (sharedix + 1.0)[None, :],
        },
    )
    # masks: an ellipsoid brain, a block of it is nsdgeneral
    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE, float)[:, None, None, None] - 1) / 2
    brain = (((grid - centre) / (centre + 0.5)) ** 2).sum(0) <= 1
    roi = np.where(brain, 0, -1)
    roi[3:7, 4:9, 2:6] = np.where(brain[3:7, 4:9, 2:6], 1, -1)
    _save(roi, lay.nsdgeneral)
    _save(brain, lay.brainmask, np.uint8)
    # runs, design files and betas
    seen = subjectim[subject - 1, order]  # nsdIds, 0-based, chronological
    for s in sessions:
        ids = seen[(s - 1) * per_session : s * per_session]
        image_runs = list(range(1, RUNS + 1))
        all_runs = image_runs
        if s == rest_session:
            image_runs = [r + 1 for r in image_runs]
            all_runs = [1, *image_runs, RUNS + 2]
        for r in all_runs:
            design = np.zeros(N_VOLUMES, np.int64)
            if r in image_runs:
                k = image_runs.index(r)
                slots = np.sort(rng.choice(SLOTS, TRIALS_PER_RUN, replace=False))
                run_ids = ids[k * TRIALS_PER_RUN : (k + 1) * TRIALS_PER_RUN]
                design[LEAD + 3 * slots] = run_ids + 1
            lay.design(s, r).parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(lay.design(s, r), design, fmt="%d")
            base = rng.uniform(600, 1400, SHAPE)[..., None]
            series = base + rng.normal(0, 20, (*SHAPE, N_VOLUMES))
            _save(np.where(brain[..., None], np.round(series), 0), lay.timeseries(s, r))
        betas = np.round(300 * rng.normal(0.2, 1.5, (*SHAPE, per_session)))
        _save(np.where(brain[..., None], betas, 0), lay.betas_file(s))
    # stimuli: only the images shown
    lay.stimuli.parent.mkdir(parents=True, exist_ok=True)
    used = np.unique(seen[: len(sessions) * per_session])
    with h5py.File(lay.stimuli, "w") as f:
        brick = f.create_dataset(
            "imgBrick",
            shape=(73000, 425, 425, 3),
            dtype=np.uint8,
            chunks=(1, 425, 425, 3),
            compression="gzip",
        )
        for n in used:
            brick[n] = fake_image(int(n))
    return FakeNsd(root, subject, tuple(sessions), rest_session)
