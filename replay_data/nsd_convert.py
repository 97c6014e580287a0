"""Convert a local NSD copy into a replay dataset (``mindeye-rt prepare-nsd``).

What the dataset holds (the format: :mod:`replay_data.dataset_format`):

- ``func/ses-BB_run-CC_bold.nii.gz``: each image run of the chosen sessions, the func1pt8mm
  time series exactly as NSD distributes them (int16), with its events (onset = design time
  point x 4/3 s, 3 s, the image, its repetition over all sessions, ``test`` for a shared-1000
  image else ``train``).  The replay TR is 4/3 s, NSD's resampled grid, not the scanner's 1.6 s:
  a run replays in real time with 226 time points instead of 188 acquisitions;
- ``roi_mask.nii.gz``: nsdgeneral > 0; ``brain_mask.nii.gz`` when NSD's brainmask is there;
- ``stimuli/``: only the images the sessions show, resized (default 224 px), shared-1000 first;
- ``train/``: the single-trial betas of the non-shared trials, nsdgeneral voxels, z-scored per
  session over all its trials (:mod:`replay_data.nsd_betas`), MindEye's training set; the
  shared-1000 trials are the test split.

Resumable: runs are written one at a time and recorded in ``dataset.json``; each session's
betas and the images go to ``nsd-work/`` inside the dataset (removed at the end), so a rerun
with the same options skips what is done.  Every missing input is listed before any work.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from tqdm import tqdm

from replay_data.dataset_format import Event
from replay_data.dataset_reader import ReplayDataset
from replay_data.dataset_writer import DatasetWriter
from replay_data.nsd_betas import session_betas, write_npy
from replay_data.nsd_design import ACQUISITION_TR, IMAGE_S, NSD_TR, ExpDesign, RunPlan, plan_session
from replay_data.nsd_layout import DEFAULT_BETAS, NsdLayout, check_nsd_files
from replay_data.nsd_stimuli import NSD_IMAGE_SIDE, extract_stimuli
from replay_data.resolve import is_builtin_simulation
from rt_base.checks import check_number
from rt_base.errors import DatasetError

__all__ = ["CONVERTER_VERSION", "DEFAULT_IMAGE_SIZE", "prepare_nsd"]

CONVERTER_VERSION = 1
#: Stimulus side in the replay dataset (CLIP ViT's input size; MindEye2 stores 224 px too).
DEFAULT_IMAGE_SIZE = 224
#: Options that must match for an interrupted conversion to be resumed.
_RESUME_KEYS = ("converter_version", "nsd_subject", "sessions", "betas", "image_size")
_WORK = "nsd-work"


def _read_mask(path: Path, what: str) -> nib.Nifti1Image:
    try:
        return nib.load(path)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {what} {str(path)!r} as NIfTI ({e})") from None


def _check_headers(
    layout: NsdLayout, plans: dict[int, list[RunPlan]], shape: tuple, n_trials: int
) -> None:
    """Every time series fits its design file and the ROI grid, every betas file the ROI grid
    and the session's trial count (headers only; all problems in one error)."""
    bad = []
    for s, runs in plans.items():
        for rp in runs:
            f = layout.timeseries(s, rp.run)
            got = tuple(nib.load(f).shape)
            if got != (*shape, rp.n_volumes):
                bad.append(f"{f}: shape {got}, need {shape}+({rp.n_volumes},) (design rows)")
        f = layout.betas_file(s)
        got = tuple(nib.load(f).shape)
        if got != (*shape, n_trials):
            bad.append(f"{f}: shape {got}, need {shape}+({n_trials},) (trials per session)")
    if bad:
        raise DatasetError("NSD files that do not fit together:\n  " + "\n  ".join(bad))


def _image_order(plans: dict[int, list[RunPlan]], design: ExpDesign) -> tuple[np.ndarray, int]:
    """The nsdIds the runs show, shared-1000 (test) first, each group sorted; and how many
    are test images.  Replay image id i is ``order[i]``."""
    ids = np.unique(np.concatenate([rp.nsd_ids for runs in plans.values() for rp in runs]))
    shared = design.is_shared(ids)
    return np.concatenate([ids[shared], ids[~shared]]), int(shared.sum())


