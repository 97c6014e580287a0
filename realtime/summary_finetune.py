"""The summary's account of fine-tuning between runs: each step's verdict and held-out figures,
each swap, and the real-time retrieval of each run with the model that decoded it.

Read from ``finetune/steps.jsonl`` (:mod:`realtime.stages.decode_finetune`) and
``retrievals.tsv``; a session without fine-tuning has no ``finetune`` entry (None).
"""

from __future__ import annotations

from pathlib import Path

from realtime.finetune_options import FOLDER
from realtime.stages.decode_finetune import STEPS_FILE, describe_step
from rt_base.atomic import read_json_lines


def read_steps(out: str | Path) -> list[dict]:
    """The lines of ``finetune/steps.jsonl`` in order (steps and swaps); [] without one."""
    return read_json_lines(Path(out) / FOLDER / STEPS_FILE)


def finetune_figures(out: str | Path, retrievals: list[dict]) -> dict | None:
    """``steps`` (after_run, outcome, n_train, n_val, before, after, seconds), ``swaps`` (step,
    run), and ``runs``: per run the model that decoded it and its real-time top-1."""
    rows = read_steps(out)
    if not rows and not (Path(out) / FOLDER).is_dir():
        return None
    keep = ("step", "after_run", "outcome", "reason", "n_train", "n_val", "before", "after")
    keep += ("alpha",)
    steps = [
        {**{k: r.get(k) for k in keep}, "seconds": r.get("seconds")}
        for r in rows
        if r.get("event") == "step"
    ]
    swaps = [
        {k: r.get(k) for k in ("step", "run", "weights")} for r in rows if r.get("event") == "swap"
    ]
    current = "initial"
    runs: dict[str, dict] = {}
    swap_at = {s["run"]: f"step-{s['step']:02d}" for s in swaps}
    for r in retrievals:
        run = r["run"]
        if run not in runs:
            current = swap_at.get(run, current)
            runs[run] = {"model": current, "scored": 0, "hits": 0}
        if r["rank"] != "":
            runs[run]["scored"] += 1
            runs[run]["hits"] += int(r["rank"]) == 1
    for entry in runs.values():
        entry["top1"] = round(entry["hits"] / entry["scored"], 4) if entry["scored"] else None
    return {"steps": steps, "swaps": swaps, "runs": runs}


def finetune_lines(s: dict) -> list[str]:
    """The summary's printed lines about fine-tuning (none when it was off)."""
    ft = s.get("finetune")
    if not ft:
        return []
    lines = [describe_step(step) for step in ft["steps"]]
    per_run = ", ".join(
        f"{run} {_percent(e['top1'])} ({e['model']})" for run, e in ft["runs"].items()
    )
    if per_run:
        lines.append(f"top-1 per run (model): {per_run}")
    return lines


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"
