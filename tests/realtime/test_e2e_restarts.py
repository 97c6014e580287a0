"""A stage process killed mid-run (kill -9) is restarted by the process launcher, and the
session ends with nothing lost (issue 11 item 4; the protocol is realtime.stages.link_acks)."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import pytest

from realtime.config import StreamConfig
from realtime.cpu_pinning import available_cpus, cpu_plan, describe
from realtime.pipeline import run_stream
from tests.conftest import _next_block

#: the recorder's TR lines at which the stage is killed (mid-way through the first run)
KILL_AFTER_TRS = 25


def _volumes(out):
    return sum(max(0, len(p.read_text().splitlines()) - 1) for p in (out / "runs").glob("*_tr.tsv"))


def _cpus(pid: int) -> set[int] | None:
    return os.sched_getaffinity(pid) if hasattr(os, "sched_getaffinity") else None


def _killer(out, stage, killed: list, after: int = KILL_AFTER_TRS, timeout: float = 120.0):
    """Kill ``stage``'s process with SIGKILL once the recorder has ``after`` TRs; then note the
    restarted process's CPUs once it has pinned itself (or after 30 s):
    ``killed == [(pid, volumes, cpus), (new pid, cpus)]``."""
    deadline = time.monotonic() + timeout
    pid_file = out / "logs" / f"{stage}.pid"
    while time.monotonic() < deadline:
        if (out / "runs").is_dir() and pid_file.exists() and _volumes(out) >= after:
            pid = int(pid_file.read_text())
            cpus = _cpus(pid)
            os.kill(pid, signal.SIGKILL)
            killed.append((pid, _volumes(out), cpus))
            break
        time.sleep(0.02)
    else:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            new = int(pid_file.read_text())
            if new != pid and _cpus(new) == cpus:
                killed.append((new, cpus))
                return
        except (OSError, ValueError):
            pass  # the file being rewritten, or the process gone again
        time.sleep(0.05)


def _session(tiny_dataset, tiny_model, tmp_path, base_port, stage, kill_after=None, **options):
    out = tmp_path / f"kill-{stage}"
    cfg = StreamConfig(
        replay=str(tiny_dataset.root),
        out=str(out),
        speed=40,
        headless=True,
        checkpoint=str(tiny_model),
        launcher="process",
        base_port=base_port,
        quiet=True,
        **{"recon": "none", **options},
    )
    killed: list = []
    after = kill_after or KILL_AFTER_TRS
    thread = threading.Thread(target=_killer, args=(out, stage, killed, after), daemon=True)
    if stage is not None:
        thread.start()
    lines: list[str] = []
    s = run_stream(cfg, log=lines.append)
    if stage is not None:
        thread.join(1)
    return s, out, killed, lines


def _check_nothing_lost(s, out, tiny_dataset, stage, killed, lines):
    assert killed, f"{stage} was never killed"
    n_volumes = sum(tiny_dataset.load_run(r).shape[-1] for r in tiny_dataset.runs)
    assert killed[0][1] < n_volumes  # mid-session
    n_events = sum(len(tiny_dataset.events(r)) for r in tiny_dataset.runs)
    assert s["complete"], lines
    assert s["volumes_lost"] == 0 and s["volumes_received"] == n_volumes, s
    assert s["trials"] == n_events, s
    rows = (out / "retrievals.tsv").read_text().strip().splitlines()[1:]
    keys = [tuple(r.split("\t")[1:3]) for r in rows]
    assert len(set(keys)) == len(keys) == n_events  # every trial once
    assert [r["stage"] for r in s["restarts"]] == [stage]
    assert s["restarts"][0]["exit"] == "signal SIGKILL"
    assert s["nothing_lost"] is True
    assert any(f"stage {stage!r} died (signal SIGKILL)" in line for line in lines), lines
    restarts = [json.loads(x) for x in (out / "restarts.jsonl").read_text().splitlines()]
    assert restarts[0]["old_pid"] == killed[0][0]


def test_preprocess_killed_mid_run_loses_nothing(tiny_dataset, tiny_model, tmp_path, base_port):
    s, out, killed, lines = _session(
        tiny_dataset, tiny_model, tmp_path, base_port, "preprocess", fuse_stages=False
    )
    _check_nothing_lost(s, out, tiny_dataset, "preprocess", killed, lines)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["source", "estimate", "decode"])
def test_a_stage_killed_mid_run_loses_nothing(tiny_dataset, tiny_model, tmp_path, base_port, stage):
    """Each stage its own process (--no-fuse-stages): the killed one alone is restarted."""
    s, out, killed, lines = _session(
        tiny_dataset, tiny_model, tmp_path, base_port, stage, fuse_stages=False
    )
    _check_nothing_lost(s, out, tiny_dataset, stage, killed, lines)


def _unlabelled(text: str) -> str:
    """``text`` without the BIDS session label (the time the session started)."""
    return re.sub(r"ses-[0-9A-Za-z]+", "ses-X", text)


def _record(out) -> dict:
    """A session's record less its timing columns: retrievals (less the latency), trials,
    each run's TR indices and raw values, and the BIDS events and scans tables."""
    record = {
        "retrievals": [
            r.split("\t")[:-1] for r in (out / "retrievals.tsv").read_text().splitlines()
        ],
        "events": (out / "events.tsv").read_text(),
    }
    for path in sorted((out / "runs").glob("*_tr.tsv")):
        record[path.name] = [r.split("\t")[0] for r in path.read_text().splitlines()]
    for path in sorted((out / "runs").glob("*_raw.f32")):
        record[path.name] = path.read_bytes()
    for path in sorted(out.glob("sub-*/ses-*/func/*_events.tsv")):
        record[_unlabelled(path.name)] = path.read_text()
    for path in sorted(out.glob("sub-*/ses-*/*_scans.tsv")):
        scans = _unlabelled(path.read_text())
        record[_unlabelled(path.name)] = [r.split("\t")[::2] for r in scans.splitlines()]
    return record