def _params(layout: NsdLayout, sessions: list[int], image_size: int, n_runs: int) -> dict:
    return {
        "source": "Natural Scenes Dataset (NSD), Allen et al. 2022",
        "description": (
            f"NSD {layout.subj}, sessions {sessions}: recorded 7T fMRI, func1pt8mm time series "
            f"sampled every 4/3 s (NSD's upsampled grid; acquisition TR {ACQUISITION_TR} s), "
            f"{layout.betas} single-trial betas (nsdgeneral, z-scored per session) for "
            "training, shared-1000 images as the test split"
        ),
        "converter": "replay_data.nsd_convert",
        "converter_version": CONVERTER_VERSION,
        "nsd_root": str(layout.root.resolve()),
        "nsd_subject": layout.subject,
        "sessions": sessions,
        "betas": layout.betas,
        "image_size": image_size,
        "n_image_runs": n_runs,
        "tr_note": (
            f"tr is {NSD_TR!r} s: NSD's func1pt8mm time series and design files are resampled "
            f"to 4/3 s; the scanner acquired every {ACQUISITION_TR} s"
        ),
        "image_source": "stimuli/images.tsv source 'nsd:N': N = nsdId (0-based imgBrick row "
        "= 73k ID - 1)",
        "train_trials": "train/trials.tsv run = 1-based position of the trial's run in runs",
        "motion": "NSD time series are already motion-corrected (pass --motion none)",
    }


def _open_writer(
    out: Path, layout: NsdLayout, params: dict, affine: np.ndarray, shape: tuple, force: bool, log
) -> DatasetWriter:
    """A new writer, or the interrupted conversion's (same options) resumed."""
    info: dict[str, Any] = {}
    if (out / "dataset.json").is_file():
        try:
            info = json.loads((out / "dataset.json").read_text())
        except (OSError, ValueError):
            info = {}
    old = info.get("params", {})
    if info.get("complete") is False and not force:
        same = {k: old.get(k) for k in _RESUME_KEYS} == {k: params[k] for k in _RESUME_KEYS}
        if not same:
            raise DatasetError(
                f"{str(out)!r} holds an interrupted conversion with other options "
                f"({ {k: old.get(k) for k in _RESUME_KEYS} }): rerun with those options to "
                "resume it, or pass --force to start again"
            )
        writer = DatasetWriter.resume(out)
        log(f"resuming the conversion in {out}: {len(writer.written_runs)} runs already written")
        return writer
    overwrite = force
    if info.get("complete") is True and not force:
        if not is_builtin_simulation(out):
            raise DatasetError(
                f"{str(out)!r} already holds a complete replay dataset: pass --force to "
                "replace it, or choose another --name / --out"
            )
        log(f"replacing the built-in SIMULATED subject in {out} with recorded NSD data")
        overwrite = True
    return DatasetWriter(
        out,
        name=out.name,
        subject=f"NSD {layout.subj}",
        tr=NSD_TR,
        voxel_size=float(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).mean()),
        shape=shape,
        simulated=False,
        affine=affine,
        params=params,
        overwrite=overwrite,
    )


def _run_data(path: Path) -> np.ndarray:
    """The time series as stored (int16 in NSD, copied bit for bit); float32 if it is scaled."""
    img = nib.load(path)
    proxy = img.dataobj
    if proxy.slope == 1.0 and proxy.inter == 0.0 and img.get_data_dtype() == np.int16:
        return np.asanyarray(proxy.get_unscaled())
    return np.asarray(proxy, dtype=np.float32)


def _events(rp: RunPlan, replay_id: dict[int, int], shared: np.ndarray) -> list[Event]:
    return [
        Event(
            onset=float(rp.onsets[j]),
            duration=IMAGE_S,
            image_id=replay_id[int(rp.nsd_ids[j])],
            repetition=int(rp.repetitions[j]),
            split="test" if shared[j] else "train",
            trial=j,
        )
        for j in range(len(rp.nsd_ids))
    ]


def _write_training(
    writer: DatasetWriter,
    work: Path,
    plans: dict[int, list[RunPlan]],
    design: ExpDesign,
    replay_id: dict[int, int],
    n_voxels: int,
) -> int:
    """Gather the non-shared trials' betas of every session into one memory map and write
    them as the training set; returns the number of trials."""
    run_pos = {name: i + 1 for i, name in enumerate(writer.written_runs)}
    trials: dict[int, list[int]] = {}  # session -> its training trials (betas rows)
    ids, runs, reps = [], [], []
    for s, session_runs in plans.items():
        trials[s] = []
        for rp in session_runs:
            for j in np.flatnonzero(~design.is_shared(rp.nsd_ids)):
                trials[s].append(int(rp.trials[j]))
                ids.append(replay_id[int(rp.nsd_ids[j])])
                runs.append(run_pos[rp.name])
                reps.append(int(rp.repetitions[j]))
    path = work / "train_responses.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(ids), n_voxels))
    k = 0
    for s, rows in trials.items():
        if rows:
            betas = np.load(work / f"betas_session{s:02d}.npy", mmap_mode="r")
            mm[k : k + len(rows)] = betas[rows]
            k += len(rows)
    mm.flush()
    writer.write_training(mm, ids, runs, reps)
    del mm
    return len(ids)


