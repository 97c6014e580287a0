"""A scanner run: what the scanner source keeps of the run it is streaming, and the plan of a
new run (its name, TR, expected length and trial events) from the design dataset or the files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.stages.source_control import run_start_message
from rt_base.errors import ConfigError
from rt_wire.message import Message


@dataclass
class ScannerRun:
    """The run being streamed: its grid, its design, and the volumes waiting for their turn."""

    name: str
    series: int
    tr: float
    shape: tuple[int, ...]
    affine: np.ndarray
    expected: int | None
    events: list = field(default_factory=list)
    next_index: int = 0  # 0-based index of the next volume to send (file instance - 1)
    next_event: int = 0
    buffer: dict = field(default_factory=dict)  # index -> (volume, (file written, read) times)
    hole_since: float | None = None  # monotonic time a later volume came while next was missing
    last_volume: float = field(default_factory=time.monotonic)
    recording: object = None


@dataclass(frozen=True)
class RunPlan:
    """A new run's name, TR (s), expected volumes (None: unknown), trial events sorted by
    onset, and a warning for the operator (or "")."""

    name: str
    tr: float
    expected: int | None
    events: list
    warning: str = ""


def plan_run(
    vol,
    design,
    design_run: str | None,
    *,
    first: bool,
    run_name: str | None,
    run_volumes: int | None,
    max_volumes: int | None,
) -> RunPlan:
    """The plan of the run whose first volume is ``vol``: from ``design_run`` of the design
    dataset (its TR wins over the files'), else named ``run_name`` (the first run) or
    ``series-NNN`` with the files' TR."""
    tr, warning = vol.tr, ""
    events, expected = [], run_volumes
    if design is not None:
        name = design_run
        design_tr = float(design.meta.tr)
        if tr is not None and abs(tr - design_tr) > 1e-3:
            warning = f"the files' TR {tr:g} s is not the design's {design_tr:g} s"
        tr = design_tr
        expected = expected or design.n_volumes(name)
        events = list(design.events(name))
    else:
        name = run_name if (run_name and first) else f"series-{vol.series:03d}"
    if tr is None:
        raise ConfigError(f"file {Path(vol.path).name} has no TR and no design gives one")
    if max_volumes is not None:
        expected = min(expected or max_volumes, max_volumes)
    if expected is not None:
        events = [e for e in events if e.onset < expected * tr]
    return RunPlan(name, float(tr), expected, sorted(events, key=lambda e: e.onset), warning)


def session_grid(run: ScannerRun | None, design, vol) -> tuple[tuple[int, ...], np.ndarray]:
    """The grid (shape, affine) a volume must have: the current run's, else the design's, else
    its own (the first volume of a session without design)."""
    if run is not None:
        return run.shape, run.affine
    if design is not None:
        return tuple(design.meta.shape), design.affine
    return vol.shape, vol.affine


def grid_mismatch(vol, shape, affine) -> str:
    """Why ``vol`` is not on the session's grid (``shape``, ``affine``); "" when it is."""
    if vol.shape != tuple(shape):
        return f"its matrix {vol.shape} is not the session's grid {tuple(shape)}"
    if not np.allclose(vol.affine, affine, atol=1e-3):
        return f"its affine is not the session's grid {tuple(shape)}"
    return ""


def run_start_of(run: ScannerRun, vol, folder, design, **meta) -> Message:
    """The ``run_start`` message of ``run``, whose first volume is ``vol`` (from ``folder``)."""
    return run_start_message(
        run.name,
        tr=run.tr,
        n_volumes=run.expected,
        shape=run.shape,
        affine=run.affine,
        **meta,
        input="scanner",
        series=int(vol.series),
        folder=str(folder),
        format=vol.format,
        dataset=None if design is None else design.meta.name,
        dataset_path=None if design is None else str(design.root),
        simulated=False if design is None else bool(design.meta.simulated),
    )


def skip_released(messages: Iterator[Message], done: str, counts: dict) -> Iterator[Message]:
    """A restarted scanner source's messages less those of the runs its downstream released.

    The restarted source reads its folder again from the start and finds the same runs, in the
    same order, under the same names (series order; the design's runs in order, or
    ``series-NNN``), so every message up to the ``run_end`` of run ``done`` was handled
    downstream already and is not sent again; the ``end`` always is.  ``counts`` gets
    ``runs_skipped`` and ``volumes_skipped``.
    """
    skipping = True
    for msg in messages:
        if skipping and msg.kind != "end":
            if msg.kind == "volume":
                counts["volumes_skipped"] = counts.get("volumes_skipped", 0) + 1
            elif msg.kind == "run_end":
                counts["runs_skipped"] = counts.get("runs_skipped", 0) + 1
                skipping = msg.run != done
            continue
        yield msg


class EarlyVolumes:
    """Without a design, a run's grid is its first volume's.  Volumes of a series that has not
    started, read before its volume 1 (whose read may be retried, or whose file comes later),
    wait here for it, at most the gap wait (as a missing volume is waited for), so that a stray
    file of another matrix is never the one that sets the grid.  Nothing is sent meanwhile: the
    source sends volumes in order, so volume 2 waits for volume 1 anyway."""

    def __init__(self) -> None:
        self.held: list = []  # (volume, times)
        self.since: float | None = None

    def hold(self, vol, times) -> None:
        self.held.append((vol, times))
        self.since = self.since if self.since is not None else time.monotonic()

    def due(self, gap_wait_s: float | None) -> bool:
        """Whether the held volumes have waited long enough for a volume 1 (default 2 TR)."""
        if not self.held:
            return False
        tr = self.held[0][0].tr or 2.0
        return time.monotonic() - self.since >= (gap_wait_s or 2 * tr)

    def take(self) -> list:
        """The held volumes in (series, index) order; none are held after."""
        held, self.held, self.since = self.held, [], None
        return sorted(held, key=lambda v: (v[0].series, v[0].index))
