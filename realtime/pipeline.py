"""``mindeye-rt stream``: prepare a session, launch and supervise the stages, summarize."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import zmq

from realtime.config import StreamConfig
from realtime.stages import build_stage
from rt_base.errors import ConfigError, StageError
from rt_wire import transport
from rt_wire.message import WireError
from rt_wire.telemetry import TelemetryHub

ORDER = (
    "recorder",
    "reconstruct",
    "decode",
    "estimate",
    "preprocess",
    "source",
)  # downstream first
READY_TIMEOUT_S = 300.0


@contextlib.contextmanager
def training_threads():
    """Train with one core fewer than the machine has (at least one).

    On a machine whose cores are all busy, a multi-threaded op waits for a scheduler slice
    whenever one of its threads is descheduled; on 2 shared cores that made demo training
    epochs 3-8x slower with 2 threads than with 1.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 2) - 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare(cfg: StreamConfig, log=print) -> dict:
    """Resolve the dataset and model, create the session folder; returns the stage specs."""
    from mindeye_models.demo import ensure_demo_model
    from replay_data.dataset_reader import ReplayDataset
    from replay_data.home import data_home
    from replay_data.resolve import resolve_replay

    path = Path(cfg.replay).expanduser()
    if path.is_dir():
        ds = ReplayDataset.open(path)
    else:
        ds = resolve_replay(cfg.replay, progress=not cfg.quiet, log=log)
    if cfg.checkpoint:
        checkpoint = Path(cfg.checkpoint).expanduser()
        if not checkpoint.is_file():
            raise ConfigError(
                f"'checkpoint' must be an existing MindEye checkpoint (.safetensors), got "
                f"{cfg.checkpoint!r}: train one with `mindeye-rt train`, or leave --checkpoint "
                "out to use the cached demo model"
            )
    else:
        with training_threads():
            checkpoint = ensure_demo_model(
                ds,
                models_dir=data_home() / "models",
                preset=cfg.preset,
                epochs=cfg.train_epochs,
                progress=not cfg.quiet,
                log=log,
            )
    recon_mode = cfg.recon_mode
    bundle = options = None
    if recon_mode != "none":
        from mindeye_models.recon import ReconOptions, ensure_recon_models

        options = ReconOptions(  # checks the device and options before any training
            mode=recon_mode,
            steps=cfg.recon_steps,
            strength=cfg.recon_strength,
            prior_steps=cfg.prior_steps,
            seed=cfg.recon_seed,
            device=cfg.reconstruct_device,
            dtype=cfg.recon_dtype,
        )
        _check_generator(cfg)
        if cfg.recon_models:
            from mindeye_models.recon import check_bundle_for

            bundle = check_bundle_for(cfg.recon_models, checkpoint)
        else:
            with training_threads():
                bundle = ensure_recon_models(
                    ds,
                    checkpoint,
                    models_dir=data_home() / "models",
                    vae=cfg.vae,
                    clip_weights=cfg.clip_weights,
                    cache_dir=data_home() / "cache",
                    progress=not cfg.quiet,
                    log=log,
                )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.out) if cfg.out else data_home() / "sessions" / f"{stamp}_{ds.meta.name}"
    out.mkdir(parents=True, exist_ok=True)
    runs = cfg.runs or list(ds.runs)
    events = [e for r in runs for e in ds.events(r)]
    bank_ids = sorted({int(e.image_id) for e in events if e.split == "test"})
    if not bank_ids:
        bank_ids = sorted({int(e.image_id) for e in events})
    addr = cfg.addresses()
    tele = addr["telemetry_in"]
    specs = {
        "source": {
            "dataset": str(ds.root),
            "runs": runs,
            "speed": cfg.speed,
            "max_volumes": cfg.max_volumes,
            "out_addr": addr["preprocess"],
            "control_addr": addr["control"],
        },
        "preprocess": {
            "mask": str(ds.root / "roi_mask.nii.gz"),
            "in_addr": addr["preprocess"],
            "out_addr": addr["estimate"],
        },
        "estimate": {
            "n_voxels": int(ds.meta.n_voxels),
            "decode_delay": cfg.decode_delay,
            "in_addr": addr["estimate"],
            "out_addr": addr["decode"],
        },
        "decode": {
            "checkpoint": str(checkpoint),
            "dataset": str(ds.root),
            "bank_ids": bank_ids,
            "device": cfg.device,
            "top_k": cfg.top_k,
            "clip_weights": cfg.clip_weights,
            "cache_dir": str(data_home() / "cache"),
            "emit_latents": bundle is not None,
            "in_addr": addr["decode"],
            "out_addr": addr["reconstruct"] if bundle is not None else addr["recorder"],
        },
        "recorder": {
            "out_dir": str(out),
            "print_trials": not cfg.quiet,
            "in_addr": addr["recorder"],
        },
    }
    if bundle is not None:
        specs["reconstruct"] = {
            "bundle": str(bundle),
            "generator": cfg.generator if recon_mode == "full" else None,
            **options.to_dict(),
            "in_addr": addr["reconstruct"],
            "out_addr": addr["recorder"],
        }
    for spec in specs.values():
        spec["telemetry_addr"] = tele
    session = {
        "config": cfg.to_dict(),
        "dataset": str(ds.root),
        "dataset_name": ds.meta.name,
        "simulated": bool(ds.meta.simulated),
        "checkpoint": str(checkpoint),
        "recon": recon_mode,
        "recon_bundle": str(bundle) if bundle is not None else None,
        "bank_ids": bank_ids,
        "cache_dir": str(data_home() / "cache"),
        "runs": runs,
        "addresses": addr,
        "started": time.time(),
    }
    (out / "config.json").write_text(json.dumps(session, indent=2))
    (out / "stages").mkdir(exist_ok=True)
    for name, spec in specs.items():
        (out / "stages" / f"{name}.json").write_text(json.dumps(spec, indent=2))
    return {"out": out, "specs": specs, "session": session, "dataset": ds}


