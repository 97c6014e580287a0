"""``mindeye-rt prepare-nsd``: a local Natural Scenes Dataset copy as a replay dataset.

The conversion itself is :func:`replay_data.nsd_convert.prepare_nsd`; this module holds its
command-line options.  By default the dataset goes to ``DATA_HOME/datasets/subjAA``, where
``mindeye-rt stream --replay subjAA`` and ``mindeye-rt train --replay subjAA`` find it (a prepared
subject wins over the built-in simulated one of the same name).
"""

from __future__ import annotations

import re
from pathlib import Path

from rt_base.errors import ConfigError


def add_prepare_nsd(sub) -> None:
    from replay_data.nsd_convert import DEFAULT_IMAGE_SIZE
    from replay_data.nsd_layout import BETAS_VERSIONS, DEFAULT_BETAS

    p = sub.add_parser(
        "prepare-nsd",
        help="convert a local NSD copy (time series, design, betas, stimuli) into a replay dataset",
    )
    p.add_argument(
        "--nsd-root",
        required=True,
        dest="nsd_root",
        help="the NSD copy's root (holding nsddata/, nsddata_timeseries/, nsddata_betas/, "
        "nsddata_stimuli/), in NSD's distributed layout",
    )
    p.add_argument("--subject", required=True, help="NSD subject number, 1-8")
    p.add_argument(
        "--sessions",
        nargs="+",
        help="sessions to convert, e.g. '1 2 5-8' (default: every session with design files)",
    )
    p.add_argument("--name", help="dataset name (default subjAA, e.g. subj01)")
    p.add_argument("--out", help="dataset folder (default DATA_HOME/datasets/NAME)")
    p.add_argument(
        "--image-size",
        dest="image_size",
        default=str(DEFAULT_IMAGE_SIZE),
        help=f"stimulus side in pixels, 16-425 (default {DEFAULT_IMAGE_SIZE})",
    )
    p.add_argument(
        "--betas",
        default=DEFAULT_BETAS,
        help=f"single-trial betas version: {', '.join(BETAS_VERSIONS)} (default {DEFAULT_BETAS}, "
        "as MindEye)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a dataset (or an interrupted conversion with other options) in the folder",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_prepare_nsd(args) -> int:
    from replay_data.home import datasets_dir
    from replay_data.nsd_convert import prepare_nsd
    from replay_data.nsd_layout import parse_sessions
    from rt_base.checks import check_number

    subject = int(check_number(args.subject, "subject", minimum=1, maximum=8, integer=True))
    sessions = parse_sessions(args.sessions)
    name = args.name or f"subj{subject:02d}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(
            f"'name' must be a dataset name of letters, digits, '_', '.' and '-', got {name!r}"
        )
    out = Path(args.out).expanduser() if args.out else datasets_dir() / name
    ds = prepare_nsd(
        args.nsd_root,
        subject,
        out,
        sessions=sessions,
        betas=args.betas,
        image_size=args.image_size,
        force=args.force,
        progress=not args.quiet,
    )
    print(f"replay dataset {ds.meta.name!r} ready: {ds.root}")
    print(f"stream it with: mindeye-rt stream --replay {ds.root if args.out else name}")
    return 0
