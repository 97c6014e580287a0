"""The streaming application's commands (stream, simulate, train, model-info, stage, summarize,
scanner-sim, prepare-nsd).

Each command imports what it runs when it runs (torch, the models, the datasets), so that
``mindeye-rt --help`` and a stage process that does not need them start light.  The program
``mindeye-rt`` (:mod:`mindeye_rt.cli`) adds the console's and viewer's commands.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path

from realtime.cli_eval import add_eval, cmd_eval
from realtime.cli_keys import add_key_options, add_keys_parser, cmd_keys
from realtime.cli_lsl import add_stim_sim, add_stream_lsl_options, cmd_stim_sim
from realtime.cli_models import (
    add_model_info,
    add_simulate,
    add_train,
    cmd_model_info,
    cmd_simulate,
    cmd_train,
)
from realtime.cli_nsd import add_prepare_nsd, cmd_prepare_nsd
from realtime.cli_rerun import add_rerun, cmd_rerun
from realtime.cli_scanner import add_scanner_sim, add_stream_scanner_options, cmd_scanner_sim
from realtime.config import StreamConfig, load_config
from realtime.finetune_options import add_stream_finetune_options
from realtime.finetune_step import add_finetune_step, cmd_finetune_step
from rt_base.checks import check_address, check_number, check_path
from rt_base.errors import ConfigError, MindEyeRTError


def _add_stream(sub) -> None:
    """The ``stream`` subcommand: session options, then decoding, run and reconstruction."""
    p = sub.add_parser("stream", help="replay a session through the pipeline and decode it")
    p.add_argument(
        "--replay",
        default=None,
        help="dataset name in the data home, or a path "
        "(default subj01: the built-in simulated subject unless real NSD subj01 is prepared)",
    )
    p.add_argument("--config", help="TOML file with these options (command-line options win)")
    p.add_argument("--out", help="session folder (default: DATA_HOME/sessions/TIME_NAME)")
    p.add_argument(
        "--speed", type=float, help="replay speed: 1 real time (default), 0 as fast as possible"
    )
    p.add_argument("--headless", action="store_true", default=None, help="no GUI")
    _add_stream_model_options(p)
    _add_stream_run_options(p)
    add_stream_scanner_options(p)
    add_stream_lsl_options(p)
    add_stream_finetune_options(p)
    _add_stream_recon_options(p.add_argument_group("reconstruction"))


def _add_stream_model_options(p) -> None:
    """``stream`` options of decoding: when, how many candidates, with which model."""
    p.add_argument(
        "--decode-delay",
        type=float,
        dest="decode_delay",
        help="seconds after trial onset at which a trial is decoded (default 8)",
    )
    p.add_argument(
        "--top-k", type=int, dest="top_k", help="candidates reported per trial (default 5)"
    )
    p.add_argument(
        "--decode-precision",
        dest="decode_precision",
        help="forward-pass arithmetic: auto (default: int8 on the CPU, fp32 on a GPU), fp32, or "
        "int8 (CPU only: a quarter of the weight bytes, 2.7x faster; see "
        "benchmarks/bench_decode.py)",
    )
    p.add_argument(
        "--preset", help="model preset trained when no checkpoint is given (default demo)"
    )
    p.add_argument("--checkpoint", help="a MindEye checkpoint (.safetensors) to decode with")
    p.add_argument(
        "--clip-weights",
        dest="clip_weights",
        help="local open_clip ViT-L/14 weights for a checkpoint trained on real CLIP",
    )


def _add_stream_run_options(p) -> None:
    """``stream`` options of the run: device, runs and volumes, ports, launcher, verbosity."""
    p.add_argument("--device", help="torch device for decoding (default cpu)")
    p.add_argument("--runs", nargs="+", help="replay only these runs")
    p.add_argument(
        "--max-volumes", type=int, dest="max_volumes", help="stop each run after N volumes"
    )
    p.add_argument("--host", help="interface the stages bind (default 127.0.0.1, loopback only)")
    p.add_argument(
        "--base-port", type=int, dest="base_port", help="first of 8 TCP ports (default 5550)"
    )
    p.add_argument(
        "--keys",
        metavar="DIR",
        help="this machine's CURVE key directory (`mindeye-rt keys DIR`): every link "
        "authenticated and encrypted; needed when --host is not loopback",
    )
    p.add_argument(
        "--key-name", dest="key_name", help="which key pair of --keys (default: its only one)"
    )
    p.add_argument(
        "--curve", action="store_true", default=None, help="CURVE even on loopback (needs --keys)"
    )
    p.add_argument(
        "--launcher", choices=["process", "thread"], help="stages as processes (default) or threads"
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        dest="max_restarts",
        help="times the process launcher restarts each stage that dies (default 3; 0: none)",
    )
    p.add_argument(
        "--background-nice",
        type=int,
        dest="background_nice",
        help="how much lower the recorder and reconstruct processes run than the stages on the "
        "way to a trial's top-k (os.nice increment 0-19; default 5; 0: the same)",
    )
    p.add_argument(
        "--fuse-stages",
        action=argparse.BooleanOptionalAction,
        dest="fuse_stages",
        help="preprocess, estimate and decode in one process, without passages between them "
        "(default); --no-fuse-stages: each its own process",
    )
    p.add_argument(
        "--fuse-source",
        action=argparse.BooleanOptionalAction,
        dest="fuse_source",
        help="the source in the fused stage's process too: a volume is read and decoded in one "
        "thread (default with --fuse-stages); --no-fuse-source: the source its own process",
    )
    p.add_argument(
        "--pin-cpus",
        action=argparse.BooleanOptionalAction,
        dest="pin_cpus",
        help="the stages on the way to a trial's top-k on a CPU of their own, every other "
        "process of the session off it (default, where the platform can and 2+ CPUs are "
        "allowed); --no-pin-cpus: the system places every process",
    )
    p.add_argument(
        "--train-epochs",
        type=int,
        dest="train_epochs",
        help="epochs if the demo model must be trained",
    )
    p.add_argument(
        "--quiet", action="store_true", default=None, help="no per-trial lines or progress bars"
    )
    p.add_argument(
        "--subject",
        help="the record's BIDS subject label, letters and digits (default: the dataset's "
        "subject, e.g. subj01)",
    )
    p.add_argument(
        "--session",
        help="the record's BIDS session label, letters and digits (default: the date and time, "
        "e.g. 20250314T0930)",
    )


def _add_stream_recon_options(g) -> None:
    """``stream`` options of the reconstruction argument group ``g``."""
    g.add_argument(
        "--recon",
        help="none | lowlevel (blurry image from the low-level head) | full (prior + generator, "
        "img2img from the blurry image) | auto (default: full with --generator, else lowlevel)",
    )
    g.add_argument(
        "--recon-models",
        dest="recon_models",
        help="reconstruction models (.safetensors) from `mindeye-rt train` for --checkpoint "
        "(default: trained on first use and cached)",
    )
    g.add_argument(
        "--generator",
        help="full mode's generator: a local Stable unCLIP snapshot directory, or tiny-random "
        "(random weights; exercises the path, images carry no content)",
    )
    g.add_argument(
        "--vae",
        help="a local diffusers AutoencoderKL directory for the low-level head (default: a small "
        "autoencoder trained on the stimulus images)",
    )
    g.add_argument(
        "--recon-steps", type=int, dest="recon_steps", help="generator sampler steps (default 4)"
    )
    g.add_argument(
        "--recon-strength",
        type=float,
        dest="recon_strength",
        help="img2img strength from the blurry image, in (0, 1] (default 0.85, as MindEye)",
    )
    g.add_argument(
        "--prior-steps", type=int, dest="prior_steps", help="diffusion prior steps (default 10)"
    )
    g.add_argument(
        "--recon-seed", type=int, dest="recon_seed", help="base seed; trial n uses seed + n"
    )
    g.add_argument("--recon-device", dest="recon_device", help="torch device (default: --device)")
    g.add_argument(
        "--recon-dtype",
        dest="recon_dtype",
        help="generator precision: float32 (default), float16 or bfloat16 (CUDA only)",
    )


def cmd_stream(args) -> int:
    import dataclasses

    from realtime.pipeline import run_stream

    # every StreamConfig field is a `stream` option of the same name (see _add_stream)
    keys = [f.name for f in dataclasses.fields(StreamConfig)]
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    cfg = load_config(args.config, **given) if args.config else StreamConfig(**given)
    summary = run_stream(cfg, open_console=getattr(args, "open_console", None))
    return 0 if summary.get("complete") else 1


def _add_stage(sub) -> None:
    p = sub.add_parser("stage", help="run one pipeline stage alone (e.g. on another machine)")
    from realtime.stages import STAGES

    p.add_argument("name", choices=list(STAGES))
    p.add_argument("--spec", help="JSON file with the stage's addresses and options")
    p.add_argument("--in", dest="in_addr", help="endpoint this stage binds for its input")
    p.add_argument("--out", dest="out_addr", help="endpoint of the next stage's input")
    p.add_argument("--telemetry", dest="telemetry_addr", help="telemetry hub input endpoint")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a stage option (JSON value or string), e.g. --set speed=0",
    )
    p.add_argument("--keep-running", action="store_true", help="do not exit at the session's end")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run this many steps lower in CPU priority (os.nice increment 0-19; default 0)",
    )
    p.add_argument(
        "--cpus",
        help="run only on these CPUs, e.g. 1 or 0,2 (Linux; default: wherever the system likes)",
    )
    add_key_options(p)


def cmd_stage(args) -> int:
    import zmq

    from realtime.cli_keys import report_refusals_to_telemetry, security_from_args
    from realtime.stages import build_stage
    from rt_wire.curve_auth import use_security

    nice = check_number(args.nice, "nice", minimum=0, maximum=19, integer=True)
    if args.cpus is not None:
        from realtime.cpu_pinning import parse_cpus, pin

        pin(parse_cpus(args.cpus))  # before the stage's threads start: they inherit it
    if nice:
        os.nice(nice)  # before the stage's threads start: they inherit it
    spec: dict = json.loads(Path(args.spec).read_text()) if args.spec else {}
    for key in ("in_addr", "out_addr", "telemetry_addr"):
        if getattr(args, key):
            spec[key] = check_address(getattr(args, key), key.replace("_addr", ""))
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"'--set' takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            spec[key] = json.loads(value)
        except json.JSONDecodeError:
            spec[key] = value
    if args.keep_running:
        spec["exit_on_end"] = False
    addresses = [v for k, v in spec.items() if k.endswith("_addr") and isinstance(v, str)]
    security = security_from_args(args, addresses)
    with use_security(security):  # every socket of the stage: CURVE or none
        if security is not None and spec.get("telemetry_addr"):
            report_refusals_to_telemetry(
                zmq.Context.instance(), spec["telemetry_addr"], args.name, security
            )
        return _run_stage(build_stage(args.name, spec))


def _run_stage(stage) -> int:
    """Start ``stage`` and wait until it ends, or until SIGTERM / SIGINT stop it."""
    stopping = []
    handler = lambda signum, frame: stopping.append(signum)  # noqa: E731
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    # built and warmed up: the start-up objects (torch, the model, ~200,000 of them) leave the
    # garbage collector's scans; a full collection over them took 50-100 ms, a stall that would
    # land on whichever volume or trial was in flight
    gc.collect()
    gc.freeze()
    stage.start()
    while not stage.join(0.2):
        if stopping:
            stage.stop()
            break
    return 1 if stage.crashed else 0  # a crashed stage exits non-zero: the launcher restarts it


def _add_summarize(sub) -> None:
    p = sub.add_parser("summarize", help="recompute a session folder's summary.json")
    p.add_argument("session", help="session folder")
    p.add_argument(
        "--recon-metrics-size",
        type=int,
        default=None,
        dest="recon_metrics_size",
        help="side (px) images are resized to for PixCorr/SSIM/2-way (default 64; the paper "
        "uses 425, which takes minutes and GBs for a few hundred trials)",
    )


def cmd_summarize(args) -> int:
    from realtime.summary import RECON_METRICS_SIZE, summarize

    size = args.recon_metrics_size
    if size is not None:
        size = check_number(size, "recon_metrics_size", minimum=8, maximum=4096, integer=True)
    session = check_path(args.session, "session", kind="dir")
    check_path(
        session / "config.json",
        "session",
        kind="file",
        remedy=f"{args.session!r} is not a session folder (no config.json)",
    )
    summarize(session, recon_metrics_size=size or RECON_METRICS_SIZE)
    return 0


COMMANDS = {
    "stream": (_add_stream, cmd_stream),
    "simulate": (add_simulate, cmd_simulate),
    "train": (add_train, cmd_train),
    "model-info": (add_model_info, cmd_model_info),
    "stage": (_add_stage, cmd_stage),
    "summarize": (_add_summarize, cmd_summarize),
    "eval": (add_eval, cmd_eval),
    "rerun": (add_rerun, cmd_rerun),
    "scanner-sim": (add_scanner_sim, cmd_scanner_sim),
    "stim-sim": (add_stim_sim, cmd_stim_sim),
    "keys": (add_keys_parser, cmd_keys),
    "prepare-nsd": (add_prepare_nsd, cmd_prepare_nsd),
    "finetune-step": (add_finetune_step, cmd_finetune_step),
}


def run_commands(commands: dict, argv: list[str] | None = None, *, configure=None) -> int:
    """Parse ``argv`` into one of ``commands`` (name -> (add_parser, run)) and run it.

    ``configure(subparsers)`` may set defaults on the parsers once all are added (the program's
    entry point uses it to hand ``stream`` the console launcher from the floor above).
    Diagnosed errors print one line and exit 2; Ctrl-C exits 130.
    """
    parser = argparse.ArgumentParser(
        prog="mindeye-rt",
        description="Real-time fMRI decoding with MindEye: replay or stream volumes through a "
        "ZeroMQ pipeline and retrieve the viewed image.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in commands.values():
        add(sub)
    if configure is not None:
        configure(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        return commands[args.command][1](args)
    except MindEyeRTError as err:
        print(f"mindeye-rt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mindeye-rt: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """The streaming application's commands alone (``python -m realtime.cli``: how the launcher
    starts a stage process); ``mindeye-rt`` adds the console and viewer (:mod:`mindeye_rt.cli`)."""
    return run_commands(COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
