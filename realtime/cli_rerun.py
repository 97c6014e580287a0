"""``mindeye-rt rerun SESSION_DIR [--out NEW_DIR] [options to try]``: stream a recorded session
again and compare every trial's top-k with the record's (:mod:`realtime.rerun`).

Exit code: 0 when every trial's top-k is the record's, or when options that change the
retrievals were given (trying other options: the differences are reported, not failed); 1 when
they differ without such an option, or the rerun did not complete.
"""

from __future__ import annotations

#: how many differing trials are printed (all are in rerun_diff.tsv)
PRINTED_DIFFERENCES = 20


def add_rerun(sub) -> None:
    p = sub.add_parser(
        "rerun",
        help="stream a recorded session again with its models and options and check that "
        "every trial's retrieval is reproduced",
    )
    p.add_argument("session", help="the session folder (a BIDS record written by stream)")
    p.add_argument(
        "--out", help="the rerun's session folder (default: DATA_HOME/sessions/TIME_rerun_NAME)"
    )
    p.add_argument(
        "--speed", type=float, help="0 as fast as the pipeline takes it (default), 1 real time"
    )
    p.add_argument("--launcher", choices=["process", "thread"], help="(default: the record's)")
    p.add_argument("--base-port", type=int, dest="base_port", help="first of 8 TCP ports")
    p.add_argument("--quiet", action="store_true", default=None, help="no per-trial lines")
    p.add_argument("--recon", help="reconstruction mode (default: the record's; 'none' saves time)")
    g = p.add_argument_group(
        "options to try (each replaces the record's; differences are then expected)"
    )
    g.add_argument("--decode-delay", type=float, dest="decode_delay", help="seconds after onset")
    g.add_argument("--top-k", type=int, dest="top_k", help="candidates reported per trial")
    g.add_argument("--decode-precision", dest="decode_precision", help="fp32 or int8")
    g.add_argument("--checkpoint", help="another MindEye checkpoint (.safetensors)")
    g.add_argument("--device", help="torch device for decoding and motion correction")
    g.add_argument("--motion", help="auto | none | estimate | correct")
    g.add_argument("--motion-ref", dest="motion_ref", help="'first', a volume number or a NIfTI")
    g.add_argument(
        "--fd-threshold", type=float, dest="fd_threshold", help="framewise displacement (mm)"
    )


def cmd_rerun(args) -> int:
    from realtime.rerun import PIPELINE_OPTIONS, RUN_OPTIONS, rerun_session

    changes = {k: getattr(args, k) for k in (*PIPELINE_OPTIONS, *RUN_OPTIONS)}
    summary, comparison, plan = rerun_session(args.session, args.out, **changes)
    n, same = comparison["trials"], comparison["same"]
    out = plan.config.out
    for row in comparison["rows"][:PRINTED_DIFFERENCES]:
        print(
            f"  {row['status']:<13s} {row['run']} trial {row['trial']}: image {row['image_id']}"
            f"  top-k {row['top_ids_original']} -> {row['top_ids_rerun']}"
        )
    if len(comparison["rows"]) > PRINTED_DIFFERENCES:
        print(f"  ... {len(comparison['rows']) - PRINTED_DIFFERENCES} more in rerun_diff.tsv")
    print(
        f"rerun: {same} of {n} trials with the record's top-k; {n - same} differ "
        f"({comparison['differs']} other top-k, {comparison['original_only']} only in the "
        f"record, {comparison['rerun_only']} only in the rerun); {out}/rerun_diff.tsv"
    )
    if not summary.get("complete"):
        print("rerun: the rerun session did not complete")
        return 1
    if same == n:
        return 0
    if plan.on_purpose:
        print(f"(expected: options changed on purpose {plan.on_purpose})")
        return 0
    return 1
