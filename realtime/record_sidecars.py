"""The JSON and README files of a session record (:mod:`realtime.session_layout`): what makes
the folder a BIDS dataset, and the sidecars that describe its runs and tables.

Every file is written whole or not at all (:mod:`rt_base.atomic`).
"""

from __future__ import annotations

import importlib.metadata

from realtime.session_layout import (
    BIDS_VERSION,
    PIPELINE,
    PIPELINE_FILES,
    RUN_NAME_COLUMN,
    SessionLayout,
)
from rt_base import atomic

TASK_NAME = "MindEye image viewing"
README = """# A mindeye-rt session record

Real-time fMRI decoding session recorded by mindeye-rt as a BIDS raw dataset.

- `sub-*/ses-*/func/*_bold.nii.gz`: the volumes as the pipeline received them (float32, in the
  scanner's units), one file per run; `*_bold.json` names the pipeline's run, the source
  (replay or scanner) and any volume that never came (stored as zeros).
- `*_events.tsv`: the trials as the pipeline used them (onset in seconds from the run's first
  volume, image_id, repetition, split) and where among the volumes each trial came.
- `derivatives/mindeye-rt/`: the head motion estimated in real time.
- Not BIDS (see `.bidsignore`): the decoder's outputs (`retrievals.tsv`, `trials/`), the
  masked data (`runs/`), timing, gaps, the stimulus program's markers and the session config.

`mindeye-rt rerun THIS_FOLDER` replays the record through the same pipeline and checks that
every trial's retrieval is reproduced.
"""


def software_version() -> str:
    """The installed mindeye-rt version ("unknown" when it runs from a source tree)."""
    try:
        return importlib.metadata.version("mindeye-rt")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def generated_by() -> list[dict]:
    return [{"Name": PIPELINE, "Version": software_version()}]


def write_dataset_files(layout: SessionLayout, dataset_name: str | None = None) -> None:
    """The top-level files of the record (dataset description, participants, README, events
    columns, ``.bidsignore``) and the motion derivative's description."""
    name = f"mindeye-rt session of {dataset_name}" if dataset_name else "mindeye-rt session"
    atomic.write_json(
        layout.dataset_description,
        {
            "Name": name,
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "GeneratedBy": generated_by(),
        },
    )
    atomic.write_text(layout.participants_tsv, f"participant_id\nsub-{layout.labels.subject}\n")
    atomic.write_json(
        layout.participants_json,
        {"participant_id": {"Description": "the participant's label (mindeye-rt --subject)"}},
    )
    atomic.write_text(layout.readme, README)
    atomic.write_text(layout.bidsignore, "".join(f"/{p}\n" for p in PIPELINE_FILES))
    atomic.write_json(layout.events_json, EVENT_DESCRIPTIONS)
    layout.func_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(
        layout.scans_json,
        {
            "acq_time": {"Description": "when the run's first message reached the recorder"},
            RUN_NAME_COLUMN: {"Description": "the run's name in the pipeline (its messages)"},
        },
    )
    layout.derivative_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(
        layout.derivative_description,
        {
            "Name": "head motion estimated in real time by mindeye-rt",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": generated_by(),
        },
    )


EVENT_DESCRIPTIONS = {
    "onset": {"Description": "seconds from the run's first volume", "Units": "s"},
    "duration": {"Description": "how long the image was shown", "Units": "s"},
    "trial_type": {"Description": "always 'image': one image shown"},
    "image_id": {"Description": "row of the design dataset's stimuli/images.npy"},
    "repetition": {"Description": "how many times the image has been shown, counting this one"},
    "split": {"Description": "test, train, filler or unknown (an image not in the design)"},
    "trial": {"Description": "the trial's number in its run, as the pipeline numbered it"},
    "before_volume": {
        "Description": "index (from 0) of the first volume the pipeline received after this "
        "trial; past the volume of its onset when the stimulus program's marker came late"
    },
}

MOTION_DESCRIPTIONS = {
    "trans_x": {"Description": "translation along x", "Units": "mm"},
    "trans_y": {"Description": "translation along y", "Units": "mm"},
    "trans_z": {"Description": "translation along z", "Units": "mm"},
    "rot_x": {"Description": "rotation about x, at the field-of-view centre", "Units": "deg"},
    "rot_y": {"Description": "rotation about y, at the field-of-view centre", "Units": "deg"},
    "rot_z": {"Description": "rotation about z, at the field-of-view centre", "Units": "deg"},
    "framewise_displacement": {
        "Description": "framewise displacement from the previous volume (Power et al. 2012)",
        "Units": "mm",
    },
}


def write_motion_json(layout: SessionLayout, number: int) -> None:
    """The motion table's sidecar: its columns, and what the parameters are relative to."""
    atomic.write_json(
        layout.motion_json(number),
        {
            **MOTION_DESCRIPTIONS,
            "Description": "rigid head motion of each volume relative to the session's motion "
            "reference (config.json: config.motion_ref), in fmri_compute.rigid's convention; "
            "n/a for a volume that never reached the recorder",
        },
    )


def bold_sidecar(
    layout: SessionLayout, *, run: str, tr: float, source: str | None, missing, info: dict
) -> dict:
    """The ``_bold.json`` of a run: BIDS's required fields and the pipeline's (``MindEyeRT``)."""
    return {
        "RepetitionTime": float(tr),
        "TaskName": TASK_NAME,
        "MindEyeRT": {
            "run": run,
            "source": source,
            "software": f"{PIPELINE} {software_version()}",
            "missing_volumes": [int(i) for i in missing],
            **info,
        },
    }
