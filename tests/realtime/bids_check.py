"""Checks a session record against the BIDS specification's machine-readable schema: file
names (bids-validator's path rules), the required fields of the JSON files, the required first
columns of the TSV files, and that the tables and files agree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest


def _schema():
    pytest.importorskip("bids_validator", reason="bids-validator (pip install -e .[test])")
    from bidsschematools import schema

    return schema.load_schema()


def _ignored(rel: str, patterns: list[str]) -> bool:
    return any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in patterns)


def _header(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return next(csv.reader(fh, delimiter="\t"))


def _required(fields) -> list[str]:
    return [
        k for k, v in fields.items() if (v if isinstance(v, str) else v.get("level")) == "required"
    ]


def bids_problems(root: str | Path, *, finished: bool = True) -> list[str]:
    """What in the record at ``root`` breaks BIDS (empty: nothing).  ``finished``: every run
    has ended, so every bold file is a ``.nii.gz``."""
    from bids_validator import BIDSValidator

    s = _schema()
    root = Path(root)
    problems: list[str] = []
    ignore = [line.strip() for line in (root / ".bidsignore").read_text().splitlines()]
    validator = BIDSValidator()
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        rel = "/" + path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # hidden: .bidsignore, a writer's temporary file
        if not _ignored(rel, ignore) and not validator.is_bids(rel):
            problems.append(f"{rel}: not a BIDS name")
    rules = s.rules.json.dataset
    for desc in [
        root / "dataset_description.json",
        *root.glob("derivatives/*/dataset_description.json"),
    ]:
        data = json.loads(desc.read_text())
        need = _required(rules.dataset_description.fields)
        if data.get("DatasetType") == "derivative":
            need += _required(rules.derivative_description.fields)
        problems += [f"{desc.relative_to(root)}: no {k}" for k in need if k not in data]
    sidecar_fields = {
        **s.rules.sidecars.func.MRIFuncRepetitionTime.fields,
        **s.rules.sidecars.func.MRIFuncRequired.fields,
    }
    for sidecar in root.glob("sub-*/ses-*/func/*_bold.json"):
        data = json.loads(sidecar.read_text())
        problems += [f"{sidecar.name}: no {k}" for k in _required(sidecar_fields) if k not in data]
        if not float(data.get("RepetitionTime", 0)) > 0:
            problems.append(f"{sidecar.name}: RepetitionTime must be > 0")
        stem = sidecar.name[: -len(".json")]
        kinds = [".nii.gz"] if finished else [".nii.gz", ".nii"]
        if not any((sidecar.parent / (stem + k)).is_file() for k in kinds):
            problems.append(f"{sidecar.name}: no bold file {stem}{kinds[0]}")
    tables = s.rules.tabular_data
    initial = {
        "_events.tsv": tables.events.Events.initial_columns,
        "participants.tsv": tables.modality_agnostic.Participants.initial_columns,
        "_scans.tsv": tables.modality_agnostic.Scans.initial_columns,
    }
    for path in files:
        rel = "/" + path.relative_to(root).as_posix()
        if path.suffix != ".tsv" or _ignored(rel, ignore):
            continue
        header = _header(path)
        for suffix, columns in initial.items():
            if path.name.endswith(suffix) and header[: len(columns)] != list(columns):
                problems.append(f"{rel}: columns {header} must start with {list(columns)}")
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        if any(len(r) != len(header) or "" in r for r in rows[1:]):
            problems.append(f"{rel}: a row has the wrong width or an empty cell (BIDS: n/a)")
    for scans in root.glob("sub-*/ses-*/*_scans.tsv"):
        with open(scans, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                if finished and not (scans.parent / row["filename"]).is_file():
                    problems.append(f"{scans.name}: lists {row['filename']}, which is not there")
    with open(root / "participants.tsv", newline="") as fh:
        listed = {r["participant_id"] for r in csv.DictReader(fh, delimiter="\t")}
    present = {p.name for p in root.glob("sub-*") if p.is_dir()}
    if listed != present:
        problems.append(
            f"participants.tsv lists {sorted(listed)}, the folders are {sorted(present)}"
        )
    return problems
