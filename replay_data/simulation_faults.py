"""Bad volumes on purpose: a copy of a replay dataset with chosen volumes corrupted.

For tests and demonstrations of the volume checks (:mod:`fmri_compute.volume_checks`): the
copy replays like the original, except that the chosen volumes carry one fault each:

``nan``
    NaN in 1 % of the ROI voxels (at least one) and +Inf in one voxel outside the ROI;
``zero``
    the whole volume zero (a dropout);
``slice``
    the slice through the middle of the ROI (along the last axis) scaled to 2 % (a slice lost
    in reconstruction or transfer);
``spike``
    the whole volume 10 % brighter (a sudden intensity spike).

Everything else is hard-linked (or copied where links are refused), so a copy costs little
room; the corrupted runs are rewritten as float32 NIfTI, since the int16 of the dataset format
cannot hold NaN (the reader takes either).  ``faults.json`` in the copy lists the faults, the
truth a test scores the checks against.  ``dataset.json`` is unchanged, so a model trained for
the original (keyed by its training data) serves the copy.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from replay_data.dataset_reader import ReplayDataset
from rt_base.atomic import write_json, write_with
from rt_base.checks import check_choice, check_number
from rt_base.errors import DatasetError

__all__ = ["FAULT_KINDS", "Fault", "corrupt_volume", "write_faulty_copy"]

FAULT_KINDS = ("nan", "zero", "slice", "spike")
#: how much brighter a ``spike`` volume is, and what a ``slice`` fault leaves of its slice
SPIKE_GAIN = 1.10
SLICE_LEFT = 0.02


@dataclass(frozen=True)
class Fault:
    """Volume ``index`` of ``run`` gets fault ``kind`` (one of :data:`FAULT_KINDS`)."""

    run: str
    index: int
    kind: str

    def __post_init__(self) -> None:
        check_choice(self.kind, "kind", FAULT_KINDS)
        check_number(self.index, "index", minimum=0, integer=True)


def corrupt_volume(volume: np.ndarray, kind: str, roi: np.ndarray) -> np.ndarray:
    """A corrupted float32 copy of one (X, Y, Z) volume (see the module for each kind)."""
    check_choice(kind, "kind", FAULT_KINDS)
    vol = np.array(volume, dtype=np.float32, order="C", copy=True)  # reshape(-1): a view
    roi = np.asarray(roi, bool)
    if kind == "nan":
        inside = np.flatnonzero(roi)
        picked = inside[:: max(1, inside.size // max(1, inside.size // 100))]
        vol.reshape(-1)[picked] = np.nan
        outside = np.flatnonzero(~roi)
        if outside.size:
            vol.reshape(-1)[outside[outside.size // 2]] = np.inf
    elif kind == "zero":
        vol[:] = 0.0
    elif kind == "slice":
        z = int(np.median(np.nonzero(roi)[2]))
        vol[:, :, z] *= SLICE_LEFT
    else:
        vol *= SPIKE_GAIN
    return vol


def write_faulty_copy(
    source: ReplayDataset | str | Path,
    dest: str | Path,
    faults: Iterable[Fault],
    *,
    overwrite: bool = False,
) -> ReplayDataset:
    """Copy ``source`` to ``dest`` with ``faults`` injected; returns the copy, opened.

    Raises
    ------
    DatasetError
        ``dest`` exists (and not ``overwrite``), or a fault names a run or volume the dataset
        does not have.
    """
    src = source if isinstance(source, ReplayDataset) else ReplayDataset.open(source)
    faults = list(faults)
    dest = Path(dest)
    by_run: dict[str, list[Fault]] = {}
    for f in faults:
        if f.run not in src.runs:
            raise DatasetError(f"fault {f} names run {f.run!r}; {src.path} has {src.runs}")
        if f.index >= src.n_volumes(f.run):
            raise DatasetError(
                f"fault {f} is past the end of run {f.run!r} ({src.n_volumes(f.run)} volumes)"
            )
        by_run.setdefault(f.run, []).append(f)
    if dest.exists():
        if not overwrite:
            raise DatasetError(f"{dest} exists; give overwrite=True to replace it")
        shutil.rmtree(dest)
    shutil.copytree(src.path, dest, copy_function=_link_or_copy)
    roi = src.roi_mask()
    for run, run_faults in by_run.items():
        bold = src.load_run(run)
        for f in run_faults:
            bold[..., f.index] = corrupt_volume(bold[..., f.index], f.kind, roi)
        _write_float_run(dest / "func" / f"{run}_bold.nii.gz", bold, src.affine)
    write_json(dest / "faults.json", {"faults": [asdict(f) for f in faults]})
    return ReplayDataset.open(dest)


def read_faults(path: str | Path) -> list[Fault]:
    """The faults a copy was written with (``faults.json``)."""
    data = json.loads((Path(path) / "faults.json").read_text())
    return [Fault(**f) for f in data["faults"]]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_float_run(path: Path, bold: np.ndarray, affine: np.ndarray) -> None:
    """Replace a (hard-linked) run file by a float32 NIfTI, never writing through the link."""
    img = nib.Nifti1Image(np.asarray(bold, np.float32), affine)
    img.header.set_data_dtype(np.float32)
    path.unlink()

    def write(tmp: Path) -> None:
        with gzip.open(tmp, "wb", compresslevel=1) as fh:
            fh.write(img.to_bytes())

    write_with(path, write)
