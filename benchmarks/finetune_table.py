"""The protocol's table from ``benchmarks/finetune_subj02.py`` outputs: per subject and run,
real-time top-1 without -> with fine-tuning (unseen images and repeats), the whole session,
and the mean change over a group of subjects.

    python benchmarks/finetune_table.py ROLE=DIR [ROLE=DIR ...]

``DIR`` is a ``--out`` folder of ``finetune_subj02.py`` (with ``finetune_subj02.json``);
``ROLE`` a label such as ``test:subj02-seed6``.  Means are taken per role prefix (``test``,
``dev``, ...): the change of unseen top-1 pooled over runs 2 and 3 (run 1 is decoded by the
starting model in both sessions, run 4 shows only repeats) and of the whole session; and,
pooled over the role's subjects, the unseen trials of runs 2 and 3 paired across the two
sessions (the same trial decoded without and with): how many only one of them retrieved at
top-1, and the exact two-sided sign-test p of that split (McNemar's exact test).
"""

from __future__ import annotations

import csv
import json
import sys
from math import comb
from pathlib import Path


def pooled(runs: dict, names: list[str], group: str) -> tuple[int, int]:
    """(hits, trials) of ``group`` over ``names``."""
    hits = trials = 0
    for run in names:
        g = runs.get(run, {}).get(group)
        if g and g["n"]:
            hits += round(g["top1"] * g["n"])
            trials += g["n"]
    return hits, trials


def paired_unseen(folder: Path) -> tuple[int, int]:
    """Unseen trials of runs 2 and 3 hit at top-1 only without / only with fine-tuning."""
    hits = {}
    for name in ("without", "with"):
        with open(folder / f"session-{name}" / "retrievals.tsv") as fh:
            rows = [r for r in csv.DictReader(fh, delimiter="\t")]
        runs = list(dict.fromkeys(r["run"] for r in rows))
        seen: set[str] = set()
        hit = {}
        for run in runs:
            for r in rows:
                if r["run"] == run and r["rank"] != "" and r["image_id"] not in seen:
                    if run in runs[1:3]:
                        hit[(run, r["trial"])] = r["rank"] == "1"
            seen |= {r["image_id"] for r in rows if r["run"] == run}
        hits[name] = hit
    keys = hits["without"].keys() & hits["with"].keys()
    only_without = sum(hits["without"][k] and not hits["with"][k] for k in keys)
    only_with = sum(hits["with"][k] and not hits["without"][k] for k in keys)
    return only_without, only_with


def sign_test_p(b: int, c: int) -> float:
    """Exact two-sided p of ``b`` against ``c`` discordant pairs (each 1/2 under no change)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def rows(label: str, folder: Path) -> tuple[list[str], dict]:
    data = json.loads((folder / "finetune_subj02.json").read_text())
    w, f = data["without"], data["with"]
    runs = list(w["runs"])

    def cell(run: str, group: str) -> str:
        a, b = w["runs"][run][group], f["runs"][run][group]
        if not a["n"]:
            return "–"
        return f"{100 * a['top1']:.0f} → {100 * b['top1']:.0f}"

    models = f.get("models", {})
    line = [label]
    line += [cell(r, "unseen") for r in runs[1:3]]
    line += [cell(r, "repeats") for r in runs[1:]]
    line += [f"{100 * w['top1']:.1f} → {100 * f['top1']:.1f}"]
    line += [", ".join(f"{r[-2:]}: {m}" for r, m in models.items())]
    hw, n = pooled(w["runs"], runs[1:3], "unseen")
    hf, _ = pooled(f["runs"], runs[1:3], "unseen")
    figures = {
        "unseen_change": 100 * (hf - hw) / n if n else 0.0,
        "session_change": 100 * (f["top1"] - w["top1"]),
        "paired": paired_unseen(folder),
    }
    return line, figures


def main() -> None:
    header = (
        "| subject | run-02 unseen | run-03 unseen | run-02 repeats | run-03 repeats "
        "| run-04 repeats | session | model per run (with) |"
    )
    print(header)
    print("|" + " --- |" * 8)
    groups: dict[str, list[dict]] = {}
    for arg in sys.argv[1:]:
        label, folder = arg.split("=", 1)
        line, figures = rows(label, Path(folder))
        print("| " + " | ".join(line) + " |")
        groups.setdefault(label.split(":")[0], []).append(figures)
    for role, figs in groups.items():
        u = sum(x["unseen_change"] for x in figs) / len(figs)
        s = sum(x["session_change"] for x in figs) / len(figs)
        each = ", ".join(f"{x['unseen_change']:+.0f}" for x in figs)
        print(
            f"{role}: mean change over {len(figs)} subject(s): unseen top-1 (runs 2-3 pooled) "
            f"{u:+.1f} points (each: {each}), whole session {s:+.1f} points"
        )
        b = sum(x["paired"][0] for x in figs)
        c = sum(x["paired"][1] for x in figs)
        print(
            f"{role}: unseen trials of runs 2-3 retrieved only without: {b}, only with: {c} "
            f"(exact sign test p = {sign_test_p(b, c):.2f})"
        )


if __name__ == "__main__":
    main()
