"""A session's ``summary.json``: counts, real-time vs offline retrieval, latency per stage."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

STAGES = ("source", "preprocess", "estimate", "decode", "recorder")


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, float)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
        "n": int(a.size),
    }


def read_retrievals(out: Path) -> list[dict]:
    path = out / "retrievals.tsv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def read_events(out: Path) -> list[dict]:
    path = out / "events.tsv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def load_run_data(
    out: Path, run: str, n_voxels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The recorded masked data of a run: ``(raw (T, V) float32, tr indices (T,))``."""
    raw = np.fromfile(out / "runs" / f"{run}_raw.f32", dtype=np.float32)
    with open(out / "runs" / f"{run}_tr.tsv", newline="") as fh:
        index = np.array([int(r["index"]) for r in csv.DictReader(fh, delimiter="\t")], int)
    if index.size == 0:
        return raw.reshape(0, n_voxels or 0), index
    n = raw.size // index.size if n_voxels is None else n_voxels
    rows = raw.size // n
    return raw[: rows * n].reshape(rows, n), index[:rows]


def latency_figures(out: Path) -> tuple[dict, dict | None, float | None]:
    """Per-stage latency (done - received, ms), end-to-end latency and the real-time factor."""
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    end_to_end: list[float] = []
    first = last = None
    path = out / "timing.jsonl"
    if not path.exists():
        return {}, None, None
    with open(path) as fh:
        for line in fh:
            rec = json.loads(line)
            t = rec["t"]

            def span(a: str, b: str, stage: str, t: dict = t) -> None:
                if a in t and b in t:
                    per_stage[stage].append(1e3 * (t[b] - t[a]))

            if rec["kind"] == "tr":
                span("source.acquired", "source.done", "source")
                span("preprocess.received", "preprocess.done", "preprocess")
                if "source.acquired" in t:
                    acq = t["source.acquired"]
                    first = acq if first is None else min(first, acq)
                    last = max(last or 0.0, t.get("recorder.received", acq))
            elif rec["kind"] == "retrieval":
                # estimate: the TR that made the trial due (add the volume + solve the GLM)
                span("estimate.received", "estimate.done", "estimate")
                span("decode.received", "decode.done", "decode")
                span("decode.done", "recorder.received", "recorder")
                if "decode.done" in t and "source.acquired" in t:
                    end_to_end.append(1e3 * (t["decode.done"] - t["source.acquired"]))
    stages = {s: _percentiles(v) for s, v in per_stage.items() if v}
    return stages, _percentiles(end_to_end), (last - first) if first is not None else None


def offline_retrieval(out: Path, session: dict, retrievals: list[dict], tr: float) -> dict:
    """Re-estimate every decoded trial from whole runs after the session and decode it with the
    same model and bank: the offline reference for the real-time figures."""
    import torch

    from realtime.glm import lss_betas
    from realtime.models import load_decoder
    from realtime.normalize import zscore_run

    model, bank = load_decoder(
        session["checkpoint"],
        session["dataset"],
        session["bank_ids"],
        device=session["config"].get("device", "cpu"),
        clip_weights=session["config"].get("clip_weights"),
        cache_dir=session.get("cache_dir"),
    )
    decoded = {(r["run"], int(r["trial"])) for r in retrievals}
    events = read_events(out)
    ranks = []
    for run in sorted({e["run"] for e in events}):
        run_events = [e for e in events if e["run"] == run]
        raw, index = load_run_data(out, run)
        if raw.shape[0] < 3:
            continue
        z = zscore_run(raw)
        onsets = np.array([float(e["onset"]) for e in run_events])
        durations = np.array([float(e["duration"]) for e in run_events])
        betas = lss_betas(z, onsets, durations, tr, frame_times=index * tr)
        with torch.inference_mode():
            _, emb = model(torch.from_numpy(np.asarray(betas, np.float32)))
        ids, _ = bank.retrieve(emb.float(), k=len(bank))
        ids = np.asarray(ids)
        for row, e in enumerate(run_events):
            if (run, int(e["trial"])) not in decoded:
                continue
            hit = np.flatnonzero(ids[row] == int(e["image_id"]))
            if hit.size:
                ranks.append(int(hit[0]) + 1)
    ranks_a = np.asarray(ranks)
    return {
        "trials": int(ranks_a.size),
        "top1": float(np.mean(ranks_a == 1)) if ranks_a.size else None,
        "top5": float(np.mean(ranks_a <= 5)) if ranks_a.size else None,
    }


