"""The one place that names every file of a session record.

A session folder is a BIDS raw dataset (https://bids-specification.readthedocs.io) that a lab
opens with standard tools, plus the pipeline's own files, which ``.bidsignore`` lists::

    dataset_description.json     Name, BIDSVersion, DatasetType raw, GeneratedBy mindeye-rt
    README.md  participants.tsv  participants.json  task-<task>_events.json  .bidsignore
    sub-<s>/ses-<e>/sub-<s>_ses-<e>_scans.tsv     one row per run: its bold file, start time,
                                                  and the pipeline's run name (mindeye_run)
    sub-<s>/ses-<e>/func/sub-<s>_ses-<e>_task-<t>_run-<n>_bold.nii.gz   the received volumes
        (``_bold.nii`` while the run streams; see :mod:`realtime.volume_record`)
    .../func/..._run-<n>_bold.json     RepetitionTime, TaskName, and "MindEyeRT": the run's
                                       name, source, software, volumes that never came
    .../func/..._run-<n>_events.tsv    the trials as the pipeline used them
    derivatives/mindeye-rt/            dataset_description.json (DatasetType derivative) and
        sub-<s>/ses-<e>/func/..._run-<n>_desc-motion_timeseries.tsv (+ .json): head motion
    -- the pipeline's files (not BIDS) --
    config.json  stages/  logs/  events.tsv (all runs' trials, as received)  retrievals.tsv
    recons.tsv  trials/  runs/RUN_raw.f32  runs/RUN_tr.tsv  timing.jsonl  gaps.jsonl
    recorder.json  summary.json  markers.tsv  markers.json  rerun_diff.tsv
    eval.json  eval.md  accuracy_vs_delay.tsv  accuracy_vs_delay.png  (``mindeye-rt eval``)

Run numbers
    BIDS numbers runs; the pipeline names them (``run-01``, ``series-005``).  A run named
    ``run-NN`` keeps number NN unless it is taken; any other run gets the number after the
    highest so far (:class:`RunNumbers`).  The source and the recorder number the runs they see
    start, in the same order, so they agree; ``scans.tsv`` and each ``_bold.json`` record the
    mapping for readers.
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from rt_base.errors import ConfigError

#: the BIDS specification version the record follows
BIDS_VERSION = "1.10.0"
#: the BIDS task label of a MindEye session (images shown, one per trial)
DEFAULT_TASK = "mindeye"
#: the derivative pipeline folder under ``derivatives/``
PIPELINE = "mindeye-rt"
#: the column of ``scans.tsv`` that holds the pipeline's run name
RUN_NAME_COLUMN = "mindeye_run"
#: columns of a record's ``_events.tsv`` (onset and duration first, as BIDS requires)
EVENT_COLUMNS = (
    "onset",
    "duration",
    "trial_type",
    "image_id",
    "repetition",
    "split",
    "trial",
    "before_volume",
)
#: columns of the motion derivative: fMRIPrep's confound names, degrees for the rotations
MOTION_COLUMNS = (
    "trans_x",
    "trans_y",
    "trans_z",
    "rot_x",
    "rot_y",
    "rot_z",
    "framewise_displacement",
)
#: the pipeline's own files and folders, which a BIDS validator must skip
PIPELINE_FILES = (
    "config.json",
    "stages/",
    "logs/",
    "events.tsv",
    "retrievals.tsv",
    "recons.tsv",
    "trials/",
    "runs/",
    "timing.jsonl",
    "gaps.jsonl",
    "recorder.json",
    "summary.json",
    "markers.tsv",
    "markers.json",
    "rerun_diff.tsv",
    "eval.json",  # mindeye-rt eval (realtime.eval_session, realtime.eval_delays)
    "eval.md",
    "accuracy_vs_delay.tsv",
    "accuracy_vs_delay.png",
)

_LABEL = re.compile(r"^[A-Za-z0-9]+$")
_RUN_NAME = re.compile(r"^run-0*(\d+)$")


def check_label(value, name: str) -> str:
    """A BIDS label (letters and digits only), or a :class:`ConfigError` that says so."""
    if not isinstance(value, str) or not _LABEL.match(value):
        raise ConfigError(
            f"'{name}' must be a BIDS label: letters and digits only (no '-', '_' or spaces), "
            f"got {value!r}; e.g. --{name} 01"
        )
    return value


def label_from(text: str, fallback: str = "01") -> str:
    """``text`` made a BIDS label (its letters and digits: ``subj-01_a`` -> ``subj01a``)."""
    label = re.sub(r"[^A-Za-z0-9]", "", str(text))
    return label or fallback


@dataclass(frozen=True)
class RecordLabels:
    """The BIDS entities shared by every file of a session: subject, session and task."""

    subject: str
    session: str
    task: str = DEFAULT_TASK

    def __post_init__(self) -> None:
        for key in ("subject", "session", "task"):
            check_label(getattr(self, key), key)

    @classmethod
    def from_dict(cls, data: dict) -> RecordLabels:
        """From a spec's or ``config.json``'s ``record_labels``; unknown keys are refused."""
        if not isinstance(data, dict):
            raise ConfigError(f"'record_labels' must be a JSON object, got {data!r}")
        unknown = sorted(set(data) - {"subject", "session", "task"})
        if unknown:
            raise ConfigError(
                f"'record_labels' takes subject, session and task, got unknown {unknown}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def prefix(self) -> str:
        """``sub-<s>_ses-<e>``: the start of every file name of the session."""
        return f"sub-{self.subject}_ses-{self.session}"


def session_labels(
    subject: str | None, session: str | None, dataset_subject: str, when: datetime | None = None
) -> RecordLabels:
    """The labels of a new record: ``subject`` and ``session`` when given (checked), else the
    design dataset's subject made a label and the start time (``20250314T0930``)."""
    when = when or datetime.now()
    return RecordLabels(
        subject=subject if subject is not None else label_from(dataset_subject),
        session=session if session is not None else when.strftime("%Y%m%dT%H%M"),
    )


