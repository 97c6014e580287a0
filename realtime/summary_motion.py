"""The session summary's head-motion figures: framewise displacement per run, and, for a
simulated subject that moves, how far the estimated parameters are from the true ones.

The estimates (the record's motion derivative, written by the recorder; ``runs/RUN_motion.tsv``
in a session recorded before records were BIDS) are relative to the session's
motion reference; the truth (:meth:`replay_data.dataset_reader.ReplayDataset.true_motion`) is
relative to the still head.  They are compared as rigid transforms: the truth of each volume
composed with the inverse of the reference volume's truth.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fmri_compute.rigid import PARAM_NAMES, grid_center, params_from_matrix, rigid_matrix
from realtime.session_layout import layout_of


def motion_path(out: Path, run: str) -> Path | None:
    """The motion table of ``run`` in the session folder ``out`` (None: not on record)."""
    out = Path(out)
    try:
        layout = layout_of(out, json.loads((out / "config.json").read_text()))
    except (OSError, ValueError):
        layout = None
    if layout is None:  # recorded before records were BIDS
        return out / "runs" / f"{run}_motion.tsv"
    number = layout.recorded_runs().get(run)
    return None if number is None else layout.motion_tsv(number)


def read_motion(out: Path, run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(indices (T,), params (T, 6), fd (T,)) recorded for ``run``, or None.  Row k of the
    derivative is volume k (``n/a`` rows: volumes that never reached the recorder); the older
    table had an ``index`` and an ``fd`` column."""
    path = motion_path(out, run)
    if path is None or not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    rows = [(int(r.get("index", k)), r) for k, r in enumerate(rows) if r[PARAM_NAMES[0]] != "n/a"]
    if not rows:
        return None
    index = np.array([k for k, _ in rows])
    params = np.array([[float(r[c]) for c in PARAM_NAMES] for _, r in rows])
    fd = np.array([float(r.get("framewise_displacement", r.get("fd"))) for _, r in rows])
    return index, params, fd


def motion_figures(out: Path, session: dict) -> dict | None:
    """The ``motion`` section of the summary (None when motion was not estimated)."""
    threshold = float(session.get("fd_threshold", 0.5))
    runs, errors = {}, []
    score = None
    for run in session.get("runs", []):
        rec = read_motion(out, run)
        if rec is None:
            continue
        index, params, fd = rec
        runs[run] = {
            "volumes": int(index.size),
            "fd_mean_mm": round(float(fd.mean()), 4),
            "fd_max_mm": round(float(fd.max()), 4),
            "fd_over_threshold": int((fd > threshold).sum()),
            "max_translation_mm": round(float(np.abs(params[:, :3]).max()), 4),
            "max_rotation_deg": round(float(np.abs(params[:, 3:]).max()), 4),
        }
        if score is None:
            score = _truth_scorer(session) or (lambda *_: None)
        err = score(run, index, params)
        if err is not None:
            errors.append(err)
    if not runs:
        return None
    figures = {
        "mode": session.get("motion"),
        "fd_threshold_mm": threshold,
        "fd_over_threshold": sum(r["fd_over_threshold"] for r in runs.values()),
        "fd_max_mm": max(r["fd_max_mm"] for r in runs.values()),
        "runs": runs,
    }
    if errors:
        err = np.concatenate(errors)
        figures["error_vs_truth"] = {
            "volumes": int(len(err)),
            "translation_mm": _spread(np.abs(err[:, :3]).ravel()),
            "rotation_deg": _spread(np.abs(err[:, 3:]).ravel()),
        }
    return figures


def _spread(values: np.ndarray) -> dict:
    return {
        "median": round(float(np.median(values)), 4),
        "p95": round(float(np.percentile(values, 95)), 4),
        "max": round(float(values.max()), 4),
    }


def _truth_scorer(session: dict):
    """``score(run, index, params) -> (T, 6) | None``: estimated minus true parameters, both
    relative to the reference volume; None when the dataset records no true motion (or the
    reference's true position is unknown).  The dataset is opened once."""
    from replay_data.dataset_reader import ReplayDataset

    try:
        ds = ReplayDataset.open(session["dataset"])
        first = ds.true_motion(session["runs"][0])
    except Exception:  # noqa: BLE001 - no truth to score against: the figures go without
        return None
    ref = str(session.get("config", {}).get("motion_ref", "first"))
    if first is None or (ref != "first" and not ref.isdigit()):
        return None  # a still or real subject; or a reference image from a file
    c = grid_center(ds.meta.shape, ds.affine)
    ref_inv = np.linalg.inv(rigid_matrix(first[int(ref) if ref.isdigit() else 0], c))

    def score(run: str, index: np.ndarray, params: np.ndarray) -> np.ndarray | None:
        try:
            truth = ds.true_motion(run)
        except Exception:  # noqa: BLE001 - as above
            return None
        if truth is None:
            return None
        rel = [params_from_matrix(rigid_matrix(truth[i], c) @ ref_inv, c) for i in index]
        return params - np.array(rel)

    return score