def _tr_from_config(session: dict) -> float:
    from replay_data.dataset import ReplayDataset

    return float(ReplayDataset.open(session["dataset"]).meta.tr)


def summarize(
    out: str | Path, *, wall_s: float | None = None, log=print, offline: bool = True
) -> dict:
    """Compute and write ``summary.json`` from what the recorder left in ``out``."""
    out = Path(out)
    session = json.loads((out / "config.json").read_text())
    recorder_path = out / "recorder.json"
    recorder = json.loads(recorder_path.read_text()) if recorder_path.exists() else None
    retrievals = read_retrievals(out)
    scored = [r for r in retrievals if r["rank"] != ""]
    ranks = np.array([int(r["rank"]) for r in scored])
    ways = sorted({int(r["ways"]) for r in scored}) if scored else []
    stages, e2e, data_span = latency_figures(out)
    if recorder is not None:
        received, expected = recorder["volumes_received"], recorder["volumes_expected"]
    else:  # interrupted: count what reached the disk
        received = sum(
            load_run_data(out, p.name[:-7])[1].size for p in (out / "runs").glob("*_tr.tsv")
        )
        expected = None
    tr = _tr_from_config(session)
    n_vol_time = received * tr if received else 0.0
    summary = {
        "simulated": session["simulated"],
        "dataset": session["dataset_name"],
        "complete": recorder is not None,
        "trials": len(retrievals),
        "trials_scored": int(ranks.size),
        "retrieval_ways": ways[0] if len(ways) == 1 else ways,
        "chance_top1": round(1.0 / ways[0], 4) if len(ways) == 1 else None,
        "retrieval_top1": float(np.mean(ranks == 1)) if ranks.size else None,
        "retrieval_top5": float(np.mean(ranks <= 5)) if ranks.size else None,
        "offline_top1": None,
        "offline_top5": None,
        "volumes_received": int(received),
        "volumes_lost": (int(expected) - int(received)) if expected is not None else None,
        "gaps": recorder["gaps"] if recorder else [],
        "latency_ms": stages,
        "end_to_end_ms": e2e,
        "realtime_factor": round(n_vol_time / data_span, 3) if data_span else None,
        "decode_delay_s": session["config"]["decode_delay"],
        "speed": session["config"]["speed"],
        "wall_s": round(wall_s, 2) if wall_s is not None else None,
        "checkpoint": session["checkpoint"],
        "written": time.time(),
    }
    if offline and scored:
        off = offline_retrieval(out, session, retrievals, tr)
        summary["offline_top1"], summary["offline_top5"] = off["top1"], off["top5"]
        summary["offline_trials"] = off["trials"]
        if off["top1"]:
            summary["realtime_vs_offline"] = round(summary["retrieval_top1"] / off["top1"], 3)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")
    _print_summary(summary, out, log)
    return summary


def _print_summary(s: dict, out: Path, log) -> None:
    sim = "SIMULATED subject" if s["simulated"] else "real data"
    log(f"--- session summary ({sim}: {s['dataset']}) ---")
    log(
        f"trials decoded {s['trials']} ({s['trials_scored']} scored, {s['retrieval_ways']}-way); "
        f"volumes received {s['volumes_received']}, lost {s['volumes_lost']}"
    )
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    log(
        f"top-1 real-time {fmt(s['retrieval_top1'])}, offline {fmt(s['offline_top1'])}, "
        f"chance {fmt(s['chance_top1'])}"
    )
    for stage, p in (s["latency_ms"] or {}).items():
        log(
            f"latency {stage:<10s} p50 {p['p50']:8.1f} ms  p95 {p['p95']:8.1f} ms  max {p['max']:8.1f} ms"
        )
    if s["end_to_end_ms"]:
        e = s["end_to_end_ms"]
        log(f"volume acquired -> retrieval: p50 {e['p50']:.1f} ms, p95 {e['p95']:.1f} ms")
    log(f"real-time factor {s['realtime_factor']}; summary: {out / 'summary.json'}")
