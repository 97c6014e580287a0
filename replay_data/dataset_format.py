"""The replay dataset format: a folder that a replay source streams as if it were a scanner.

This module holds the format's constants and records; :mod:`replay_data.dataset_reader` opens
a dataset (:class:`~replay_data.dataset_reader.ReplayDataset`) and
:mod:`replay_data.dataset_writer` writes one (:class:`~replay_data.dataset_writer.DatasetWriter`).

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
    truth/run-01_motion.tsv      simulated moving subjects only: the head's true motion, one
                                 row per volume: trans_x trans_y trans_z (mm) rot_x rot_y
                                 rot_z (degrees) framewise_displacement (mm), in the
                                 convention of :mod:`fmri_compute.rigid`; for scoring a
                                 registration, never given to the pipeline

Every file is written under a temporary name and renamed into place when complete
(:mod:`rt_base.atomic`).  Onsets and
durations are seconds from the first volume's acquisition; ``repetition`` counts from 1;
``split`` is ``test``, ``train`` or ``filler``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmri_compute.rigid import PARAM_NAMES

__all__ = [
    "EVENT_COLUMNS",
    "FORMAT",
    "FORMAT_VERSION",
    "IMAGE_COLUMNS",
    "MOTION_COLUMNS",
    "SPLITS",
    "TRIAL_COLUMNS",
    "DatasetMeta",
    "Event",
    "default_affine",
]

FORMAT = "mindeye-rt-replay"
FORMAT_VERSION = 1
SPLITS = ("test", "train", "filler")
EVENT_COLUMNS = ("onset", "duration", "trial_type", "image_id", "repetition", "split")
IMAGE_COLUMNS = ("image_id", "split", "source")
TRIAL_COLUMNS = ("image_id", "run", "repetition")
MOTION_COLUMNS = (*PARAM_NAMES, "framewise_displacement")


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
    #: a session record's: the index of the first volume the pipeline received after this
    #: trial (a late marker's trial came after its onset's volume); None: sent by its onset
    before_volume: int | None = None


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


def default_affine(shape: Sequence[int], voxel_size: float) -> np.ndarray:
    """(4, 4) affine: isotropic ``voxel_size`` mm voxels, RAS, grid centred on the origin."""
    aff = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    aff[:3, 3] = -voxel_size * (np.asarray(shape[:3], float) - 1) / 2
    return aff
