"""``mindeye-rt rerun SESSION_DIR``: a recorded session streamed again through the same
pipeline, and its retrievals compared with the record's, trial by trial.

The rerun is a new session (its own folder, a BIDS record too) whose source replays the
record (:class:`realtime.record_dataset.RecordDataset`): the volumes from its bold files, the
trials from its ``_events.tsv`` (so a live session whose trials came as LSL markers reruns
without the stimulus program), volumes that never came left out again.  Everything else comes
from the record's ``config.json``: the design dataset (mask, bank images), the checkpoint, the
bank ids, the decode delay, top-k and precision, the motion options and reference, the device,
the reconstruction models.  It runs at ``--speed 0`` unless asked otherwise.

Options given to ``rerun`` replace the recorded ones.  Those in :data:`PIPELINE_OPTIONS`
change what is computed: the user is trying other options, the differences are the point, and
they do not fail the command.  The others (:data:`RUN_OPTIONS`) change only how the rerun runs.
The comparison (:func:`compare_retrievals`) is written to the rerun's ``rerun_diff.tsv``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from realtime.config import StreamConfig
from realtime.record_dataset import RecordDataset
from realtime.session_layout import rerun_diff_path, retrievals_path
from realtime.stages.decode_swaps import replay_swaps_in
from rt_base.atomic import write_json, write_text
from rt_base.checks import check_path
from rt_base.errors import ConfigError

#: options that change the retrievals: a rerun with one of them is an experiment, not an audit
PIPELINE_OPTIONS = (
    "decode_delay",
    "top_k",
    "decode_precision",
    "checkpoint",
    "device",
    "motion",
    "motion_ref",
    "fd_threshold",
)
#: options that change only how the rerun runs (reconstruction never feeds retrieval)
RUN_OPTIONS = ("speed", "launcher", "base_port", "quiet", "recon")
DIFF_COLUMNS = (
    "run",
    "trial",
    "image_id",
    "status",
    "top_ids_original",
    "top_ids_rerun",
    "max_score_diff",
)


@dataclass
class RerunPlan:
    """What a rerun will run: the record, the new session's config, the options changed."""

    record: RecordDataset
    config: StreamConfig
    changed: dict

    @property
    def original(self) -> Path:
        return self.record.record_root

    @property
    def on_purpose(self) -> list[str]:
        """The options given that change what is computed."""
        return [k for k in self.changed if k in PIPELINE_OPTIONS]


def plan_rerun(session_dir, out=None, **changes) -> RerunPlan:
    """The rerun of the record at ``session_dir`` into ``out`` (default: a new folder in the
    data home's sessions), with ``changes`` (options of :data:`PIPELINE_OPTIONS` and
    :data:`RUN_OPTIONS`; None values are ignored).

    Raises
    ------
    ConfigError
        ``session_dir`` is not a session record; ``out`` is it, or already holds files; an
        option is unknown or its value bad.
    DatasetError
        The record holds no volumes, or its design dataset is gone.
    """
    session_dir = check_path(session_dir, "session", kind="dir").resolve()
    check_path(
        session_dir / "config.json",
        "session",
        kind="file",
        remedy=f"{str(session_dir)!r} is not a session folder (no config.json)",
    )
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = sorted(set(changes) - set(PIPELINE_OPTIONS) - set(RUN_OPTIONS))
    if unknown:
        raise ConfigError(
            f"rerun cannot change {unknown}; it can change {[*PIPELINE_OPTIONS, *RUN_OPTIONS]}"
        )
    record = RecordDataset(session_dir)
    out = _new_folder(session_dir, out)
    session = record.session
    labels = record.layout.labels
    recorded = session["config"]
    known = {f.name for f in dataclasses.fields(StreamConfig)}
    options = {k: v for k, v in recorded.items() if k in known}
    options.setdefault("decode_precision", "fp32")  # a session from before the option was fp32
    options.update(
        replay=session["dataset"],
        out=str(out),
        speed=0.0,
        headless=True,
        checkpoint=session["checkpoint"],
        recon_models=session.get("recon_bundle") or recorded.get("recon_models"),
        motion=session.get("motion", recorded.get("motion", "auto")),
        scanner=None,
        scanner_poll=False,
        run=None,
        run_volumes=None,
        runs=[],
        max_volumes=None,
        markers=None,
        lsl_results=None,
        host="127.0.0.1",
        keys=None,
        key_name=None,
        curve=False,
        subject=labels.subject,
        session=labels.session,
    )
    options.update(changes)
    return RerunPlan(record, StreamConfig(**options), changes)


