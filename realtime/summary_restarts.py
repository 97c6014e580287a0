"""The summary's account of stage restarts: which stage died, how, and whether anything was lost.

The process launcher writes one line per restart to ``restarts.jsonl``
(:mod:`realtime.supervisor`); the stages' final statuses are not kept, so whether anything was
lost is the session's own count: ``volumes_lost`` (expected minus received volumes, from the
recorder) and the trials decoded against the trials the source sent.
"""

from __future__ import annotations

from pathlib import Path

from realtime.supervisor import RESTARTS_FILE
from rt_base.atomic import read_json_lines


def read_restarts(out: str | Path) -> list[dict]:
    """The restarts of a session, in order (an empty list when there were none)."""
    return read_json_lines(Path(out) / RESTARTS_FILE)


def restart_figures(out: str | Path, volumes_lost: int | None, trials: int, events: int) -> dict:
    """``restarts`` (each: stage, how it died, its restart number, when), their count per
    stage, and ``nothing_lost`` (True when no volume was lost and every trial the source sent
    was decoded; None when the session did not complete)."""
    rows = read_restarts(out)
    per_stage: dict[str, int] = {}
    for row in rows:
        per_stage[row.get("stage", "?")] = per_stage.get(row.get("stage", "?"), 0) + 1
    nothing_lost = None if volumes_lost is None else (volumes_lost == 0 and trials >= events)
    return {
        "restarts": [{k: row.get(k) for k in ("stage", "exit", "restart", "time")} for row in rows],
        "restarts_per_stage": per_stage,
        "nothing_lost": nothing_lost,
    }


def restart_lines(s: dict) -> list[str]:
    """The summary's printed lines about restarts (none when there were none)."""
    if not s.get("restarts"):
        return []
    stages = ", ".join(f"{k} x{v}" for k, v in sorted(s["restarts_per_stage"].items()))
    lost = {True: "nothing lost", False: "SOMETHING WAS LOST", None: "session incomplete"}
    return [f"stage restarts: {len(s['restarts'])} ({stages}); {lost[s['nothing_lost']]}"]
