"""Protocol v2 of issue 13: rehearsal and L2-SP against the current default, on dev subjects.

    python benchmarks/finetune_rehearsal_dev.py SESSION [SESSION ...] [--threads 2] [--out FILE]

Each ``SESSION`` is the ``session-with`` folder that ``benchmarks/finetune_subj02.py`` streamed
for a *dev* subject (``docs/finetune_protocol.md``, "Protocol v2": subj02-seed4 … -seed8).  The
subject's rehearsal file (its first session, ``finetune_subj02.py --rehearsal first-session``)
is written into the data home if it is not there.  After run 1 and after run 2 (the steps with
later images no run had shown), every training of :data:`TRAININGS` fine-tunes a copy of the
session's starting model on the trials so far, as a step would, and every α point is validated
on the step's held-out trials; each method of :data:`POLICIES` picks its point with the function
a real step uses (:func:`mindeye_models.finetune.select_alpha`), and the pick is scored by
``later_new``: top-1 (100-way, the test images) of the scored trials of the later runs whose
image no run up to the step showed (as ``finetune_dev_variants.py``, whose scoring this uses).

The choice rule (:func:`choose`) is the protocol's, fixed before this script was run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from finetune_dev_variants import delta, diagnostics, pick, replay_training
from finetune_subj02 import rehearsal_file
from finetune_subj02_variants import recorded_steps

#: the trainings compared: step options changed from the session's, and whether to rehearse
TRAININGS = {
    "plain": ({}, False),
    "rehearsal": ({}, True),
    "l2sp 10": ({"l2sp": 10.0}, False),
    "l2sp 100": ({"l2sp": 100.0}, False),
}
ALPHAS = (0.25, 0.5, 0.75, 1.0)
#: (training, alphas tried, verdict): the first is the current default
POLICIES = {
    "plain": ("plain", ALPHAS, "top1-rank"),
    "rehearsal": ("rehearsal", ALPHAS, "top1-rank"),
    "rehearsal, alpha 1": ("rehearsal", (1.0,), "top1-rank"),
    "l2sp 10": ("l2sp 10", ALPHAS, "top1-rank"),
    "l2sp 100": ("l2sp 100", ALPHAS, "top1-rank"),
}
#: the rule's order of simplicity (lower: simpler)
SIMPLER = {"plain": 0, "l2sp": 1, "rehearsal": 2}


def choose(summary: dict[str, dict]) -> str:
    """The protocol's rule: a method other than ``plain`` only if its mean change of later-new
    top-1 is more than 1 point above plain's; of those, the highest, and among those within 1
    point of it the one with fewer steps that lower later-new, then the simpler."""
    base = summary["plain"]["mean_change_later_new_top1"]
    better = {
        k: v
        for k, v in summary.items()
        if k != "plain" and v["mean_change_later_new_top1"] > base + 1.0
    }
    if not better:
        return "plain"
    best = max(v["mean_change_later_new_top1"] for v in better.values())
    near = [k for k, v in better.items() if v["mean_change_later_new_top1"] >= best - 1.0]
    return min(
        near,
        key=lambda k: (
            summary[k]["steps_lowered"],
            SIMPLER[k.split(" ")[0].rstrip(",")],
            -summary[k]["mean_change_later_new_top1"],
        ),
    )


def replay_session(folder: Path) -> list[dict]:
    """The steps after runs 1 and 2 of one session in every training; per α its held-out
    validation and its diagnostics."""
    from mindeye_models.finetune_config import FinetuneConfig
    from mindeye_models.finetune_rehearsal import read_rehearsal
    from replay_data.home import data_home

    job, start_model, targets, data, bank, runs = recorded_steps(folder)
    replay = json.loads((folder / "config.json").read_text())["config"]["replay"]
    path = rehearsal_file(data_home(), Path(job["checkpoint"]), replay, print)
    rehearsal = read_rehearsal(path, n_voxels=data["voxels"].shape[1])
    base = {k: v for k, v in job["config"].items() if k not in ("budget_s", "alphas", "verdict")}
    steps = []
    for k, run in enumerate(runs[:-1]):
        start_diag = diagnostics(start_model, data, runs, k, bank)
        if start_diag["later_new"]["n"] == 0:
            continue  # no later image is new: nothing to score
        upto = np.isin(data["runs"], runs[: k + 1]) & np.isin(data["image_ids"], targets.ids)
        vox, ids = data["voxels"][upto], data["image_ids"][upto]
        step = {"after_run": run, "start": start_diag}
        for name, (change, rehearse) in TRAININGS.items():
            cfg = FinetuneConfig.from_dict({**base, **change, "budget_s": 3600.0})
            step[name] = replay_training(
                start_model,
                vox,
                ids,
                targets,
                cfg,
                (data, runs, k, bank),
                rehearsal=rehearsal if rehearse else None,
            )
            seconds = step[name]["seconds"]
            print(json.dumps({"after_run": run, "training": name, "seconds": seconds}), flush=True)
        steps.append(step)
    for p in start_model.parameters():
        p.requires_grad_(True)
    return steps


def summarize(replayed: dict[str, list[dict]]) -> dict[str, dict]:
    """Per method: the mean change of later-new top-1 over the steps, steps lowering / raising
    it, and the pooled later-new trials; prints one table row per method and step."""
    print("| method | session | after | alpha | later-new top-1 (n) | next unseen | next repeats |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for name, policy in POLICIES.items():
        changes, trials = [], 0
        for session, steps in replayed.items():
            for step in steps:
                alpha, diag = pick(step, policy)
                s0 = step["start"]
                changes.append(delta(s0["later_new"], diag["later_new"], "top1"))
                trials += s0["later_new"]["n"]
                cells = [
                    f"{100 * s0[g]['top1']:.0f} → {100 * diag[g]['top1']:.0f} % ({s0[g]['n']})"
                    if s0[g]["top1"] is not None
                    else "n/a"
                    for g in ("later_new", "next_unseen", "next_repeats")
                ]
                label = Path(session).parent.name
                row = f"| {name} | {label} | {step['after_run']} | {alpha:g} | "
                print(row + " | ".join(cells) + " |")
        valid = [c for c in changes if c is not None]
        summary[name] = {
            "mean_change_later_new_top1": round(float(np.mean(valid)), 2),
            "steps_lowered": int(sum(c < 0 for c in valid)),
            "steps_raised": int(sum(c > 0 for c in valid)),
            "steps": len(valid),
            "later_new_trials": trials,
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="+", help="session-with folders of the dev subjects")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", default="finetune_rehearsal_dev.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    replayed = {}
    for session in args.sessions:  # written after each, so a split run keeps what it did
        replayed[str(session)] = replay_session(Path(session))
        Path(args.out).write_text(json.dumps(replayed, indent=1) + "\n")
    summary = summarize(replayed)
    print(json.dumps(summary, indent=1))
    print(f"chosen by the protocol's rule: {choose(summary)}")


if __name__ == "__main__":
    main()
