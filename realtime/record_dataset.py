"""A session record opened as a replay dataset: what ``mindeye-rt rerun`` streams.

:class:`RecordDataset` gives the replay source (:class:`realtime.stages.source.ReplaySource`)
what it reads from a :class:`~replay_data.dataset_reader.ReplayDataset`: the runs, in the
order the session streamed them, their volumes from the record's BIDS bold files, their trials
from its ``_events.tsv`` (so a live session whose trials came as LSL markers reruns without
the stimulus program), the TR and grid.  The mask, stimuli and image splits are borrowed from
the design dataset named in the record's ``config.json``; :attr:`RecordDataset.root` is that
dataset's folder, as every consumer of ``dataset_path`` expects.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from realtime.session_layout import SessionLayout, layout_of
from replay_data.dataset_format import Event
from rt_base.errors import DatasetError


def is_record(path: str | Path) -> bool:
    """Whether ``path`` is a session record (a session folder with a BIDS description)."""
    p = Path(path)
    return (p / "config.json").is_file() and (p / "dataset_description.json").is_file()


def open_replay(path: str | Path):
    """A replay dataset at ``path``, or the session record there opened as one."""
    if is_record(path):
        return RecordDataset(path)
    from replay_data.dataset_reader import ReplayDataset

    return ReplayDataset.open(path)


def read_session(root: str | Path) -> dict:
    """A session folder's ``config.json``."""
    path = Path(root) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(
            f"{root} is not a session folder: cannot read config.json ({err})"
        ) from None


class RecordDataset:
    """The runs of the session record at ``root`` (see the module's docstring).

    Raises
    ------
    DatasetError
        The folder is not a BIDS session record, its design dataset is gone, it holds no run
        with volumes, or its runs' TRs differ.
    """

    def __init__(self, root: str | Path, design=None) -> None:
        from replay_data.dataset_reader import ReplayDataset

        self.record_root = Path(root)
        self.session = read_session(root)
        layout = layout_of(root, self.session)
        if layout is None:
            raise DatasetError(
                f"{root} was recorded before session records were BIDS (its config.json has no "
                "record_labels): it holds no volumes to rerun"
            )
        self.layout: SessionLayout = layout
        self.design = design or ReplayDataset.open(self.session["dataset"])
        numbers = layout.recorded_runs()
        self.numbers = {r: n for r, n in numbers.items() if layout.bold_file(n) is not None}
        if not self.numbers:
            raise DatasetError(
                f"{root} holds no recorded volumes (no run of {layout.scans_tsv.name} has a bold "
                "file in func/)"
            )
        self.sidecars = {r: self._sidecar(n) for r, n in self.numbers.items()}
        trs = {round(float(s["RepetitionTime"]), 9) for s in self.sidecars.values()}
        if len(trs) != 1:
            raise DatasetError(f"{root}: the runs' RepetitionTime differ ({sorted(trs)})")
        self.meta = dataclasses.replace(self.design.meta, tr=trs.pop(), runs=list(self.numbers))
        first = next(iter(self.sidecars.values()))["MindEyeRT"]
        self.affine = np.asarray(first.get("affine", self.design.affine), float)

    def _sidecar(self, number: int) -> dict:
        path = self.layout.bold_json(number)
        try:
            sidecar = json.loads(path.read_text())
            sidecar["RepetitionTime"], sidecar["MindEyeRT"]  # noqa: B018 - both must be there
        except (OSError, ValueError, KeyError) as err:
            raise DatasetError(f"cannot read the bold sidecar {path} ({err!r})") from None
        return sidecar

    @property
    def root(self) -> Path:
        """The design dataset's folder (mask, stimuli): what ``dataset_path`` names."""
        return self.design.root

    @property
    def runs(self) -> list[str]:
        """The recorded runs, in the order the session streamed them."""
        return list(self.numbers)

    def _number(self, run: str) -> int:
        if run not in self.numbers:
            raise DatasetError(f"run {run!r} is not in the record {self.record_root} {self.runs}")
        return self.numbers[run]

    def n_volumes(self, run: str) -> int:
        return int(nib.load(self.layout.bold_file(self._number(run))).shape[3])

    def load_run(self, run: str) -> np.ndarray:
        """The run's volumes as received: (X, Y, Z, T) float32, Fortran order."""
        path = self.layout.bold_file(self._number(run))
        try:
            data = np.asarray(nib.load(path).dataobj)
        except (OSError, EOFError, ValueError) as err:
            raise DatasetError(f"cannot read {path} ({err})") from None
        return data.astype(np.float32, order="F", copy=False)

    def load_run_stored(self, run: str) -> tuple[np.ndarray, float, float]:
        """:meth:`load_run` with the (slope, intercept) of a replay dataset's run: the record
        holds scanner units, so (1, 0)."""
        return self.load_run(run), 1.0, 0.0

    def missing_volumes(self, run: str) -> list[int]:
        """Volumes of the run that never came (zeros in the file; a rerun does not send them)."""
        return [int(i) for i in self.sidecars[run]["MindEyeRT"].get("missing_volumes", [])]

    def events(self, run: str) -> list[Event]:
        """The run's trials as the session used them, in the order it received them."""
        path = self.layout.events_tsv(self._number(run))
        if not path.is_file():
            return []
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        try:
            return [
                Event(
                    onset=float(r["onset"]),
                    duration=float(r["duration"]),
                    image_id=int(r["image_id"]),
                    repetition=int(r["repetition"]) if r["repetition"] not in ("", "n/a") else 0,
                    split=r["split"],
                    trial=int(r["trial"]),
                    trial_type=r["trial_type"],
                    before_volume=_optional_int(r.get("before_volume")),
                )
                for r in rows
            ]
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"bad row in {path} ({err!r})") from None

    # -- borrowed from the design dataset ------------------------------------------------------
    def image_ids(self, split: str) -> np.ndarray:
        return self.design.image_ids(split)

    def stimuli(self) -> np.ndarray:
        return self.design.stimuli()

    def roi_mask(self) -> np.ndarray:
        return self.design.roi_mask()

    def brain_mask(self) -> np.ndarray | None:
        return self.design.brain_mask()


def _optional_int(cell: str | None) -> int | None:
    """An integer cell that records before it (or rows without one) leave out."""
    return None if cell in (None, "", "n/a") else int(cell)
