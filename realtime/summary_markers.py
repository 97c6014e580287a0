"""The session summary's ``markers`` entry: what the stimulus program's LSL markers gave.

Read from ``markers.json``, which the source writes at each run's end
(:mod:`realtime.stages.marker_events`).  ``clocks`` says, per run, what timed its trials:
``triggers`` (scanner trigger markers), ``volumes`` (the volumes' times: a scanner's files are
later than its acquisitions by its reconstruction delay) or ``onsets`` (the markers carried
them).  ``late`` counts the trials of a scanner session whose markers came after volumes past
their onsets had been sent (:mod:`realtime.stages.scanner_markers`).
"""

from __future__ import annotations

import json
from pathlib import Path

CLOCK_WORDS = {
    "triggers": "scanner trigger markers",
    "volumes": "the volumes' times (no trigger markers)",
    "onsets": "the onsets the markers carried",
    None: "nothing (no trial)",
}


def marker_figures(out: Path) -> dict | None:
    """The ``markers`` entry of ``summary.json`` (None: the session took no markers)."""
    path = Path(out) / "markers.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    counts, runs = data.get("counts", {}), data.get("runs", {})
    return {
        "stream": data.get("stream", {}).get("name"),
        "received": int(counts.get("received", 0)),
        "trials": int(counts.get("trials", 0)),
        "late": int(counts.get("late", 0)),
        "triggers": int(counts.get("triggers", 0)),
        "malformed": int(counts.get("malformed", 0)),
        "refused": int(counts.get("refused", 0)),
        "clocks": {run: info.get("clock") for run, info in runs.items()},
    }


def marker_lines(markers: dict | None) -> list[str]:
    """The printed summary's lines about the markers."""
    if not markers:
        return []
    clocks = sorted(set(markers["clocks"].values()), key=str)
    timed = "; ".join(CLOCK_WORDS.get(c, str(c)) for c in clocks) or "no run"
    return [
        f"markers: {markers['trials']} trials from LSL stream {markers['stream']!r} "
        f"({markers.get('late', 0)} late, {markers['malformed']} malformed, "
        f"{markers['refused']} refused, "
        f"{markers['triggers']} triggers); onsets timed by {timed}"
    ]
