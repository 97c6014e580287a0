"""Write a replay dataset incrementally (the format: :mod:`replay_data.dataset_format`).

Every file goes through :mod:`rt_base.atomic` (a temporary sibling renamed into place), and
``dataset.json`` says ``"complete": true`` only once :meth:`DatasetWriter.finalize` ran.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from fmri_compute.rigid import framewise_displacement
from replay_data.dataset_format import (
    EVENT_COLUMNS,
    FORMAT,
    FORMAT_VERSION,
    IMAGE_COLUMNS,
    MOTION_COLUMNS,
    SPLITS,
    TRIAL_COLUMNS,
    Event,
    default_affine,
)
from replay_data.dataset_reader import ReplayDataset
from rt_base.atomic import write_json, write_with
from rt_base.checks import check_choice
from rt_base.errors import DatasetError

__all__ = ["DatasetWriter"]


def _write_tsv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(columns)
            w.writerows(rows)

    write_with(path, write)


def _write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    write_with(path, write)


def _write_nifti(path: Path, img: nib.Nifti1Image) -> None:
    # The temporary name ends in ".gz" but not ".nii.gz", so nibabel cannot pick the format
    # from it: open the (gzip) stream by its suffix and write the image into it.
    def write(tmp: Path) -> None:
        with ImageOpener(tmp, "wb") as f:
            img.to_stream(f)

    write_with(path, write)


def _clear_old_dataset(path: Path, overwrite: bool) -> None:
    """Remove the replay dataset at ``path`` if ``overwrite``; refuse anything else there."""
    if not path.exists():
        return
    entries = list(path.iterdir()) if path.is_dir() else [path]
    if entries and not (path / "dataset.json").is_file():
        raise DatasetError(
            f"'path' {str(path)!r} exists and is not a replay dataset; refusing to "
            "write into it: choose another folder or empty it"
        )
    if entries and not overwrite:
        raise DatasetError(
            f"replay dataset {str(path)!r} already exists: pass overwrite=True "
            "(`mindeye-rt simulate --force`) to replace it, or choose another name"
        )
    if entries:
        shutil.rmtree(path)


class DatasetWriter:
    """Write a replay dataset incrementally; :meth:`finalize` marks it complete.

    Parameters
    ----------
    path : the dataset folder (created).
    name, subject : dataset and subject names.
    tr : seconds per volume.  voxel_size : mm.  shape : (X, Y, Z) volume grid.
    simulated : whether the data come from the simulator.
    affine : (4, 4) voxel-to-world affine; default :func:`default_affine`.
    params : free-form meta data stored under ``"params"`` in ``dataset.json``.
    overwrite : replace an existing dataset folder at ``path``.

    Use it as a context manager, or call :meth:`finalize`; a writer that is not finalized
    leaves ``"complete": false`` behind, which readers reject.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        name: str,
        subject: str,
        tr: float,
        voxel_size: float,
        shape: Sequence[int],
        simulated: bool,
        affine: np.ndarray | None = None,
        params: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path).expanduser()
        _clear_old_dataset(self.path, overwrite)
        for sub in ("func", "stimuli"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        shape = tuple(int(s) for s in shape)
        self._info: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "complete": False,
            "name": name,
            "subject": subject,
            "simulated": bool(simulated),
            "tr": float(tr),
            "voxel_size": float(voxel_size),
            "shape": list(shape),
            "affine": (default_affine(shape, voxel_size) if affine is None else affine).tolist(),
            "n_voxels": None,
            "runs": [],
            "run_volumes": {},
            "n_images": 0,
            "n_train_trials": 0,
            "params": dict(params or {}),
        }
        self._shape = shape
        self._finalized = False
        write_json(self.path / "dataset.json", self._info)

    @classmethod
    def resume(cls, path: str | os.PathLike) -> DatasetWriter:
        """Continue writing the interrupted dataset at ``path`` (``"complete": false``).

        The runs that ``dataset.json`` lists were written whole (it is rewritten after each
        run), so they are kept; anything else (masks, stimuli, training) is written again by
        the caller.  A long conversion (``prepare-nsd``) resumes so instead of starting over.

        Raises
        ------
        DatasetError
            ``path`` holds no dataset of this format, or a complete one.
        """
        path = Path(path).expanduser()
        try:
            info = json.loads((path / "dataset.json").read_text())
        except (OSError, ValueError) as e:
            raise DatasetError(
                f"cannot resume {str(path)!r}: no readable dataset.json ({e})"
            ) from None
        if info.get("format") != FORMAT or info.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"cannot resume {str(path)!r}: not a {FORMAT!r} dataset")
        if info.get("complete") is not False:
            raise DatasetError(f"cannot resume {str(path)!r}: the dataset is already complete")
        self = cls.__new__(cls)
        self.path = path
        self._info = info
        self._shape = tuple(int(s) for s in info["shape"])
        self._finalized = False
        return self

    @property
    def written_runs(self) -> list[str]:
        """The runs written so far, in order."""
        return list(self._info["runs"])

    @property
    def affine(self) -> np.ndarray:
        return np.asarray(self._info["affine"], float)

    def _nifti(self, data: np.ndarray) -> nib.Nifti1Image:
        img = nib.Nifti1Image(data, self.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_qform(self.affine, code=1)
        img.header.set_sform(self.affine, code=1)
        return img

    def write_masks(self, roi_mask: np.ndarray, brain_mask: np.ndarray | None = None) -> None:
        """Write the (X, Y, Z) bool ROI mask and, optionally, the brain mask."""
        for rel, mask in (("roi_mask.nii.gz", roi_mask), ("brain_mask.nii.gz", brain_mask)):
            if mask is None:
                continue
            mask = np.asarray(mask, bool)
            if mask.shape != self._shape:
                raise DatasetError(f"'{rel}' must have shape {self._shape}, got {mask.shape}")
            _write_nifti(self.path / rel, self._nifti(mask.astype(np.uint8)))
        self._info["n_voxels"] = int(np.count_nonzero(roi_mask))

    def write_stimuli(
        self, images: np.ndarray, splits: Sequence[str], sources: Sequence[str]
    ) -> None:
        """Write ``images`` (N, H, W, 3) uint8 with each image's split and source name."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DatasetError(f"'images' must be (N, H, W, 3) uint8, got {images.shape}")
        if not len(images) == len(splits) == len(sources):
            raise DatasetError("'images', 'splits' and 'sources' must have the same length")
        for s in splits:
            check_choice(s, "split", SPLITS)
        _write_npy(self.path / "stimuli" / "images.npy", images)
        rows = [(i, sp, so) for i, (sp, so) in enumerate(zip(splits, sources, strict=True))]
        _write_tsv(self.path / "stimuli" / "images.tsv", IMAGE_COLUMNS, rows)
        self._info["n_images"] = len(images)

    def write_run(self, data: np.ndarray, events: Sequence[Event], run: str | None = None) -> str:
        """Write one run and its events; returns the run name (``run-01``, ... by default).

        Parameters
        ----------
        data : (X, Y, Z, T) float array in scanner units; stored as int16 with scl_slope and
            scl_inter chosen by nibabel so values survive to within slope / 2.
        events : the run's image trials.
        """
        if data.ndim != 4 or tuple(data.shape[:3]) != self._shape:
            raise DatasetError(f"'data' must be {self._shape}+(T,), got {data.shape}")
        runs: list[str] = self._info["runs"]
        run = run or f"run-{len(runs) + 1:02d}"
        if run in runs:
            raise DatasetError(f"run {run!r} was already written")
        img = self._nifti(data)
        img.header.set_data_dtype(np.int16)
        img.header.set_xyzt_units("mm", "sec")
        img.header["pixdim"][4] = self._info["tr"]
        rows = [
            (f"{e.onset:.3f}", f"{e.duration:.3f}", e.trial_type, e.image_id, e.repetition, e.split)
            for e in sorted(events, key=lambda e: e.onset)
        ]
        _write_tsv(self.path / "func" / f"{run}_events.tsv", EVENT_COLUMNS, rows)
        _write_nifti(self.path / "func" / f"{run}_bold.nii.gz", img)
        runs.append(run)
        self._info["run_volumes"][run] = int(data.shape[3])
        write_json(self.path / "dataset.json", self._info)
        return run

    def write_true_motion(self, run: str, params: np.ndarray) -> None:
        """Write the true head motion of a written run (a simulated moving subject's).

        Parameters
        ----------
        run : a run already written with :meth:`write_run`.
        params : (T, 6) motion of each volume, :mod:`fmri_compute.rigid` convention
            (mm, degrees); its framewise displacement is stored with it.
        """
        if run not in self._info["runs"]:
            raise DatasetError(f"run {run!r} has not been written: write_run it first")
        params = np.asarray(params, np.float64)
        n = self._info["run_volumes"][run]
        if params.shape != (n, 6) or not np.all(np.isfinite(params)):
            raise DatasetError(
                f"'params' of {run!r} must be ({n}, 6) finite numbers, got {params.shape}"
            )
        fd = framewise_displacement(params)
        rows = ([f"{v:.6f}" for v in row] for row in np.column_stack([params, fd]))
        (self.path / "truth").mkdir(exist_ok=True)
        _write_tsv(self.path / "truth" / f"{run}_motion.tsv", MOTION_COLUMNS, rows)
        truth: list[str] = self._info.setdefault("true_motion_runs", [])
        if run not in truth:
            truth.append(run)
        write_json(self.path / "dataset.json", self._info)

    def write_training(
        self,
        responses: np.ndarray,
        image_ids: Sequence[int],
        runs: Sequence[int],
        repetitions: Sequence[int],
    ) -> None:
        """Write (n_trials, n_voxels) float32 training responses and their trial table."""
        responses = np.asarray(responses, np.float32)
        n = len(responses)
        if responses.ndim != 2 or not n == len(image_ids) == len(runs) == len(repetitions):
            raise DatasetError(
                f"'responses' must be (n_trials, n_voxels) with n_trials = len(image_ids), "
                f"got {responses.shape} and {len(image_ids)} ids"
            )
        (self.path / "train").mkdir(exist_ok=True)
        _write_npy(self.path / "train" / "responses.npy", responses)
        rows = [
            (int(i), int(r), int(k)) for i, r, k in zip(image_ids, runs, repetitions, strict=True)
        ]
        _write_tsv(self.path / "train" / "trials.tsv", TRIAL_COLUMNS, rows)
        self._info["n_train_trials"] = n

    def finalize(self) -> ReplayDataset:
        """Mark the dataset complete (rewrites ``dataset.json`` last) and open it."""
        missing = [
            what
            for what, ok in (
                ("the ROI mask (write_masks)", self._info["n_voxels"] is not None),
                ("the stimuli (write_stimuli)", self._info["n_images"] > 0),
                ("a run (write_run)", bool(self._info["runs"])),
            )
            if not ok
        ]
        if missing:
            raise DatasetError(f"cannot finalize {str(self.path)!r}: nothing written for {missing}")
        self._info["complete"] = True
        write_json(self.path / "dataset.json", self._info)
        self._finalized = True
        return ReplayDataset.open(self.path)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._finalized:
            self.finalize()
