"""``mindeye-rt stream``: prepare a session (:mod:`realtime.preparation`), launch and supervise
the stages, summarize."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import zmq

from realtime.cli_keys import key_arguments
from realtime.config import StreamConfig
from realtime.cpu_pinning import format_cpus, pinned_session, stage_cpus
from realtime.preparation import prepare
from realtime.stages import build_stage, fuse_specs
from realtime.supervisor import Supervisor
from rt_base.atomic import write_json
from rt_base.errors import StageError
from rt_base.names import FUSED_STAGE
from rt_wire import transport
from rt_wire.curve_auth import add_refusal_reporter, use_security
from rt_wire.message import WireError
from rt_wire.telemetry import TelemetryHub

ORDER = (
    "recorder",
    "reconstruct",
    FUSED_STAGE,
    "decode",
    "estimate",
    "preprocess",
    "source",
)  # downstream first
READY_TIMEOUT_S = 300.0
#: stages off the way from a volume to its top-k: at a lower CPU priority (``background_nice``)
#: so that on a few cores they wait for the source, preprocess, estimate and decode, not these
#: for them (each has seconds of slack: the recorder's warning is at 2 s behind, reconstruct's
#: queue is drained at the session's end)
BACKGROUND_STAGES = ("recorder", "reconstruct")


def run_stream(cfg: StreamConfig, log=print, open_console=None, adjust=None) -> dict:
    """Run a whole session and return its summary (also written to ``summary.json``).

    ``open_console(telemetry, control, dataset=, fd_threshold=)`` opens the operator console as a child
    process (``gui.cli.launch_console``, handed in by the ``mindeye-rt`` program, the floor
    above); without one, or with ``cfg.headless``, the session runs without a console.  With
    CURVE on (:attr:`StreamConfig.curve_required`) it also gets ``key_args``, the key options.
    ``adjust(prepared) -> prepared`` may change the prepared session before its stages start
    (``mindeye-rt rerun`` points the source at a record: :mod:`realtime.rerun`).
    """
    security = cfg.security()  # missing or unsafe keys fail here, before any work
    if security is not None:
        log(
            f"CURVE on every link: this machine's key {security.identity.name!r} "
            f"({security.identity.path}); a machine connecting to this one needs "
            f"{security.identity.name}.key and its own key in {security.key_dir / 'allowed'}"
        )
    report = lambda text: log(f"[auth] {text}")  # noqa: E731 - called on the auth thread
    remove = add_refusal_reporter(zmq.Context.instance(), report)
    try:
        with use_security(security):
            return _run_session(cfg, security, log, open_console, adjust)
    finally:
        remove()


def _run_session(cfg: StreamConfig, security, log, open_console, adjust=None) -> dict:
    """:func:`run_stream` once the process's CURVE security (or none) is set."""
    prep = prepare(cfg, log=log)
    if adjust is not None:
        prep = adjust(prep)
    # pinned while the stages run: a first session's model training and the summary's
    # offline decoding keep every CPU
    pin = cfg.pin_cpus and cfg.launcher == "process"
    with pinned_session(pin, log, source_apart=not cfg.source_in_fused) as plan:
        out, wall = _run_prepared(cfg, security, log, open_console, prep, plan)
    from realtime.summary import summarize

    return summarize(out, wall_s=wall, log=log)


def _run_prepared(
    cfg: StreamConfig, security, log, open_console, prep, cpu_plan
) -> tuple[Path, float]:
    """Open the console and run the stages, with this process on ``cpu_plan``'s shared CPUs
    (:mod:`realtime.cpu_pinning`; None: not pinned); the session folder and wall time."""
    from realtime.lsl_results import start_results_outlet

    console = None
    has_display = any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    if not cfg.headless and not has_display:
        log(
            "no display found (DISPLAY / WAYLAND_DISPLAY unset): running without the console; "
            "attach one from another machine with `mindeye-rt console --connect "
            f"{cfg.addresses()['telemetry']}` or pass --headless"
        )
    elif not cfg.headless and open_console is None:
        log("no console available to this entry point (run `mindeye-rt stream` for one)")
    elif not cfg.headless:
        addr = cfg.addresses()
        keys = {} if security is None else {"key_args": key_arguments(security)}
        console = open_console(
            addr["telemetry"],
            addr["control"],
            dataset=str(prep.dataset.root),
            fd_threshold=cfg.fd_threshold,
            **keys,
        )
        log("operator console opened (closing it does not stop the session; --headless for none)")
    out, session = prep.out, prep.session
    specs = prep.specs
    if cfg.fuse_stages:  # preprocess, estimate and decode in one process (realtime.stages.fused)
        # and the source too, by default (realtime.stages.fused_source)
        specs = fuse_specs(specs, with_source=cfg.source_in_fused)
        write_json(out / "stages" / f"{FUSED_STAGE}.json", specs[FUSED_STAGE])
    if session["recon"] == "full" and cfg.generator == "tiny-random":
        log(
            "reconstruction uses the tiny-random generator: random weights, its images carry no "
            "content (give --generator DIR, a Stable unCLIP snapshot, for real images)"
        )
    if cfg.scanner:
        log(
            f"watching {cfg.scanner} for the scanner's volumes (design, mask and model of "
            f"{session['dataset_name']}; head motion: {session['motion']})"
        )
    elif session["simulated"]:
        log(
            f"SIMULATED subject: replaying the built-in simulated {session['dataset_name']} "
            "(not real NSD data)"
        )
    log(f"session folder: {out}")
    hub = TelemetryHub(cfg.addresses()["telemetry_in"], cfg.addresses()["telemetry"]).start()
    results = start_results_outlet(cfg, out, log)  # LSL results for the stimulus program
    t0 = time.time()
    try:
        if cfg.launcher == "thread":
            import torch

            torch.set_num_threads(1)  # as each stage process does (see _run_processes)
            _run_threads(specs)
        else:
            _run_processes(
                specs,
                out,
                cfg.addresses()["telemetry"],
                log,
                security,
                max_restarts=cfg.max_restarts,
                background_nice=cfg.background_nice,
                cpu_plan=cpu_plan,
            )
    finally:
        if results is not None:
            results.stop()
        hub.stop()
    wall = time.time() - t0
    if console is not None and console.poll() is None:
        log("the session ended; the console stays open until you close it")
    return out, wall


