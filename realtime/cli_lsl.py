"""The LSL command-line options: ``stream --markers lsl[:NAME]`` and ``--lsl-results``, and
``mindeye-rt stim-sim`` (a stand-in stimulus program)."""

from __future__ import annotations

from realtime.lsl_results import DEFAULT_PREFIX


def add_stream_lsl_options(p) -> None:
    """``stream`` options of the stimulus program's LSL link (argument group of ``p``)."""
    g = p.add_argument_group("stimulus program (LSL)")
    g.add_argument(
        "--markers",
        metavar="lsl[:NAME]",
        help="trial events from the stimulus program's LSL stream of type Markers (named NAME) "
        "instead of events.tsv; schema in docs/interfaces.md (Markers); a replay starts each "
        "run at the program's run_start marker",
    )
    g.add_argument(
        "--lsl-results",
        nargs="?",
        const=DEFAULT_PREFIX,
        dest="lsl_results",
        metavar="PREFIX",
        help=f"send each trial's top-k on LSL streams PREFIX-topk and PREFIX-results (default "
        f"prefix {DEFAULT_PREFIX}; on with --markers)",
    )


def add_stim_sim(sub) -> None:
    p = sub.add_parser(
        "stim-sim",
        help="a stand-in stimulus program: send a replay's trials as LSL markers at their "
        "times and print the results that come back",
    )
    p.add_argument("--replay", default="subj01", help="dataset name or path (default subj01)")
    p.add_argument("--runs", nargs="+", help="only these runs (as the session's --runs)")
    p.add_argument(
        "--speed", type=float, default=1.0, help="1 real time (default), 0 as fast as possible"
    )
    p.add_argument("--max-volumes", type=int, dest="max_volumes", help="volumes per run")
    p.add_argument(
        "--name",
        default=None,
        help="the marker stream's name (default mindeye-rt-stim-sim; the session's "
        "--markers lsl:NAME)",
    )
    p.add_argument(
        "--results",
        default=DEFAULT_PREFIX,
        help=f"the session's result stream prefix (default {DEFAULT_PREFIX}); 'none': read none",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for the session to connect, and for the last results (default 120)",
    )
    p.add_argument(
        "--scanner",
        metavar="DIR",
        help="beside scanner-sim and `stream --scanner DIR`: start each run at its series' first "
        "volume in DIR, and send a trigger marker per volume",
    )
    p.add_argument(
        "--no-triggers",
        dest="triggers",
        action="store_false",
        help="with --scanner: no trigger markers (the session times trials by the volumes' files)",
    )


def cmd_stim_sim(args) -> int:
    from realtime.stim_sim import DEFAULT_MARKERS_NAME, StimulusSimulator
    from replay_data.resolve import resolve_replay

    ds = resolve_replay(args.replay)
    sim = StimulusSimulator(
        ds,
        runs=args.runs,
        speed=args.speed,
        max_volumes=args.max_volumes,
        name=args.name or DEFAULT_MARKERS_NAME,
        results=None if args.results == "none" else args.results,
        wait_s=args.wait,
        scanner=args.scanner,
        triggers=args.triggers,
    )
    results = sim.run()
    got = {(r.get("run"), r.get("trial")) for r in results if r.get("type") == "retrieval"}
    print(f"sent {len(sim.sent)} trials; results came back for {len(got)}")
    return 0 if args.results == "none" or len(got) >= len(sim.sent) else 1