def _new_folder(original: Path, out) -> Path:
    if out is None:
        from replay_data.home import data_home

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = data_home() / "sessions" / f"{stamp}_rerun_{original.name}"
    out = Path(out).expanduser().resolve()
    if out == original or original in out.parents:
        raise ConfigError(f"'out' must be a new folder outside the record {original}, got {out}")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"'out' must be a new or empty folder, got {out} which holds files: a rerun never "
            "writes over a session"
        )
    return out


def adjust_for_rerun(plan: RerunPlan):
    """``adjust`` for :func:`realtime.pipeline.run_stream`: the source replays the record (its
    runs, without the volumes that never came) and the decoder keeps the record's bank."""

    def adjust(prep):
        record, session = plan.record, plan.record.session
        missing = [[run, i] for run in record.runs for i in record.missing_volumes(run)]
        prep.specs["source"].update(
            dataset=str(record.record_root),
            runs=record.runs,
            max_volumes=None,
            drop_volumes=missing,
        )
        prep.specs["decode"]["bank_ids"] = session["bank_ids"]
        replay_swaps_in(record.record_root, prep.specs)  # the fine-tuned weights, as recorded
        prep.session.update(
            bank_ids=session["bank_ids"],
            runs=record.runs,
            rerun_of={
                "session": str(record.record_root),
                "input": session.get("input"),
                "changed": plan.changed,
            },
        )
        write_json(prep.out / "config.json", prep.session)
        for name, spec in prep.specs.items():
            write_json(prep.out / "stages" / f"{name}.json", spec)
        return prep

    return adjust


def _rows(path: Path) -> dict[tuple[str, str], dict]:
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {(r["run"], r["trial"]): r for r in csv.DictReader(fh, delimiter="\t")}


def _score_diff(a: dict, b: dict) -> float | None:
    try:
        sa = [float(s) for s in a["top_scores"].split(",") if s]
        sb = [float(s) for s in b["top_scores"].split(",") if s]
    except (KeyError, ValueError):
        return None
    if len(sa) != len(sb) or not sa:
        return None
    return max(abs(x - y) for x, y in zip(sa, sb, strict=True))


def compare_retrievals(original: Path, rerun: Path) -> dict:
    """Each trial's top-k in the record and in the rerun, written to the rerun's
    ``rerun_diff.tsv`` (status ``same``, ``differs``, ``original only``, ``rerun only``).

    Returns ``{"trials", "same", "differs", "original_only", "rerun_only", "rows"}`` (rows:
    the trials that are not the same, as written).
    """
    a, b = _rows(retrievals_path(original)), _rows(retrievals_path(rerun))
    keys = list(a) + [k for k in b if k not in a]
    lines, counts, rows = (
        [],
        dict.fromkeys(("same", "differs", "original_only", "rerun_only"), 0),
        [],
    )
    for key in keys:
        ra, rb = a.get(key), b.get(key)
        if ra is None or rb is None:
            status = "rerun only" if ra is None else "original only"
        else:
            status = "same" if ra["top_ids"] == rb["top_ids"] else "differs"
        counts[status.replace(" ", "_")] += 1
        diff = _score_diff(ra, rb) if ra and rb else None
        row = {
            "run": key[0],
            "trial": key[1],
            "image_id": (ra or rb).get("image_id", ""),
            "status": status,
            "top_ids_original": ra["top_ids"] if ra else "n/a",
            "top_ids_rerun": rb["top_ids"] if rb else "n/a",
            "max_score_diff": "n/a" if diff is None else f"{diff:.5f}",
        }
        if status != "same":
            rows.append(row)
        lines.append("\t".join(str(row[c]) for c in DIFF_COLUMNS))
    write_text(rerun_diff_path(rerun), "\n".join(["\t".join(DIFF_COLUMNS), *lines]) + "\n")
    return {"trials": len(keys), **counts, "rows": rows}


def rerun_session(session_dir, out=None, *, log=print, **changes) -> tuple[dict, dict, RerunPlan]:
    """Rerun the record at ``session_dir`` (see :func:`plan_rerun`) and compare it.

    Returns
    -------
    summary : the rerun session's summary.
    comparison : :func:`compare_retrievals`' counts and differing rows.
    plan : what was run.
    """
    from realtime.pipeline import run_stream

    plan = plan_rerun(session_dir, out, **changes)
    record = plan.record
    log(
        f"rerun of {plan.original}: {len(record.runs)} run(s) {record.runs} from its BIDS "
        f"record, design {record.design.meta.name}, checkpoint {record.session['checkpoint']}"
    )
    if plan.changed:
        log(f"options changed: {json.dumps(plan.changed)}")
    summary = run_stream(plan.config, log=log, adjust=adjust_for_rerun(plan))
    comparison = compare_retrievals(plan.original, Path(plan.config.out))
    return summary, comparison, plan
