"""The scanner's command-line options: ``stream --scanner DIR`` and its run and motion options,
and ``mindeye-rt scanner-sim``."""

from __future__ import annotations

from pathlib import Path


def add_stream_scanner_options(p) -> None:
    """``stream`` options of live input and head motion (argument group of ``p``)."""
    g = p.add_argument_group("scanner input and head motion")
    g.add_argument(
        "--scanner",
        help="stream the volumes the scanner exports into this folder (Siemens mosaic or XA "
        "enhanced DICOM, or NIfTI); --replay then names the design dataset (mask, model, "
        "trial events, run lengths)",
    )
    g.add_argument(
        "--scanner-poll",
        action="store_true",
        default=None,
        dest="scanner_poll",
        help="poll the folder instead of inotify (network shares, where inotify misses writes)",
    )
    g.add_argument("--run", help="acquire this one run of the design (default: all, in order)")
    g.add_argument(
        "--run-volumes",
        type=int,
        dest="run_volumes",
        help="volumes per run (default: the design run's length)",
    )
    g.add_argument(
        "--scanner-idle",
        type=float,
        dest="scanner_idle",
        help="end the session when no new series starts for this many seconds (default 60)",
    )
    g.add_argument(
        "--motion",
        help="head motion: none | estimate (report only) | correct (register and reslice) | "
        "auto (default: correct, except for a simulated subject that holds still)",
    )
    g.add_argument(
        "--motion-ref",
        dest="motion_ref",
        help="motion reference: first (the session's first volume, default), a volume number "
        "N of the first run, or a NIfTI file on the volumes' grid",
    )
    g.add_argument(
        "--fd-threshold",
        type=float,
        dest="fd_threshold",
        help="framewise displacement (mm) above which a volume is flagged (default 0.5)",
    )


def add_scanner_sim(sub) -> None:
    p = sub.add_parser(
        "scanner-sim",
        help="export a replay dataset's runs into a folder at the TR's pace, as a scanner does",
    )
    p.add_argument("--replay", default="subj01", help="dataset name or path (default subj01)")
    p.add_argument("--to", required=True, help="the folder to write into (the scanner's export)")
    p.add_argument(
        "--format",
        default="mosaic",
        choices=["mosaic", "enhanced", "nifti"],
        help="Siemens mosaic DICOM (default), XA enhanced multi-frame DICOM, or 3D NIfTI",
    )
    p.add_argument("--runs", nargs="+", help="export only these runs")
    p.add_argument(
        "--speed", type=float, default=1.0, help="1 real time (default), 0 as fast as possible"
    )
    p.add_argument("--max-volumes", type=int, dest="max_volumes", help="volumes per run")
    p.add_argument(
        "--first-series", type=int, default=5, dest="first_series", help="first series number"
    )
    p.add_argument("--pieces", type=int, default=4, help="each file is written in this many pieces")
    p.add_argument(
        "--times",
        help="append each file's close time to this TSV (outside the export folder), so a "
        "benchmark can time from the moment the console finished the file",
    )


def cmd_scanner_sim(args) -> int:
    from realtime.scanner_sim import export_session
    from replay_data.resolve import resolve_replay

    ds = resolve_replay(args.replay)
    files = export_session(
        ds,
        Path(args.to),
        fmt=args.format,
        runs=args.runs,
        speed=args.speed,
        max_volumes=args.max_volumes,
        first_series=args.first_series,
        pieces=args.pieces,
        times=args.times,
    )
    print(f"wrote {len(files)} {args.format} files to {args.to}")
    return 0
