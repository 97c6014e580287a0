"""Open and read a replay dataset (the format: :mod:`replay_data.dataset_format`)."""

from __future__ import annotations

import csv
import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from replay_data.dataset_format import (
    EVENT_COLUMNS,
    FORMAT,
    FORMAT_VERSION,
    IMAGE_COLUMNS,
    MOTION_COLUMNS,
    SPLITS,
    TRIAL_COLUMNS,
    DatasetMeta,
    Event,
)
from rt_base.checks import check_choice
from rt_base.errors import DatasetError
from rt_wire.volume import scaled_to_float32

__all__ = ["ReplayDataset"]


def _fail(path: Path, rule: str, remedy: str = "") -> DatasetError:
    tail = f"; {remedy}" if remedy else ""
    return DatasetError(f"replay dataset {str(path)!r}: {rule}{tail}")


_REMEDY = "re-create it (e.g. `mindeye-rt simulate --name NAME`) or point to a complete dataset"


def _read_tsv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise _fail(path.parent.parent, f"missing file {path.name!r} ({path})", _REMEDY)
    with open(path, newline="") as f:
        table = list(csv.reader(f, delimiter="\t"))
    header = table[0] if table else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise _fail(path, f"columns {missing} missing (need {list(columns)})", _REMEDY)
    return [dict(zip(header, row, strict=False)) for row in table[1:] if row]


