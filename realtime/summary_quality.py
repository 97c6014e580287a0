"""The session summary's ``quality`` section: the bad volumes the preprocess stage censored.

The recorder lists each run's bad volumes in ``runs/RUN_bad.tsv`` (index, reasons, details;
:mod:`fmri_compute.volume_checks` says what each reason means).  The summary counts them per
run and reason, with their TR indices; counts the decoded trials whose own response (from
onset to the decode point) had a censored volume, which the estimate stage flagged
``degraded``, and scores the real-time top-1 of the other trials apart; and the offline
reference leaves the same volumes out of its whole-run fit (:func:`drop_censored`), so both
figures see the same data.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from mindeye_models.ranks import top_k_accuracy


def read_bad_volumes(out: Path, run: str) -> list[dict]:
    """The bad volumes recorded for ``run``: ``{"index", "reasons", "details"}`` each."""
    path = Path(out) / "runs" / f"{run}_bad.tsv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [
        {
            "index": int(r["index"]),
            "reasons": [x for x in (r.get("reasons") or "").split(",") if x],
            "details": json.loads(r.get("details") or "{}"),
        }
        for r in rows
    ]


def drop_censored(
    out: Path, run: str, raw: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(raw, index)`` of a recorded run without its censored rows (the offline fit then
    treats them as missing frames, as the online GLM did)."""
    bad = [b["index"] for b in read_bad_volumes(out, run)]
    if not bad:
        return raw, index
    keep = ~np.isin(index, bad)
    return raw[keep], index[keep]


def quality_figures(
    out: Path,
    runs: list[str],
    events: list[dict],
    retrievals: list[dict],
    decode_delay: float,
    tr: float,
) -> dict:
    """The ``quality`` section: bad volumes per run and reason with their TR indices, the
    decoded trials with a censored volume in their response, and top-1 without them."""
    per_run, by_reason = {}, {}
    for run in runs:
        bad = read_bad_volumes(out, run)
        if not bad:
            continue
        counts: dict[str, int] = {}
        for b in bad:
            for reason in b["reasons"]:
                counts[reason] = counts.get(reason, 0) + 1
                by_reason[reason] = by_reason.get(reason, 0) + 1
        per_run[run] = {
            "bad_volumes": len(bad),
            "by_reason": counts,
            "indices": [b["index"] for b in bad],
        }
    onsets = {(e["run"], str(e["trial"])): float(e["onset"]) for e in events}
    degraded, clean_ranks = 0, []
    for r in retrievals:
        onset = onsets.get((r["run"], str(r["trial"])))
        bad = np.asarray(per_run.get(r["run"], {}).get("indices", []), float)
        hit = False
        if onset is not None and bad.size:  # as the estimate stage: onset to decode volume
            decode = math.ceil((onset + decode_delay) / tr - 1e-9)
            hit = bool(np.any((bad >= onset / tr - 1e-9) & (bad <= decode)))
        degraded += hit
        if not hit and r.get("rank") not in (None, ""):
            clean_ranks.append(int(r["rank"]))
    return {
        "bad_volumes": sum(r["bad_volumes"] for r in per_run.values()),
        "by_reason": by_reason,
        "runs": per_run,
        "trials_degraded": int(degraded),
        "retrieval_top1_not_degraded": top_k_accuracy(np.asarray(clean_ranks, int), 1)
        if degraded
        else None,
    }


def quality_lines(q: dict | None) -> list[str]:
    """The printed summary's line about bad volumes (none when there were none)."""
    if not q or not q.get("bad_volumes"):
        return []
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(q["by_reason"].items()))
    runs = "; ".join(f"{run} TR {r['indices']}" for run, r in q["runs"].items())
    line = f"bad volumes censored: {q['bad_volumes']} ({reasons}); {runs}"
    if q["trials_degraded"]:
        top1 = q["retrieval_top1_not_degraded"]
        shown = "n/a" if top1 is None else f"{100 * top1:.1f} %"
        line += f"; {q['trials_degraded']} trial(s) degraded, top-1 of the others {shown}"
    return [line]
