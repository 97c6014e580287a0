"""The session summary's head-motion figures: framewise displacement per run, and, for a
simulated subject that moves, how far the estimated parameters are from the true ones.

The estimates (``runs/RUN_motion.tsv``, written by the recorder) are relative to the session's
motion reference; the truth (:meth:`replay_data.dataset_reader.ReplayDataset.true_motion`) is
relative to the still head.  They are compared as rigid transforms: the truth of each volume
composed with the inverse of the reference volume's truth.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fmri_compute.rigid import PARAM_NAMES, params_from_matrix, rigid_matrix


def read_motion(out: Path, run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(indices (T,), params (T, 6), fd (T,)) recorded for ``run``, or None."""
    path = out / "runs" / f"{run}_motion.tsv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return None
    index = np.array([int(r["index"]) for r in rows])
    params = np.array([[float(r[c]) for c in PARAM_NAMES] for r in rows])
    fd = np.array([float(r["fd"]) for r in rows])
    return index, params, fd


def motion_figures(out: Path, session: dict) -> dict | None:
    """The ``motion`` section of the summary (None when motion was not estimated)."""
    threshold = float(session.get("fd_threshold", 0.5))
    runs, errors = {}, []
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
        err = _errors_vs_truth(session, run, index, params)
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


def _errors_vs_truth(session, run, index, params) -> np.ndarray | None:
    """(T, 6) estimated minus true parameters, both relative to the reference volume."""
    from replay_data.dataset_reader import ReplayDataset

    try:
        ds = ReplayDataset.open(session["dataset"])
        truth = ds.true_motion(run)
        first = ds.true_motion(session["runs"][0])
    except Exception:  # noqa: BLE001 - no truth to score against: the figures go without
        return None
    if truth is None or first is None:
        return None
    ref = str(session.get("config", {}).get("motion_ref", "first"))
    if ref != "first" and not ref.isdigit():
        return None  # a reference image from a file: its true position is unknown
    ref_params = first[int(ref) if ref.isdigit() else 0]
    shape = ds.meta.shape
    from fmri_compute.rigid import grid_center

    c = grid_center(shape, ds.affine)
    ref_inv = np.linalg.inv(rigid_matrix(ref_params, c))
    rel = np.array([params_from_matrix(rigid_matrix(truth[i], c) @ ref_inv, c) for i in index])
    return params - rel