class ReplayDataset:
    """A complete replay dataset on disk (read-only).

    Use :meth:`open`; it checks the folder and raises :class:`DatasetError` naming the missing or
    bad file.  Large arrays are read only when asked for.
    """

    def __init__(self, path: Path, meta: DatasetMeta, info: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta
        self._info = info
        self.affine = np.asarray(info["affine"], float)
        self._events: dict[str, list[Event]] = {}
        self._images: list[dict[str, str]] | None = None

    # ------------------------------------------------------------------ opening / validation
    @classmethod
    def open(cls, path: str | os.PathLike) -> ReplayDataset:
        """Open and validate the dataset folder ``path``."""
        path = Path(path).expanduser()
        if not path.is_dir():
            raise _fail(path, "folder does not exist", _REMEDY)
        info = cls._read_info(path)
        meta = DatasetMeta(
            name=str(info["name"]),
            subject=str(info["subject"]),
            tr=float(info["tr"]),
            voxel_size=float(info["voxel_size"]),
            shape=tuple(int(s) for s in info["shape"]),  # type: ignore[arg-type]
            n_voxels=int(info["n_voxels"]),
            simulated=bool(info["simulated"]),
            runs=[str(r) for r in info["runs"]],
            params=dict(info.get("params", {})),
        )
        ds = cls(path, meta, info)
        ds._validate()
        return ds

    @staticmethod
    def _read_info(path: Path) -> dict[str, Any]:
        jpath = path / "dataset.json"
        if not jpath.is_file():
            raise _fail(path, "missing file 'dataset.json': not a replay dataset", _REMEDY)
        try:
            info = json.loads(jpath.read_text())
        except (OSError, ValueError) as e:
            raise _fail(path, f"'dataset.json' is not valid JSON ({e})", _REMEDY) from None
        if info.get("format") != FORMAT or info.get("format_version") != FORMAT_VERSION:
            raise _fail(
                path,
                f"'dataset.json' has format {info.get('format')!r} version "
                f"{info.get('format_version')!r}, this build reads {FORMAT!r} "
                f"version {FORMAT_VERSION}",
                _REMEDY,
            )
        if info.get("complete") is not True:
            raise _fail(
                path,
                "incomplete: its writing was interrupted ('dataset.json' lacks \"complete\": true)",
                "delete the folder and " + _REMEDY,
            )
        need = ("name", "subject", "tr", "voxel_size", "shape", "n_voxels", "simulated", "runs")
        missing = [k for k in (*need, "affine") if k not in info]
        if missing:
            raise _fail(path, f"'dataset.json' lacks the keys {missing}", _REMEDY)
        return info

    def _validate(self) -> None:
        p, m = self.path, self.meta
        mask = self.roi_mask()
        if mask.shape != m.shape or int(mask.sum()) != m.n_voxels:
            raise _fail(
                p,
                f"'roi_mask.nii.gz' has shape {mask.shape} and {int(mask.sum())} voxels, "
                f"'dataset.json' says {m.shape} and {m.n_voxels}",
                _REMEDY,
            )
        if not m.runs:
            raise _fail(p, "'dataset.json' lists no runs", _REMEDY)
        n_images = self._npy_shape("stimuli/images.npy")[0]
        self._image_table()
        for run in m.runs:
            bold = p / "func" / f"{run}_bold.nii.gz"
            if not bold.is_file():
                raise _fail(p, f"missing file 'func/{run}_bold.nii.gz'", _REMEDY)
            shape = nib.load(bold).shape
            if len(shape) != 4 or tuple(shape[:3]) != m.shape:
                raise _fail(p, f"'func/{run}_bold.nii.gz' has shape {shape}, need {m.shape}+(T,)")
            bad = [e.image_id for e in self.events(run) if not 0 <= e.image_id < n_images]
            if bad:
                raise _fail(p, f"'func/{run}_events.tsv' names images {bad[:5]} not in stimuli")
        for run in self._info.get("true_motion_runs", []):
            if run not in m.runs or not (p / "truth" / f"{run}_motion.tsv").is_file():
                raise _fail(p, f"missing file 'truth/{run}_motion.tsv' (or run {run!r})", _REMEDY)
        if self.has_training:
            n, v = self._npy_shape("train/responses.npy")
            if v != m.n_voxels or n != len(_read_tsv(p / "train" / "trials.tsv", TRIAL_COLUMNS)):
                raise _fail(p, "'train/responses.npy' does not match 'train/trials.tsv'", _REMEDY)

    def _npy_shape(self, rel: str) -> tuple[int, ...]:
        f = self.path / rel
        if not f.is_file():
            raise _fail(self.path, f"missing file {rel!r}", _REMEDY)
        try:
            return np.load(f, mmap_mode="r").shape
        except (OSError, ValueError) as e:
            raise _fail(self.path, f"{rel!r} is not a valid .npy file ({e})", _REMEDY) from None

    # ------------------------------------------------------------------ accessors
    @property
    def root(self) -> Path:
        """The dataset folder (same as :attr:`path`)."""
        return self.path

    @property
    def runs(self) -> list[str]:
        """Run names in acquisition order, e.g. ``['run-01', 'run-02']``."""
        return list(self.meta.runs)

    @property
    def has_training(self) -> bool:
        """Whether the dataset carries training responses (``train/``)."""
        return bool(self._info.get("n_train_trials", 0))

    def _run_name(self, run: str) -> str:
        return check_choice(run, "run", self.meta.runs)

    def roi_mask(self) -> np.ndarray:
        """(X, Y, Z) bool ROI mask; response vectors are ``volume[mask]``."""
        return self._mask("roi_mask.nii.gz")

    def brain_mask(self) -> np.ndarray | None:
        """(X, Y, Z) bool brain mask, or None if the dataset has none."""
        if not (self.path / "brain_mask.nii.gz").is_file():
            return None
        return self._mask("brain_mask.nii.gz")

    def _mask(self, rel: str) -> np.ndarray:
        f = self.path / rel
        if not f.is_file():
            raise _fail(self.path, f"missing file {rel!r}", _REMEDY)
        return np.asarray(nib.load(f).dataobj) > 0

    def n_volumes(self, run: str) -> int:
        """Number of volumes T of ``run`` (from the NIfTI header only)."""
        return int(nib.load(self.path / "func" / f"{self._run_name(run)}_bold.nii.gz").shape[3])

    def load_run(self, run: str) -> np.ndarray:
        """The whole run in scanner units.

        Returns
        -------
        bold : (X, Y, Z, T) float32 array (Fortran order, so ``bold[..., t]`` is contiguous).
        """
        return scaled_to_float32(*self.load_run_stored(run), order="F")

    def load_run_stored(self, run: str) -> tuple[np.ndarray, float, float]:
        """The whole run as its file stores it: ``(stored, slope, intercept)``, ``stored`` the
        (X, Y, Z, T) unscaled values (Fortran order) and the scanner units
        ``float32(stored) * float32(slope) + float32(intercept)``."""
        f = self.path / "func" / f"{self._run_name(run)}_bold.nii.gz"
        try:
            img = nib.load(f)
            raw = np.asarray(img.dataobj.get_unscaled())
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise _fail(self.path, f"cannot read 'func/{run}_bold.nii.gz' ({e})", _REMEDY) from None
        slope, inter = img.dataobj.slope, img.dataobj.inter
        return raw, float(slope), float(inter)

    def events(self, run: str) -> list[Event]:
        """Image trials of ``run`` in onset order."""
        run = self._run_name(run)
        if run not in self._events:
            f = self.path / "func" / f"{run}_events.tsv"
            try:
                rows = _read_tsv(f, EVENT_COLUMNS)
                ev = [
                    Event(
                        onset=float(r["onset"]),
                        duration=float(r["duration"]),
                        image_id=int(r["image_id"]),
                        repetition=int(r["repetition"]),
                        split=r["split"],
                        trial=i,
                        trial_type=r["trial_type"],
                    )
                    for i, r in enumerate(rows)
                ]
            except (TypeError, ValueError) as e:
                raise _fail(
                    self.path, f"bad row in 'func/{run}_events.tsv' ({e})", _REMEDY
                ) from None
            self._events[run] = ev
        return list(self._events[run])

    def true_motion(self, run: str) -> np.ndarray | None:
        """The head's true motion in ``run`` (a simulated moving subject's; for scoring).

        Returns
        -------
        params : (T, 6) float64 array in :mod:`fmri_compute.rigid`'s convention (mm, degrees),
            or None when the dataset records none (a still or a recorded subject).
        """
        run = self._run_name(run)
        if run not in self._info.get("true_motion_runs", []):
            return None
        rel = f"truth/{run}_motion.tsv"
        try:
            rows = _read_tsv(self.path / "truth" / f"{run}_motion.tsv", MOTION_COLUMNS)
            params = np.array([[float(r[c]) for c in MOTION_COLUMNS[:6]] for r in rows])
        except (TypeError, ValueError) as e:
            raise _fail(self.path, f"bad row in {rel!r} ({e})", _REMEDY) from None
        if params.shape != (self.n_volumes(run), 6):
            raise _fail(
                self.path,
                f"{rel!r} has {len(params)} rows, the run has {self.n_volumes(run)} volumes",
                _REMEDY,
            )
        return params

    def _image_table(self) -> list[dict[str, str]]:
        if self._images is None:
            self._images = _read_tsv(self.path / "stimuli" / "images.tsv", IMAGE_COLUMNS)
        return self._images

    def stimuli(self) -> np.ndarray:
        """(N, H, W, 3) uint8 memmap; row i is image_id i."""
        return np.load(self.path / "stimuli" / "images.npy", mmap_mode="r")

    def image_ids(self, split: str) -> np.ndarray:
        """(n,) int64 ids of the images of ``split`` ('test', 'train' or 'filler')."""
        check_choice(split, "split", SPLITS)
        return np.array(
            [int(r["image_id"]) for r in self._image_table() if r["split"] == split], np.int64
        )

    def training_responses(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-trial training responses.

        Returns
        -------
        responses : (n_trials, n_voxels) float32 array, ROI voxel order.
        image_ids : (n_trials,) int64 array.
        """
        if not self.has_training:
            raise _fail(self.path, "has no training responses ('train/')", _REMEDY)
        ids, _, _ = self.training_trials()
        return np.load(self.path / "train" / "responses.npy").astype(np.float32, copy=False), ids

    def training_trials(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image_ids, runs, repetitions), each an (n_trials,) int64 array."""
        rows = _read_tsv(self.path / "train" / "trials.tsv", TRIAL_COLUMNS)
        cols = [np.array([int(r[c]) for r in rows], np.int64) for c in TRIAL_COLUMNS]
        return cols[0], cols[1], cols[2]

    def __repr__(self) -> str:
        m = self.meta
        kind = "simulated" if m.simulated else "recorded"
        return (
            f"ReplayDataset({m.name!r}, {kind}, {len(m.runs)} runs, {m.n_voxels} ROI voxels, "
            f"path={str(self.path)!r})"
        )