@pytest.mark.slow
def test_a_killed_fused_stage_loses_nothing(tiny_dataset, tiny_model, tmp_path, base_port):
    """The one process of the source, preprocess, estimate and decode (the default,
    --fuse-stages and --fuse-source), killed mid-run, is restarted: its source resumes after the
    last run released downstream, and the parts rebuild their state from the run's start."""
    s, out, killed, lines = _session(tiny_dataset, tiny_model, tmp_path, base_port, "fused")
    _check_nothing_lost(s, out, tiny_dataset, "fused", killed, lines)
    plan = cpu_plan(available_cpus())
    if plan is not None:  # stream --pin-cpus (the default): on the critical CPU, restarted too
        assert killed[0][2] == set(plan["critical"]), killed
        assert len(killed) == 2 and killed[1][1] == set(plan["critical"]), killed
        assert describe(plan) in lines


def test_a_killed_recorder_writes_the_record_of_an_unkilled_one(
    tiny_dataset, tiny_model, tmp_path, base_port
):
    """The restarted recorder rebuilds its state from its files and drops what they hold."""
    s, out, killed, lines = _session(tiny_dataset, tiny_model, tmp_path, base_port, "recorder")
    _check_nothing_lost(s, out, tiny_dataset, "recorder", killed, lines)
    ref, ref_out, _, _ = _session(tiny_dataset, tiny_model, tmp_path, _next_block(), None)
    assert ref["nothing_lost"] is True and ref["trials"] == s["trials"]
    assert _record(out) == _record(ref_out)


@pytest.mark.slow
def test_a_killed_reconstruct_stage_loses_no_image(
    tiny_dataset, tiny_model, tiny_recon, tmp_path, base_port
):
    s, out, killed, lines = _session(
        tiny_dataset,
        tiny_model,
        tmp_path,
        base_port,
        "reconstruct",
        recon="lowlevel",
        recon_models=str(tiny_recon),
    )
    _check_nothing_lost(s, out, tiny_dataset, "reconstruct", killed, lines)
    rows = (out / "recons.tsv").read_text().strip().splitlines()[1:]
    keys = [tuple(r.split("\t")[1:3]) for r in rows]
    assert len(set(keys)) == len(keys) == s["trials"] == s["reconstructions"]
    assert len(list((out / "trials").glob("*_recon.png"))) == s["trials"]
    numbers = json.loads((out / "logs" / "reconstruct_numbers.json").read_text())
    before = [sum(len(tiny_dataset.events(r)) for r in tiny_dataset.runs[:i]) for i in range(2)]
    assert numbers == dict(
        zip(tiny_dataset.runs, before, strict=True)
    )  # where each run's count began


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "options"), [("source", {"fuse_source": False}), ("fused", {})])
def test_a_killed_scanner_source_resumes_after_the_released_run(
    tiny_dataset, tiny_model, tmp_path, base_port, stage, options
):
    """Killed in the second run, the restarted scanner source reads the folder again and sends
    only from the run its downstream had not released: the record is an unkilled one's.  The
    source alone, or in the fused stage's process (the default) with the parts restarted too."""
    from realtime.scanner_sim import export_session

    folder = tmp_path / "export"
    folder.mkdir()
    pid_file = tmp_path / f"kill-{stage}" / "logs" / f"{stage}.pid"

    def export():  # the console exports while the session runs, at 10x the TR's pace
        while not pid_file.exists():
            time.sleep(0.05)
        export_session(tiny_dataset, folder, fmt="nifti", speed=10, log=lambda *a: None)

    writer = threading.Thread(target=export, daemon=True)
    writer.start()
    first = tiny_dataset.load_run(tiny_dataset.runs[0]).shape[-1]
    s, out, killed, lines = _session(
        tiny_dataset,
        tiny_model,
        tmp_path,
        base_port,
        stage,
        first + 25,
        scanner=str(folder),
        **options,
    )
    writer.join(60)
    _check_nothing_lost(s, out, tiny_dataset, stage, killed, lines)
    log = (out / "logs" / f"{stage}.log").read_text()
    assert f"sending after run {tiny_dataset.runs[0]!r}" in log, log[-2000:]
    ref, ref_out, _, _ = _session(
        tiny_dataset, tiny_model, tmp_path, _next_block(), None, scanner=str(folder)
    )
    assert _record(out) == _record(ref_out)
