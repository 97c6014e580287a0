"""A toy replay dataset written with DatasetWriter, for the reader and writer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from replay_data.dataset_format import Event
from replay_data.dataset_writer import DatasetWriter

SHAPE = (6, 7, 5)


def toy_events(n: int, split: str = "test") -> list[Event]:
    return [Event(3.0 + 4.0 * i, 3.0, i % 3, 1 + i // 3, split, i) for i in range(n)]


def write_toy(
    path: Path, *, finalize: bool = True, seed: int = 0, motion: np.ndarray | None = None
) -> dict:
    """Write the toy dataset (two 12-volume runs); ``motion`` (12, 6) is run-01's true motion."""
    rng = np.random.default_rng(seed)
    roi = np.zeros(SHAPE, bool)
    roi[1:4, 2:5, 1:3] = True
    brain = np.zeros(SHAPE, bool)
    brain[1:5, 1:6, 1:4] = True
    runs = [rng.normal(1000, 30, (*SHAPE, 12)).astype(np.float32) for _ in range(2)]
    images = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    responses = rng.standard_normal((4, int(roi.sum()))).astype(np.float32)
    w = DatasetWriter(
        path,
        name="toy",
        subject="s1",
        tr=1.6,
        voxel_size=1.8,
        shape=SHAPE,
        simulated=True,
        params={"seed": seed},
    )
    w.write_masks(roi, brain)
    w.write_stimuli(images, ["test", "test", "test", "train", "filler"], ["a", "b", "c", "d", "e"])
    for data in runs:
        w.write_run(data, toy_events(4))
    if motion is not None:
        w.write_true_motion("run-01", motion)
    w.write_training(responses, [3, 3, 3, 3], [1, 1, 2, 2], [1, 2, 3, 1])
    if finalize:
        w.finalize()
    return dict(roi=roi, brain=brain, runs=runs, images=images, responses=responses)
