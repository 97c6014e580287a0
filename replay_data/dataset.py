"""The replay dataset format: a folder that a replay source streams as if it were a scanner.

Layout (one folder per dataset, usually ``<data home>/datasets/NAME``)::

    dataset.json                 meta data; written first with "complete": false and rewritten
                                 last with "complete": true, so an interrupted write is never
                                 taken for a dataset
    roi_mask.nii.gz              uint8 (X, Y, Z) "nsdgeneral" ROI; voxel order of every response
                                 vector = np.flatnonzero(mask) (C order), i.e. ``volume[mask]``
    brain_mask.nii.gz            optional uint8 (X, Y, Z) brain mask
    func/run-01_bold.nii.gz      4D (X, Y, Z, T) int16 with scl_slope / scl_inter (scanner units)
    func/run-01_events.tsv       BIDS events: onset duration trial_type image_id repetition split
    stimuli/images.npy           (N, H, W, 3) uint8; row i is image_id i
    stimuli/images.tsv           image_id split source
    train/responses.npy          (n_trials, n_voxels) float32 per-trial responses, ROI order
    train/trials.tsv             image_id run repetition

Every file is written under a temporary name and renamed into place when complete.  Onsets and
durations are seconds from the first volume's acquisition; ``repetition`` counts from 1;
``split`` is ``test``, ``train`` or ``filler``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from rt_base.checks import check_choice
from rt_base.errors import DatasetError

FORMAT = "mindeye-rt-replay"
FORMAT_VERSION = 1
SPLITS = ("test", "train", "filler")
EVENT_COLUMNS = ("onset", "duration", "trial_type", "image_id", "repetition", "split")
IMAGE_COLUMNS = ("image_id", "split", "source")
TRIAL_COLUMNS = ("image_id", "run", "repetition")


@dataclass(frozen=True)
class Event:
    """One image trial of a run (seconds from the run's first volume)."""

    onset: float
    duration: float
    image_id: int
    repetition: int
    split: str
    trial: int
    trial_type: str = "image"


@dataclass(frozen=True)
class DatasetMeta:
    """The contents of ``dataset.json`` that readers rely on."""

    name: str
    subject: str
    tr: float
    voxel_size: float
    shape: tuple[int, int, int]
    n_voxels: int
    simulated: bool
    runs: list[str]
    params: dict[str, Any] = field(default_factory=dict)


def _fail(path: Path, rule: str, remedy: str = "") -> DatasetError:
    tail = f"; {remedy}" if remedy else ""
    return DatasetError(f"replay dataset {str(path)!r}: {rule}{tail}")


_REMEDY = "re-create it (e.g. `mindeye-rt simulate --name NAME`) or point to a complete dataset"


def _tmp(path: Path) -> Path:
    """A temporary sibling name that keeps the suffixes (nibabel picks the format from them)."""
    return path.with_name(f".part-{path.name}")


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _write_tsv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    tmp = _tmp(path)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
    os.replace(tmp, path)


def _write_npy(path: Path, array: np.ndarray) -> None:
    tmp = _tmp(path)
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _write_nifti(path: Path, img: nib.Nifti1Image) -> None:
    tmp = _tmp(path)
    img.to_filename(str(tmp))
    os.replace(tmp, path)


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


def default_affine(shape: Sequence[int], voxel_size: float) -> np.ndarray:
    """(4, 4) affine: isotropic ``voxel_size`` mm voxels, RAS, grid centred on the origin."""
    aff = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    aff[:3, 3] = -voxel_size * (np.asarray(shape[:3], float) - 1) / 2
    return aff


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
        f = self.path / "func" / f"{self._run_name(run)}_bold.nii.gz"
        try:
            img = nib.load(f)
            raw = np.asarray(img.dataobj.get_unscaled())
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise _fail(self.path, f"cannot read 'func/{run}_bold.nii.gz' ({e})", _REMEDY) from None
        slope, inter = img.dataobj.slope, img.dataobj.inter
        out = raw.astype(np.float32, order="F")
        if slope != 1.0:
            out *= np.float32(slope)
        if inter != 0.0:
            out += np.float32(inter)
        return out

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
        if self.path.exists():
            entries = list(self.path.iterdir()) if self.path.is_dir() else [self.path]
            if entries and not (self.path / "dataset.json").is_file():
                raise DatasetError(
                    f"'path' {str(self.path)!r} exists and is not a replay dataset; refusing to "
                    "write into it: choose another folder or empty it"
                )
            if entries and not overwrite:
                raise DatasetError(
                    f"replay dataset {str(self.path)!r} already exists: pass overwrite=True "
                    "(--overwrite) to replace it, or choose another name"
                )
            if entries:
                shutil.rmtree(self.path)
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
        _write_json(self.path / "dataset.json", self._info)

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
        _write_json(self.path / "dataset.json", self._info)
        return run

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
        _write_json(self.path / "dataset.json", self._info)
        self._finalized = True
        return ReplayDataset.open(self.path)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._finalized:
            self.finalize()
