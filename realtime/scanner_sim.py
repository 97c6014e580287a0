"""``mindeye-rt scanner-sim``: a replay dataset's runs exported into a folder as a scanner
console does, for tests, demos and a lab's dry run.

Each run becomes one series (numbered from ``first_series``), each volume one file with a
console-style name (``001_000013_000001.dcm``) written by
:func:`replay_data.scanner_export.export_volume` in pieces, so that a watcher sees half-written
files.  Volume ``k`` is written at ``k * TR`` after
the run's start (times ``1 / speed``; ``speed`` 0 writes as fast as it can), and its acquisition
time in the file is the wall clock's time of day at that moment.  The stored integers are the
dataset's own (its NIfTI scale factors are kept), so a stream of the files decodes exactly the
data a replay of the dataset decodes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from realtime.pacing import Pacer
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

__all__ = ["export_session"]


def _scale(dataset, run: str) -> tuple[float, float]:
    """The run file's NIfTI scale factors (slope, intercept): its stored integers."""
    import nibabel as nib

    img = nib.load(dataset.root / "func" / f"{run}_bold.nii.gz")
    slope, inter = img.dataobj.slope, img.dataobj.inter
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope, inter


def _seconds_since_midnight() -> float:
    now = dt.datetime.now()
    return now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6


def export_session(
    dataset,
    to: str | Path,
    *,
    fmt: str = "mosaic",
    runs: list[str] | None = None,
    speed: float = 1.0,
    max_volumes: int | None = None,
    first_series: int = 5,
    pieces: int = 4,
    skip_volumes: set[tuple[str, int]] | frozenset = frozenset(),
    stop=None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write the runs of ``dataset`` (a :class:`~replay_data.dataset_reader.ReplayDataset`)
    into the folder ``to`` at the TR's pace; returns the files written.

    ``skip_volumes`` holds ``(run, index)`` pairs never written (a lost volume, for tests);
    ``stop`` is a :class:`threading.Event` that ends the export early.
    """
    from replay_data.scanner_export import export_volume
    from replay_data.scanner_files import FORMATS, volume_file_name

    check_choice(fmt, "format", FORMATS)
    speed = check_number(speed, "speed", minimum=0.0)
    pieces = check_number(pieces, "pieces", minimum=1, maximum=1000, integer=True)
    first_series = check_number(first_series, "first_series", minimum=1, integer=True)
    if max_volumes is not None:
        max_volumes = check_number(max_volumes, "max_volumes", minimum=1, integer=True)
    known = list(dataset.runs)
    runs = list(runs) if runs else known
    bad = [r for r in runs if r not in known]
    if bad:
        raise ConfigError(f"'runs' must name runs of the dataset {known}, got {bad}")
    out = Path(to).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tr = float(dataset.meta.tr)
    pacer = Pacer(speed, stop)
    written: list[Path] = []
    # a piece every quarter of the write budget: half-written files live for a while
    pause = 0.0 if speed == 0 else min(0.05, tr / speed / (4 * pieces))
    for r, run in enumerate(runs):
        series = first_series + r
        data = dataset.load_run(run)
        n = data.shape[-1] if max_volumes is None else min(data.shape[-1], max_volumes)
        slope, inter = _scale(dataset, run)
        log(f"{run}: series {series}, {n} volumes -> {out} ({fmt})")
        pacer.restart()
        for k in range(n):
            if not pacer.wait_until(k * tr):
                return written
            if (run, k) in skip_volumes:
                continue
            path = out / volume_file_name(fmt, series, k + 1)
            export_volume(
                path,
                data[..., k],
                dataset.affine,
                fmt=fmt,
                series=series,
                index=k + 1,
                tr=tr,
                acquisition_time=_seconds_since_midnight(),
                slope=slope,
                intercept=inter,
                pieces=pieces,
                pause_s=pause,
                series_description=f"mindeye-rt scanner-sim {dataset.meta.name} {run}",
            )
            written.append(path)
        del data
        if r + 1 < len(runs) and speed:
            time.sleep(min(2 * tr / speed, 5.0))  # the console's pause between series
    return written
