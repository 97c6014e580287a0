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

With ``times``, a tab-separated log gets one line per file as soon as the file is closed
(``file``, ``series``, ``index``, ``closed`` in Unix seconds): the moment the file was complete,
which its mtime does not give (the mtime is stamped as the last write starts; on this machine
that write of a quarter file took 2.6 ms p50 after the writer's pause, the close itself 0.03 ms).
The log must live outside the export folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from realtime.pacing import Pacer
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

__all__ = ["export_session", "read_times"]

_TIMES_HEADER = "file\tseries\tindex\tclosed\n"


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
    times: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write the runs of ``dataset`` (a :class:`~replay_data.dataset_reader.ReplayDataset`)
    into the folder ``to`` at the TR's pace; returns the files written.

    ``skip_volumes`` holds ``(run, index)`` pairs never written (a lost volume, for tests);
    ``stop`` is a :class:`threading.Event` that ends the export early; ``times`` is the log of
    each file's close time (see the module's docstring).
    """
    from replay_data.scanner_files import FORMATS

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
    with _open_times(times, out) as times_log:
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
                scale = (slope, inter)
                path = _export(
                    dataset, run, data[..., k], out, fmt, series, k, scale, pieces, pause
                )
                if times_log is not None:
                    times_log.write(f"{path.name}\t{series}\t{k + 1}\t{time.time():.6f}\n")
                    times_log.flush()
                written.append(path)
            del data
            if r + 1 < len(runs) and speed:
                time.sleep(min(2 * tr / speed, 5.0))  # the console's pause between series
    return written


def _export(dataset, run, volume, out, fmt, series, k, scale, pieces, pause) -> Path:
    """Write volume ``k`` (0-based) of ``run`` as its console-named file in ``out``."""
    from replay_data.scanner_export import export_volume
    from replay_data.scanner_files import volume_file_name

    return export_volume(
        out / volume_file_name(fmt, series, k + 1),
        volume,
        dataset.affine,
        fmt=fmt,
        series=series,
        index=k + 1,
        tr=float(dataset.meta.tr),
        acquisition_time=_seconds_since_midnight(),
        slope=scale[0],
        intercept=scale[1],
        pieces=pieces,
        pause_s=pause,
        series_description=f"mindeye-rt scanner-sim {dataset.meta.name} {run}",
    )


def _open_times(times: str | Path | None, export: Path):
    """The close-time log, opened for appending (its header written when new); a context
    that gives None without ``times``."""
    if times is None:
        return contextlib.nullcontext()
    path = Path(times).expanduser()
    if path.resolve().parent == export.resolve():
        raise ConfigError(
            f"'times' must be outside the export folder {str(export)!r} (the watcher would take "
            f"it for a volume), got {str(times)!r}"
        )
    if not path.parent.is_dir():
        raise ConfigError(f"'times' must be in an existing folder, got {str(times)!r}")
    fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 (the caller's with closes it)
    if fh.tell() == 0:
        fh.write(_TIMES_HEADER)
    return fh


def read_times(path: str | Path) -> dict[str, float]:
    """``{file name: closed}`` of a close-time log written with ``times``."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {r["file"]: float(r["closed"]) for r in rows}
