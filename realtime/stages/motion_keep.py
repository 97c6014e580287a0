"""What the preprocess stage keeps on disk so that a restarted process corrects motion exactly
as the one that died would have.

A restarted preprocess (alone, or a part of the fused process) handles its first unreleased run
again from the run's start (:mod:`realtime.stages.recovery`).  Two things its motion correction
needs did not come from that run: the session's reference volume, and the parameters the run's
first fit starts from (the last fit of the run before).  Both are kept in ``folder``:

``reference.npy``
    the reference volume, float32 on the volumes' grid, written once it is set;
``run_starts.json``
    ``{run: [6 parameters] | null}``: what each run's first fit started from, written at the
    run's start (once per run, a few hundred bytes).

Files are written atomically; a restarted stage reads them back only when its incarnation is
above 0, so a session folder used again never hands a new session an old reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rt_base.atomic import write_json, write_with

REFERENCE = "reference.npy"
RUN_STARTS = "run_starts.json"


class KeptMotionState:
    """The motion reference and the runs' starting parameters, kept in ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.starts: dict[str, list[float] | None] = {}

    def save_reference(self, volume: np.ndarray) -> None:
        reference = np.asarray(volume, np.float32)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # (np.save on a name would add ".npy" to it)
                np.save(fh, reference)

        self.folder.mkdir(parents=True, exist_ok=True)
        write_with(self.folder / REFERENCE, write)

    def reference(self) -> np.ndarray | None:
        """The kept reference volume (None: none was kept)."""
        path = self.folder / REFERENCE
        return np.load(path, allow_pickle=False) if path.is_file() else None

    def save_start(self, run: str, params: np.ndarray | None) -> None:
        """Keep what ``run``'s first fit starts from."""
        self.starts[run] = None if params is None else [float(x) for x in params]
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / RUN_STARTS, self.starts)

    def load_starts(self) -> None:
        """Read back the kept starts (a restarted stage, before its first run)."""
        path = self.folder / RUN_STARTS
        if path.is_file():
            self.starts = {str(k): v for k, v in json.loads(path.read_text()).items()}

    def start_of(self, run: str) -> tuple[bool, np.ndarray | None]:
        """``(kept, params)``: whether ``run``'s start was kept, and what it was."""
        if run not in self.starts:
            return False, None
        params = self.starts[run]
        return True, None if params is None else np.asarray(params, float)
