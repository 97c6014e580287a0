"""A session's ``summary.json``: counts, real-time vs offline retrieval, latency per stage, and
(when a reconstruct stage ran) reconstruction latency and low-level metrics against the seen
images."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from fmri_compute.normalize import zscore_run
from fmri_compute.offline_glm import trial_betas
from mindeye_models.ranks import top_k_accuracy, true_ranks
from realtime.summary_finetune import finetune_figures, finetune_lines
from realtime.summary_markers import marker_figures, marker_lines
from realtime.summary_motion import motion_figures
from realtime.summary_quality import drop_censored, quality_figures, quality_lines
from realtime.summary_recon_metrics import RECON_METRICS_SIZE, reconstruction_metrics
from realtime.summary_restarts import restart_figures, restart_lines
from rt_base.atomic import write_json
from rt_base.names import END_TO_END, RECORDED_SPANS


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


def read_recons(out: Path) -> list[dict]:
    """The rows of ``recons.tsv`` (empty when the session had no reconstruct stage)."""
    path = out / "recons.tsv"
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
    per_stage: dict[str, list[float]] = {s: [] for s in RECORDED_SPANS}
    end_to_end: list[float] = []
    first = last = None
    path = out / "timing.jsonl"
    if not path.exists():
        return {}, None, None
    with open(path) as fh:
        for line in fh:
            rec = json.loads(line)
            t = rec["t"]
            for stage, (kind, a, b) in RECORDED_SPANS.items():
                if rec["kind"] == kind and a in t and b in t:
                    per_stage[stage].append(1e3 * (t[b] - t[a]))
            kind, a, b = END_TO_END
            if rec["kind"] == kind and a in t and b in t:
                end_to_end.append(1e3 * (t[b] - t[a]))
            if rec["kind"] == "tr" and "source.acquired" in t:
                acq = t["source.acquired"]
                first = acq if first is None else min(first, acq)
                last = max(last or 0.0, t.get("recorder.received", acq))
    stages = {s: _percentiles(v) for s, v in per_stage.items() if v}
    return stages, _percentiles(end_to_end), (last - first) if first is not None else None


def offline_retrieval(out: Path, session: dict, retrievals: list[dict], tr: float) -> dict:
    """Re-estimate every decoded trial from whole runs after the session and decode it with the
    same model and bank: the offline reference for the real-time figures."""
    import torch

    from realtime.models import load_decoder

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
        raw, index = drop_censored(out, run, *load_run_data(out, run))
        if raw.shape[0] < 3:
            continue
        z = zscore_run(raw)
        onsets = np.array([float(e["onset"]) for e in run_events])
        durations = np.array([float(e["duration"]) for e in run_events])
        betas = trial_betas(z, onsets, durations, tr, frame_times=index * tr)
        with torch.inference_mode():
            _, emb = model(torch.from_numpy(np.asarray(betas, np.float32)))
        ids, _ = bank.retrieve(emb.float(), k=len(bank))
        rows = [i for i, e in enumerate(run_events) if (run, int(e["trial"])) in decoded]
        truth = [int(run_events[i]["image_id"]) for i in rows]
        ranks.extend(true_ranks(np.asarray(ids)[rows], truth).tolist())
    scored = np.asarray([r for r in ranks if r > 0], int)
    return {
        "trials": int(scored.size),
        "top1": top_k_accuracy(scored, 1),
        "top5": top_k_accuracy(scored, 5),
    }


def _floats(rows: list[dict], column: str) -> list[float]:
    return [float(r[column]) for r in rows if r.get(column) not in (None, "")]


def _tr_from_config(session: dict) -> float:
    from replay_data.dataset_reader import ReplayDataset

    return float(ReplayDataset.open(session["dataset"]).meta.tr)


def summarize(
    out: str | Path,
    *,
    wall_s: float | None = None,
    log=print,
    offline: bool = True,
    recon_metrics: bool = True,
    recon_metrics_size: int = RECON_METRICS_SIZE,
) -> dict:
    """Compute and write ``summary.json`` from what the recorder left in ``out``.

    Parameters
    ----------
    out : the session folder.
    wall_s : the session's wall-clock duration, recorded as is.
    log : where the printed summary goes.
    offline : also re-estimate and decode every trial offline (the reference figures).
    recon_metrics : score the reconstructions against the seen images (when there are >= 2).
    recon_metrics_size : side (px) images are resized to for those metrics (425 in the paper,
        slow on a small CPU; see :data:`RECON_METRICS_SIZE`).
    """
    out = Path(out)
    session = json.loads((out / "config.json").read_text())
    retrievals, recons = read_retrievals(out), read_recons(out)
    summary = {
        "simulated": session["simulated"],
        "dataset": session["dataset_name"],
        **_retrieval_figures(retrievals),
        **_volume_figures(out, session),
        **_recon_figures(recons),
        "input": session.get("input", "replay"),
        "motion": motion_figures(out, session),
        "quality": quality_figures(
            out,
            session.get("runs", []),
            read_events(out),
            retrievals,
            session["config"]["decode_delay"],
            _tr_from_config(session),
        ),
        "markers": marker_figures(out),
        "finetune": finetune_figures(out, retrievals),
        "decode_delay_s": session["config"]["decode_delay"],
        "speed": session["config"]["speed"],
        "wall_s": round(wall_s, 2) if wall_s is not None else None,
        "checkpoint": session["checkpoint"],
        "written": time.time(),
    }
    summary.update(
        restart_figures(out, summary["volumes_lost"], summary["trials"], len(read_events(out)))
    )
    if offline and summary["trials_scored"]:
        off = offline_retrieval(out, session, retrievals, _tr_from_config(session))
        summary["offline_top1"], summary["offline_top5"] = off["top1"], off["top5"]
        summary["offline_trials"] = off["trials"]
        if off["top1"]:
            summary["realtime_vs_offline"] = round(summary["retrieval_top1"] / off["top1"], 3)
    if recon_metrics and len(recons) >= 2:
        summary["recon_metrics"] = reconstruction_metrics(
            out, session, recons, size=recon_metrics_size
        )
    write_json(out / "summary.json", summary)
    _print_summary(summary, out, log)
    return summary


def _retrieval_figures(retrievals: list[dict]) -> dict:
    """Trials, scored trials, ways and real-time top-1/top-5 (offline ones filled in later)."""
    scored = [r for r in retrievals if r["rank"] != ""]
    ranks = np.array([int(r["rank"]) for r in scored])
    ways = sorted({int(r["ways"]) for r in scored}) if scored else []
    return {
        "trials": len(retrievals),
        "trials_scored": int(ranks.size),
        "retrieval_ways": ways[0] if len(ways) == 1 else ways,
        "chance_top1": round(1.0 / ways[0], 4) if len(ways) == 1 else None,
        "retrieval_top1": top_k_accuracy(ranks, 1),
        "retrieval_top5": top_k_accuracy(ranks, 5),
        "offline_top1": None,
        "offline_top5": None,
    }


def _volume_figures(out: Path, session: dict) -> dict:
    """Completeness, volumes received and lost, gaps, stage latencies, real-time factor."""
    recorder_path = out / "recorder.json"
    recorder = json.loads(recorder_path.read_text()) if recorder_path.exists() else None
    stages, e2e, data_span = latency_figures(out)
    if recorder is not None:
        received, expected = recorder["volumes_received"], recorder["volumes_expected"]
    else:  # interrupted: count what reached the disk
        received = sum(
            load_run_data(out, p.name[:-7])[1].size for p in (out / "runs").glob("*_tr.tsv")
        )
        expected = None
    n_vol_time = received * _tr_from_config(session) if received else 0.0
    return {
        "complete": recorder is not None,
        "volumes_received": int(received),
        "volumes_lost": (int(expected) - int(received)) if expected is not None else None,
        "gaps": recorder["gaps"] if recorder else [],
        # messages a failing disk kept out of the record; how far behind the recorder fell
        "not_recorded": recorder.get("not_recorded") if recorder else None,
        "recorder_max_lag_s": recorder.get("max_lag_s") if recorder else None,
        "latency_ms": stages,
        "end_to_end_ms": e2e,
        "realtime_factor": round(n_vol_time / data_span, 3) if data_span else None,
    }


def _recon_figures(recons: list[dict]) -> dict:
    """Reconstruction count, mode and latencies (metrics filled in later)."""
    modes = sorted({r["mode"] for r in recons if r.get("mode")})
    return {
        "reconstructions": len(recons),
        "recon_mode": (modes[0] if len(modes) == 1 else modes) if modes else None,
        "recon_latency_ms": _percentiles(_floats(recons, "compute_ms")),
        "recon_delay_ms": _percentiles(_floats(recons, "delay_ms")),
        "recon_metrics": None,
    }


def _print_summary(s: dict, out: Path, log) -> None:
    sim = "SIMULATED subject" if s["simulated"] else "real data"
    log(f"--- session summary ({sim}: {s['dataset']}) ---")
    log(
        f"trials decoded {s['trials']} ({s['trials_scored']} scored, {s['retrieval_ways']}-way); "
        f"volumes received {s['volumes_received']}, lost {s['volumes_lost']}"
    )
    if s.get("not_recorded"):
        log(
            f"WARNING: {s['not_recorded']} message(s) were decoded but not recorded (the disk "
            "failed: see the recorder's log); the figures below count only what was recorded"
        )
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    log(
        f"top-1 real-time {fmt(s['retrieval_top1'])}, offline {fmt(s['offline_top1'])}, "
        f"chance {fmt(s['chance_top1'])}"
    )
    for stage, p in (s["latency_ms"] or {}).items():
        log(
            f"latency {stage:<11s} p50 {p['p50']:8.1f} ms  p95 {p['p95']:8.1f} ms  max {p['max']:8.1f} ms"
        )
    for line in restart_lines(s):
        log(line)
    if s["end_to_end_ms"]:
        e = s["end_to_end_ms"]
        log(f"volume acquired -> retrieval: p50 {e['p50']:.1f} ms, p95 {e['p95']:.1f} ms")
    if s.get("reconstructions"):
        c, d = s["recon_latency_ms"], s["recon_delay_ms"]
        line = f"reconstructions {s['reconstructions']} ({s['recon_mode']})"
        if c:
            line += f"; compute p50 {c['p50']:.1f} ms, p95 {c['p95']:.1f} ms"
        if d:
            line += f"; retrieval -> reconstruction p50 {d['p50']:.1f} ms, p95 {d['p95']:.1f} ms"
        log(line)
    rm = s.get("recon_metrics")
    for key in ("recon", "blurry"):
        if rm and key in rm:
            parts = [
                f"{name} {v['matched']:.3f} (shuffled {v['shuffled_mean']:.3f} "
                f"+/- {v['shuffled_std']:.3f})"
                for name, v in rm[key].items()
            ]
            n = rm["trials"] if key == "recon" else rm["blurry_trials"]
            log(f"{key} vs seen images ({n} trials, {rm['size']} px): " + ", ".join(parts))
    m = s.get("motion")
    if m:
        line = (
            f"head motion ({m['mode']}): FD max {m['fd_max_mm']:.2f} mm, "
            f"{m['fd_over_threshold']} TRs over {m['fd_threshold_mm']:g} mm"
        )
        if "error_vs_truth" in m:
            t, r = m["error_vs_truth"]["translation_mm"], m["error_vs_truth"]["rotation_deg"]
            line += f"; error vs truth p95 {t['p95']:.3f} mm, {r['p95']:.3f} deg"
        log(line)
    for line in marker_lines(s.get("markers")):
        log(line)
    for line in quality_lines(s.get("quality")):
        log(line)
    for line in finetune_lines(s):
        log(line)
    log(f"real-time factor {s['realtime_factor']}; summary: {out / 'summary.json'}")