def prepare_nsd(
    nsd_root: str | os.PathLike,
    subject: int,
    out: str | os.PathLike,
    *,
    sessions: list[int] | None = None,
    betas: str = DEFAULT_BETAS,
    image_size: int = DEFAULT_IMAGE_SIZE,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], object] = print,
) -> ReplayDataset:
    """Convert NSD ``subject``'s ``sessions`` into the replay dataset ``out``.

    Parameters
    ----------
    nsd_root : the local NSD copy (:class:`~replay_data.nsd_layout.NsdLayout`).
    subject : 1-8.
    out : the dataset folder (``<data home>/datasets/subjAA`` makes ``--replay subjAA`` use it).
    sessions : session numbers; None for every session with design files.
    betas : the betas version (MindEye's ``betas_fithrf_GLMdenoise_RR`` by default).
    image_size : stimulus side in pixels (16 to 425).
    force : start again, replacing a dataset or an interrupted conversion in ``out``.
    progress : show progress bars.
    log : one-line notices.

    Returns
    -------
    The complete dataset, opened.

    Raises
    ------
    DatasetError
        Missing NSD files (all listed), files that do not fit together, or a dataset in
        ``out`` that would be lost.
    ConfigError
        A bad option.
    """
    layout = NsdLayout.checked(nsd_root, subject, betas)
    image_size = int(
        check_number(image_size, "image_size", minimum=16, maximum=NSD_IMAGE_SIDE, integer=True)
    )
    out = Path(out).expanduser()
    runs = check_nsd_files(layout, sessions)
    design = ExpDesign.load(layout.expdesign)
    roi_img = _read_mask(layout.nsdgeneral, "the nsdgeneral ROI")
    roi = np.asarray(roi_img.dataobj) > 0
    shape = tuple(int(s) for s in roi.shape)
    brain = None
    if layout.brainmask.is_file():
        brain = np.asarray(_read_mask(layout.brainmask, "the brain mask").dataobj) > 0
    plans = {s: plan_session(layout, design, s, r) for s, r in runs.items()}
    _check_headers(layout, plans, shape, design.trials_per_session)
    order, n_test = _image_order(plans, design)
    replay_id = {int(n): i for i, n in enumerate(order)}
    n_runs = sum(len(r) for r in plans.values())
    params = _params(layout, sorted(plans), image_size, n_runs)
    writer = _open_writer(out, layout, params, roi_img.affine, shape, force, log)
    writer.write_masks(roi, brain)
    work = out / _WORK
    work.mkdir(exist_ok=True)
    done = set(writer.written_runs)
    bar = tqdm(
        total=n_runs + len(plans), desc=f"NSD {layout.subj}", unit="file", disable=not progress
    )
    for s, session_runs in plans.items():
        for rp in session_runs:
            if rp.name not in done:
                events = _events(rp, replay_id, design.is_shared(rp.nsd_ids))
                writer.write_run(_run_data(layout.timeseries(s, rp.run)), events, run=rp.name)
            bar.update()
        betas_path = work / f"betas_session{s:02d}.npy"
        if not betas_path.is_file():
            write_npy(
                betas_path, session_betas(layout.betas_file(s), roi, design.trials_per_session)
            )
        bar.update()
    bar.close()
    images = work / "images.npy"
    want = (len(order), image_size, image_size, 3)
    if not images.is_file() or np.load(images, mmap_mode="r").shape != want:
        extract_stimuli(layout.stimuli, order, image_size, images, progress=progress)
    splits = ["test"] * n_test + ["train"] * (len(order) - n_test)
    writer.write_stimuli(np.load(images, mmap_mode="r"), splits, [f"nsd:{n}" for n in order])
    n_train = _write_training(writer, work, plans, design, replay_id, int(roi.sum()))
    ds = writer.finalize()
    shutil.rmtree(work, ignore_errors=True)
    log(
        f"NSD {layout.subj} sessions {sorted(plans)} written to {out}: {n_runs} runs, "
        f"{len(order)} images ({n_test} shared-1000 test images), {n_train} training trials "
        "(replay TR 4/3 s: NSD's resampled grid)"
    )
    return ds