def _run_threads(specs: dict) -> None:
    stages = {}
    try:
        for name in (n for n in ORDER if n in specs):
            stages[name] = build_stage(name, specs[name]).start()
        while not stages["recorder"].join(0.2):
            dead = [n for n, s in stages.items() if not s.running and not s.ended]
            if dead:
                raise StageError(f"stage(s) {dead} stopped before the session ended")
    finally:
        for stage in stages.values():
            if stage.running:
                stage.stop()


def _run_processes(
    specs: dict,
    out: Path,
    telemetry: str,
    log,
    security=None,
    threads_per_stage: int = 1,
    max_restarts: int = 3,
    background_nice: int = 5,
    cpu_plan: dict | None = None,
) -> None:
    """Run the stages as processes until the recorder has written the session's end; a stage
    process that dies is restarted (:class:`~realtime.supervisor.Supervisor`), and nothing is
    lost (acks on ``telemetry``, the hub's output: :mod:`realtime.stages.recovery`)."""
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    # One compute thread per stage process: five processes share the cores, and a
    # multi-threaded op whose second thread waits for a busy core stalls for a whole
    # scheduler slice (measured: GELU on 512 values 11 ms with 2 threads, 0.02 ms with 1).
    threads = str(threads_per_stage)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), threads),
    }
    ctx = zmq.Context.instance()
    sub = transport.display_subscriber(ctx, telemetry, ("status", "log"))

    def launch(name: str, incarnation: int) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "realtime.cli",
            "stage",
            name,
            "--spec",
            str(out / "stages" / f"{name}.json"),
            "--set",
            f"ack_addr={telemetry}",
            "--set",
            f"incarnation={incarnation}",
            *key_arguments(security),
        ]
        if name == "reconstruct":  # its trial numbers (the full mode's seeds) survive a restart
            cmd += ["--set", f"numbers_file={logs / 'reconstruct_numbers.json'}"]
        if name in BACKGROUND_STAGES and background_nice:
            cmd += ["--nice", str(background_nice)]
        cpus = stage_cpus(name, cpu_plan)
        if cpus is not None:
            cmd += ["--cpus", format_cpus(cpus)]
        err = open(logs / f"{name}.log", "w" if incarnation == 0 else "a")
        try:
            return subprocess.Popen(cmd, stdout=None, stderr=err, env=env)
        finally:
            err.close()  # the child has its own copy

    supervisor = Supervisor(launch, out, max_restarts=max_restarts, log=log)
    interrupted = False
    old = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_sigint)
    order = [n for n in ORDER if n in specs]
    try:
        for name in order[:-1]:
            supervisor.start(name)
        _wait_ready(sub, supervisor, set(order[:-1]), logs, lambda: interrupted)
        supervisor.start(order[-1])  # the source's process (the fused one with the source in it)
        while not interrupted:
            if supervisor.exited("recorder") == 0:
                break
            supervisor.check()
            _drain_logs(sub, log)
            time.sleep(0.1)
        if interrupted:
            log("interrupted: stopping all stages")
    finally:
        signal.signal(signal.SIGINT, old)
        supervisor.stop_all()
        sub.close()


def _wait_ready(sub, supervisor, names: set[str], logs: Path, interrupted) -> None:
    """Block until every stage has published a status (its sockets are up, its model loaded);
    a stage that dies meanwhile is restarted."""
    seen: set[str] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while seen < names:
        if interrupted():
            return
        supervisor.check()
        if time.monotonic() > deadline:
            raise StageError(
                f"stage(s) {sorted(names - seen)} did not become ready in "
                f"{READY_TIMEOUT_S:.0f} s; see {logs}"
            )
        if sub.poll(100):
            try:
                msg = transport.recv(sub)
            except WireError:
                continue
            if msg.kind == "status":
                seen.add(msg.meta.get("stage"))


def _drain_logs(sub, log) -> None:
    while sub.poll(0):
        try:
            msg = transport.recv(sub)
        except WireError:
            continue
        if msg.kind == "log" and msg.meta.get("level") in ("error", "warning"):
            log(f"[{msg.meta.get('stage')}] {msg.meta.get('level')}: {msg.meta.get('text')}")