class RunNumbers:
    """BIDS run numbers for the pipeline's run names, in the order runs start."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def number(self, name: str) -> int:
        """The number of run ``name`` (given on its first call, the same afterwards)."""
        if name not in self.numbers:
            taken = set(self.numbers.values())
            match = _RUN_NAME.match(name)
            wanted = int(match.group(1)) if match else 0
            if wanted < 1 or wanted in taken:
                wanted = max(taken, default=0) + 1
            self.numbers[name] = wanted
        return self.numbers[name]


def retrievals_path(root: str | Path) -> Path:
    """The decoder's outputs, one line per trial (written by the recorder)."""
    return Path(root) / "retrievals.tsv"


def rerun_diff_path(root: str | Path) -> Path:
    """A rerun's comparison with the record it reran, trial by trial."""
    return Path(root) / "rerun_diff.tsv"


def markers_tsv_path(root: str | Path) -> Path:
    """Where the stimulus program's markers are recorded as received (LSL timestamps)."""
    return Path(root) / "markers.tsv"


def markers_json_path(root: str | Path) -> Path:
    """Where the markers' per-run clocks and counts are recorded."""
    return Path(root) / "markers.json"


class SessionLayout:
    """The paths of one session record at ``root`` with ``labels``."""

    def __init__(self, root: str | Path, labels: RecordLabels) -> None:
        self.root = Path(root)
        self.labels = labels

    # -- the dataset's top level -------------------------------------------------------------
    @property
    def dataset_description(self) -> Path:
        return self.root / "dataset_description.json"

    @property
    def readme(self) -> Path:
        return self.root / "README.md"

    @property
    def participants_tsv(self) -> Path:
        return self.root / "participants.tsv"

    @property
    def participants_json(self) -> Path:
        return self.root / "participants.json"

    @property
    def events_json(self) -> Path:
        """The events' column descriptions, inherited by every run (BIDS inheritance)."""
        return self.root / f"task-{self.labels.task}_events.json"

    @property
    def bidsignore(self) -> Path:
        return self.root / ".bidsignore"

    # -- the session's folders and runs ------------------------------------------------------
    @property
    def session_dir(self) -> Path:
        return self.root / f"sub-{self.labels.subject}" / f"ses-{self.labels.session}"

    @property
    def func_dir(self) -> Path:
        return self.session_dir / "func"

    @property
    def scans_tsv(self) -> Path:
        return self.session_dir / f"{self.labels.prefix}_scans.tsv"

    @property
    def scans_json(self) -> Path:
        return self.session_dir / f"{self.labels.prefix}_scans.json"

    def run_stem(self, number: int) -> str:
        """``sub-<s>_ses-<e>_task-<t>_run-<n>``: the name every file of run ``number`` starts
        with."""
        return f"{self.labels.prefix}_task-{self.labels.task}_run-{int(number)}"

    def bold_nii(self, number: int) -> Path:
        """The growing, uncompressed bold file of a run that is streaming (or was cut off)."""
        return self.func_dir / f"{self.run_stem(number)}_bold.nii"

    def bold_gz(self, number: int) -> Path:
        """The compressed bold file, written whole when the run has ended."""
        return self.func_dir / f"{self.run_stem(number)}_bold.nii.gz"

    def bold_json(self, number: int) -> Path:
        return self.func_dir / f"{self.run_stem(number)}_bold.json"

    def events_tsv(self, number: int) -> Path:
        return self.func_dir / f"{self.run_stem(number)}_events.tsv"

    def bold_file(self, number: int) -> Path | None:
        """The run's bold file to read: the ``.nii.gz`` once complete, else the ``.nii`` (a
        run still streaming, or cut off by a crash); None when neither is there."""
        for path in (self.bold_gz(number), self.bold_nii(number)):
            if path.is_file():
                return path
        return None

    # -- the derivative: head motion ---------------------------------------------------------
    @property
    def derivative_dir(self) -> Path:
        return self.root / "derivatives" / PIPELINE

    @property
    def derivative_description(self) -> Path:
        return self.derivative_dir / "dataset_description.json"

    def motion_tsv(self, number: int) -> Path:
        func = self.derivative_dir / self.func_dir.relative_to(self.root)
        return func / f"{self.run_stem(number)}_desc-motion_timeseries.tsv"

    def motion_json(self, number: int) -> Path:
        return self.motion_tsv(number).with_suffix(".json")

    # -- the pipeline's files ----------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def all_events(self) -> Path:
        """Every run's trials in one table (run, trial, onset, ...), as the recorder got them."""
        return self.root / "events.tsv"

    @property
    def retrievals(self) -> Path:
        return retrievals_path(self.root)

    # -- reading a record --------------------------------------------------------------------
    def recorded_runs(self) -> dict[str, int]:
        """The pipeline's run names and their BIDS numbers, in session order, from
        ``scans.tsv`` (empty when no run has started)."""
        if not self.scans_tsv.is_file():
            return {}
        with open(self.scans_tsv, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        runs = {}
        for row in rows:
            match = re.search(r"_run-(\d+)_bold\.nii(\.gz)?$", row.get("filename") or "")
            if match and row.get(RUN_NAME_COLUMN):
                runs[row[RUN_NAME_COLUMN]] = int(match.group(1))
        return runs


def layout_of(root: str | Path, session: dict) -> SessionLayout | None:
    """The layout of the record at ``root`` whose ``config.json`` holds ``session``; None for a
    session recorded before records were BIDS (no ``record_labels``)."""
    labels = session.get("record_labels")
    return None if labels is None else SessionLayout(root, RecordLabels.from_dict(labels))
