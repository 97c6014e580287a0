"""``mindeye-rt rerun`` on tiny sessions: the record streamed again gives every trial's top-k,
a changed volume is reported trial by trial, options changed on purpose do not fail; a
scanner session with motion correction reruns too; the records are BIDS."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from realtime import pipeline
from realtime.cli import main
from realtime.record_dataset import RecordDataset
from realtime.rerun import plan_rerun
from rt_base.errors import ConfigError, DatasetError
from tests.conftest import _next_block
from tests.realtime.bids_check import bids_problems
from tests.realtime.test_e2e import _thread_config

DROPPED = 7  # a volume of the first run that never came


@pytest.fixture(scope="module")
def recorded(tiny_dataset, tiny_model, tmp_path_factory):
    """A replay session (stages as threads) in which volume 7 of the first run was lost."""
    root = tmp_path_factory.mktemp("recorded")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINDEYE_RT_HOME", str(root / "home"))
        cfg = dataclasses.replace(
            _thread_config(tiny_dataset, tiny_model, root, _next_block()), subject="t01"
        )
        prep = pipeline.prepare(cfg, log=lambda *a: None)
        prep.specs["source"]["drop_volumes"] = [[tiny_dataset.runs[0], DROPPED]]
        pipeline._run_threads(prep.specs)
    return prep.out


def _rerun(session, out, base_port, *options) -> int:
    argv = ["rerun", str(session), "--out", str(out), "--base-port", str(base_port), "--quiet"]
    return main([*argv, *options])


def _diff(out) -> list[dict]:
    with open(out / "rerun_diff.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_a_rerun_gives_every_trial_its_top_k(
    recorded, tiny_dataset, tmp_path, base_port, data_home, capsys
):
    out = tmp_path / "rerun"
    assert _rerun(recorded, out, base_port) == 0
    rows = _diff(out)
    n_trials = sum(len(tiny_dataset.events(r)) for r in tiny_dataset.runs)
    assert len(rows) == n_trials and {r["status"] for r in rows} == {"same"}
    assert {r["max_score_diff"] for r in rows} == {"0.00000"}
    assert f"{n_trials} of {n_trials} trials with the record's top-k; 0 differ" in (
        capsys.readouterr().out
    )
    original, again = RecordDataset(recorded), RecordDataset(out)
    assert again.runs == original.runs == tiny_dataset.runs
    for run in original.runs:  # the same volumes, the lost one lost again
        np.testing.assert_array_equal(again.load_run(run), original.load_run(run))
    assert again.missing_volumes(tiny_dataset.runs[0]) == [DROPPED]
    assert original.layout.labels == again.layout.labels  # sub-t01, the same session label
    config = json.loads((out / "config.json").read_text())
    assert config["rerun_of"]["session"] == str(recorded) and config["bank_ids"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["volumes_lost"] == 1 and summary["complete"]
    assert bids_problems(recorded) == [] and bids_problems(out) == []


def test_a_changed_volume_is_reported_trial_by_trial(
    recorded, tiny_dataset, tmp_path, base_port, data_home, capsys
):
    copy = tmp_path / "edited"
    shutil.copytree(recorded, copy)
    record = RecordDataset(copy)
    first, second = record.runs
    bold = record.layout.bold_gz(record.numbers[first])
    img = nib.load(bold)
    data = np.asarray(img.dataobj).copy()
    data[..., 4] = data[..., 4][::-1, ::-1, ::-1]  # one volume of the first run, flipped
    nib.save(nib.Nifti1Image(data, img.affine, img.header), bold)
    out = tmp_path / "rerun"
    assert _rerun(copy, out, base_port) == 1  # differences, and no option changed: a failure
    rows = _diff(out)
    changed = [r for r in rows if r["status"] != "same"]
    assert changed and {r["status"] for r in changed} == {"differs"}
    assert {r["run"] for r in changed} == {first}  # the second run is untouched
    assert all(r["status"] == "same" for r in rows if r["run"] == second)
    printed = capsys.readouterr().out
    assert f"{len(rows) - len(changed)} of {len(rows)} trials" in printed
    assert f"{len(changed)} differ" in printed and f"differs       {first} trial" in printed


def test_a_trial_recorded_as_late_is_replayed_late(recorded, tmp_path, base_port, data_home):
    """Where among the volumes a trial came is part of the record (a late marker's trial comes
    after its onset's volume), and the estimate's fits depend on it: a record edited to say
    that trials came one volume later reruns with other scores for the trials decoded then."""
    copy = tmp_path / "edited"
    shutil.copytree(recorded, copy)
    record = RecordDataset(copy)
    second = record.runs[1]
    path = record.layout.events_tsv(record.numbers[second])
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert all(r["before_volume"] not in ("", "n/a") for r in rows)
    for row in rows:  # each trial of the second run now came one volume late
        row["before_volume"] = str(int(row["before_volume"]) + 1)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "rerun"
    _rerun(copy, out, base_port)
    diffs = {(r["run"], r["max_score_diff"]) for r in _diff(out)}
    assert {d for run, d in diffs if run == record.runs[0]} == {"0.00000"}
    assert {d for run, d in diffs if run == second} - {"0.00000"}  # some fits changed


def test_options_changed_on_purpose_are_reported_not_failed(
    recorded, tmp_path, base_port, data_home, capsys
):
    out = tmp_path / "rerun"
    assert _rerun(recorded, out, base_port, "--decode-delay", "5", "--top-k", "3") == 0
    rows = _diff(out)
    assert all(len(r["top_ids_rerun"].split(",")) == 3 for r in rows)
    assert all(r["status"] == "differs" for r in rows)  # top-3 is never the recorded top-5
    assert "options changed on purpose ['decode_delay', 'top_k']" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["decode_delay"] == 5 and config["rerun_of"]["changed"]["top_k"] == 3


def test_a_rerun_refuses_what_it_cannot_do(recorded, tmp_path, data_home):
    with pytest.raises(ConfigError, match="outside the record"):
        plan_rerun(recorded, recorded / "again")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="never writes over a session"):
        plan_rerun(recorded, tmp_path / "busy")
    assert (tmp_path / "busy" / "x").read_text() == "keep me"
    with pytest.raises(ConfigError, match="rerun cannot change \\['replay'\\]"):
        plan_rerun(recorded, tmp_path / "a", replay="other")
    with pytest.raises(ConfigError, match="no config.json"):
        plan_rerun(tmp_path / "busy", tmp_path / "b")
    with pytest.raises(ConfigError, match="'decode_delay' must be"):
        plan_rerun(recorded, tmp_path / "c", decode_delay=-1)
    legacy = tmp_path / "legacy"
    shutil.copytree(recorded, legacy)
    config = json.loads((legacy / "config.json").read_text())
    del config["record_labels"]
    (legacy / "config.json").write_text(json.dumps(config))
    with pytest.raises(DatasetError, match="before session records were BIDS"):
        plan_rerun(legacy, tmp_path / "d")
    plan = plan_rerun(recorded, tmp_path / "e", speed=1)
    assert plan.config.speed == 1 and plan.on_purpose == [] and plan.config.scanner is None


@pytest.mark.slow
def test_a_scanner_session_with_motion_correction_reruns(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    from realtime.scanner_sim import export_session
    from tests.realtime.test_e2e_scanner import _config

    folder = tmp_path / "export"
    export_session(tiny_dataset, folder, fmt="nifti", speed=0, log=lambda *a: None)
    cfg = _config(
        tiny_dataset, tiny_model, tmp_path / "s", base_port, scanner=str(folder), motion="correct"
    )
    s = pipeline.run_stream(cfg, log=lambda *a: None)
    assert s["complete"] and s["input"] == "scanner" and s["motion"]
    assert bids_problems(tmp_path / "s") == []
    assert _rerun(tmp_path / "s", tmp_path / "rerun", _next_block()) == 0
    rows = _diff(tmp_path / "rerun")
    assert {r["status"] for r in rows} == {"same"} and {r["max_score_diff"] for r in rows} == {
        "0.00000"
    }
    again = json.loads((tmp_path / "rerun" / "summary.json").read_text())
    assert again["motion"]["runs"] == s["motion"]["runs"]  # the same motion estimates


@pytest.mark.slow
def test_a_session_with_lsl_markers_reruns_without_the_stimulus_program(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home
):
    """stim-sim paced at 8x over LSL: the onsets used are the markers' (timed by their clock);
    the rerun reads them from the record's events and gives every trial its top-k."""
    import uuid

    pytest.importorskip("pylsl")
    from tests.realtime.test_stim_sim_e2e import SPEED, _session_with_stim_sim

    cfg = _thread_config(tiny_dataset, tiny_model, tmp_path, base_port)
    summary, sim, _ = _session_with_stim_sim(cfg, tiny_dataset, SPEED, uuid.uuid4().hex[:8])
    assert summary["complete"] and summary["trials"] == len(sim.sent) > 0
    record = RecordDataset(tmp_path / "s")
    onsets = [e.onset for run in record.runs for e in record.events(run)]
    assert len(onsets) == len(sim.sent)
    assert _rerun(tmp_path / "s", tmp_path / "rerun", _next_block()) == 0
    rows = _diff(tmp_path / "rerun")
    assert len(rows) == len(sim.sent) and {r["status"] for r in rows} == {"same"}