def _check_generator(cfg: StreamConfig) -> None:
    """Refuse a missing or incomplete generator snapshot before anything is trained."""
    if cfg.recon_mode != "full" or cfg.generator == "tiny-random":
        return
    from mindeye_models.generator import check_snapshot

    check_snapshot(cfg.generator)


def run_stream(cfg: StreamConfig, log=print, open_console=None) -> dict:
    """Run a whole session and return its summary (also written to ``summary.json``).

    ``open_console(telemetry, control, dataset=)`` opens the operator console as a child
    process (``gui.cli.launch_console``, handed in by the ``mindeye-rt`` program, the floor
    above); without one, or with ``cfg.headless``, the session runs without a console.
    """
    from realtime.summary import summarize

    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log(
            f"WARNING: stages bind {cfg.host}, reachable from other machines; the links are not "
            "authenticated or encrypted in this version (use a trusted scanner network)"
        )
    prep = prepare(cfg, log=log)
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
        console = open_console(
            addr["telemetry"], addr["control"], dataset=str(prep["dataset"].root)
        )
        log("operator console opened (closing it does not stop the session; --headless for none)")
    out, session = prep["out"], prep["session"]
    if session["recon"] == "full" and cfg.generator == "tiny-random":
        log(
            "reconstruction uses the tiny-random generator: random weights, its images carry no "
            "content (give --generator DIR, a Stable unCLIP snapshot, for real images)"
        )
    if session["simulated"]:
        log(
            f"SIMULATED subject: replaying the built-in simulated {session['dataset_name']} "
            "(not real NSD data)"
        )
    log(f"session folder: {out}")
    hub = TelemetryHub(cfg.addresses()["telemetry_in"], cfg.addresses()["telemetry"]).start()
    t0 = time.time()
    try:
        if cfg.launcher == "thread":
            import torch

            torch.set_num_threads(1)  # as each stage process does (see _run_processes)
            _run_threads(prep["specs"])
        else:
            _run_processes(prep["specs"], out, cfg.addresses()["telemetry"], log)
    finally:
        hub.stop()
    wall = time.time() - t0
    if console is not None and console.poll() is None:
        log("the session ended; the console stays open until you close it")
    summary = summarize(out, wall_s=wall, log=log)
    return summary


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


def _run_processes(specs: dict, out: Path, telemetry: str, log, threads_per_stage: int = 1) -> None:
    procs: dict[str, subprocess.Popen] = {}
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ctx = zmq.Context.instance()
    sub = transport.display_subscriber(ctx, telemetry, ("status", "log"))

    def launch(name: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            "realtime.cli",
            "stage",
            name,
            "--spec",
            str(out / "stages" / f"{name}.json"),
        ]
        err = open(logs / f"{name}.log", "w")
        stage_env = dict(env)
        # One compute thread per stage process: five processes share the cores, and a
        # multi-threaded op whose second thread waits for a busy core stalls for a whole
        # scheduler slice (measured: GELU on 512 values 11 ms with 2 threads, 0.02 ms with 1).
        threads = str(threads_per_stage)
        stage_env.update(
            OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads
        )
        procs[name] = subprocess.Popen(cmd, stdout=None, stderr=err, env=stage_env)

    interrupted = False
    old = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_sigint)
    order = [n for n in ORDER if n in specs]
    try:
        for name in order[:-1]:
            launch(name)
        _wait_ready(sub, procs, set(order[:-1]), logs, lambda: interrupted)
        launch("source")
        while not interrupted:
            code = procs["recorder"].poll()
            if code is not None:
                if code != 0:
                    raise StageError(
                        f"recorder exited with code {code}; see {logs / 'recorder.log'}"
                    )
                break
            _check_alive(procs, logs)
            _drain_logs(sub, log)
            time.sleep(0.1)
        if interrupted:
            log("interrupted: stopping all stages")
    finally:
        signal.signal(signal.SIGINT, old)
        _stop_all(procs)
        sub.close()


def _wait_ready(sub, procs, names: set[str], logs: Path, interrupted) -> None:
    """Block until every stage has published a status (its sockets are up, its model loaded)."""
    seen: set[str] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while seen < names:
        if interrupted():
            return
        _check_alive(procs, logs)
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


def _check_alive(procs: dict, logs: Path) -> None:
    for name, proc in procs.items():
        code = proc.poll()
        if code is not None and code != 0:
            tail = (logs / f"{name}.log").read_text()[-2000:]
            raise StageError(f"stage {name!r} exited with code {code}:\n{tail}")


def _stop_all(procs: dict, timeout: float = 10.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
