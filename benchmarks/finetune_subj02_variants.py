"""Fine-tune step variants on a recorded subj02 session: held-out verdicts and the next run.

    python benchmarks/finetune_subj02_variants.py SESSION [--threads 2] [--out FILE]

``SESSION`` is the ``session-with`` folder of ``benchmarks/finetune_subj02.py`` (a session
streamed with ``--finetune between-runs``): its decoded responses (``trials/``), image ids
(``retrievals.tsv``), the step's targets (``finetune/targets.safetensors``) and the model it
started with (``finetune/step-01/job.json``).  After each run but the last, every variant of
:data:`VARIANTS` fine-tunes a copy of that starting model on the trials so far, as a step
would, and is judged two ways:

- the step's own verdict: held-out top-1 and mean rank before and after (what decides a swap);
- a diagnostic the session cannot see: the real-time top-1 (100-way, the test images) of the
  next run's trials, repeats and first showings apart, with the starting and the fine-tuned
  model.  It is reported, not used to choose anything.

Every variant starts from the starting model (in the session a step starts from the current
one, which is the same while no swap happened).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from pathlib import Path

import numpy as np

#: the variants compared (fixed before looking at any result)
VARIANTS = {
    "lin0, lr 3e-4, hold out trials": {"params": "lin0", "holdout": "trials"},
    "lin0, lr 1e-3, hold out trials": {"params": "lin0", "lr": 1e-3, "holdout": "trials"},
    "all, lr 3e-4, hold out trials": {"params": "all", "holdout": "trials"},
    "lin0, lr 3e-4, hold out images": {"params": "lin0", "holdout": "images"},
}


def load_session(folder: Path) -> dict:
    """Responses (N, V), image ids, runs and whether each trial is scored (decode order)."""
    with open(folder / "retrievals.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    voxels = np.stack(
        [np.load(folder / "trials" / f"{int(r['n']):04d}_response.npy") for r in rows]
    )
    return {
        "voxels": voxels.astype(np.float32),
        "image_ids": np.array([int(r["image_id"]) for r in rows], np.int64),
        "runs": np.array([r["run"] for r in rows]),
        "scored": np.array([r["rank"] != "" for r in rows]),
    }


def recorded_steps(folder: Path):
    """What replaying a session's steps offline starts from: the first step's job, the
    session's starting model, the step targets, the recorded trials (:func:`load_session`),
    the decode stage's bank of the scored images and the runs in order."""
    from mindeye_models.bank import ImageBank
    from mindeye_models.checkpoint import load_checkpoint

    job = json.loads((folder / "finetune" / "step-01" / "job.json").read_text())
    start_model, _ = load_checkpoint(job["checkpoint"])
    targets = ImageBank.load(folder / "finetune" / "targets.safetensors")
    data = load_session(folder)
    test_ids = np.unique(data["image_ids"][data["scored"]])
    bank = ImageBank(test_ids, targets.lookup(test_ids))  # the decode stage's 100-way bank
    runs = list(dict.fromkeys(data["runs"].tolist()))
    return job, start_model, targets, data, bank, runs


def next_run_figures(model, data, run: str, seen: set[int], bank) -> dict:
    """Top-1 of ``run``'s scored trials among ``bank``: all, repeats and first showings."""
    from mindeye_models.finetune import validate

    here = (data["runs"] == run) & data["scored"]
    repeat = np.isin(data["image_ids"], sorted(seen))
    out = {}
    for name, mask in (("all", here), ("repeats", here & repeat), ("unseen", here & ~repeat)):
        out[name] = (
            {
                "n": int(mask.sum()),
                "top1": validate(model, data["voxels"][mask], data["image_ids"][mask], bank)[
                    "top1"
                ],
            }
            if mask.any()
            else {"n": 0, "top1": None}
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("session", help="the session-with folder of finetune_subj02.py")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", default=None, help="JSON file (default SESSION/../variants.json)")
    args = ap.parse_args()
    import torch

    from mindeye_models.finetune import finetune_step
    from mindeye_models.finetune_config import FinetuneConfig

    torch.set_num_threads(args.threads)
    folder = Path(args.session)
    job, start_model, targets, data, bank, runs = recorded_steps(folder)
    base = {k: v for k, v in job["config"].items() if k != "budget_s"}
    results = []
    for k, run in enumerate(runs[:-1]):
        upto = np.isin(data["runs"], runs[: k + 1]) & np.isin(data["image_ids"], targets.ids)
        seen = set(data["image_ids"][np.isin(data["runs"], runs[: k + 1])].tolist())
        before = next_run_figures(start_model, data, runs[k + 1], seen, bank)
        for name, change in VARIANTS.items():
            model = copy.deepcopy(start_model)
            cfg = FinetuneConfig.from_dict({**base, **change, "budget_s": 3600.0})
            t = time.perf_counter()
            r = finetune_step(model, data["voxels"][upto], data["image_ids"][upto], targets, cfg)
            row = {
                "after_run": run,
                "variant": name,
                "accepted": r.accepted,
                "n_train": r.n_train,
                "n_val": r.n_val,
                "val_before": r.before,
                "val_after": r.after,
                "train_seconds": r.train_seconds,
                "seconds": round(time.perf_counter() - t, 1),
                "next_run": runs[k + 1],
                "next_before": before,
                "next_after": next_run_figures(model, data, runs[k + 1], seen, bank),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.out) if args.out else folder.parent / "variants.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    pct = lambda g: "n/a" if g["top1"] is None else f"{100 * g['top1']:.0f} %"  # noqa: E731
    print(
        "| after | variant | held-out top-1 (n) before → after | verdict | next run unseen "
        "before → after | next run repeats before → after |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        vb, va, nb, na = r["val_before"], r["val_after"], r["next_before"], r["next_after"]
        print(
            f"| {r['after_run']} | {r['variant']} | {pct(vb)} → {pct(va)} ({r['n_val']}) | "
            f"{'accepted' if r['accepted'] else 'rejected'} | {pct(nb['unseen'])} → "
            f"{pct(na['unseen'])} ({nb['unseen']['n']}) | {pct(nb['repeats'])} → "
            f"{pct(na['repeats'])} ({nb['repeats']['n']}) |"
        )


if __name__ == "__main__":
    main()
