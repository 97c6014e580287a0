"""The recorder's handler, called with messages directly: what a session folder holds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from realtime.stages.recorder import RETRIEVAL_COLUMNS, RecorderStage
from rt_base.errors import MessageError
from rt_wire.message import Message

V = 5
T0 = 1_700_000_000.0


def _session() -> list[Message]:
    """One run of 3 TRs (values 0, 1, 2), one trial with its response and retrieval, a gap."""
    run = "run-01"
    msgs = [Message("run_start", run=run, meta={"tr": 1.5, "n_volumes": 4, "n_trials": 1})]
    event = {"onset": 1.5, "duration": 3.0, "image_id": 42, "repetition": 1, "split": "test"}
    msgs.append(Message("trial", run=run, index=0, meta=event))
    for k in range(3):
        t = {"source.acquired": T0 + 1.5 * k}
        msgs.append(Message("tr", run=run, index=k, t=t, buffers={"raw": np.full(V, k, "f4")}))
    msgs.append(Message("gap", run=run, meta={"stage": "preprocess", "lost_volumes": [3]}))
    msgs.append(
        Message("response", run=run, index=0, buffers={"response": np.arange(V, dtype="f4")})
    )
    msgs.append(
        Message(
            "retrieval",
            run=run,
            index=0,
            meta={**event, "rank": 2, "ways": 10, "truncated": False},
            t={"source.acquired": T0 + 3.0, "decode.done": T0 + 3.25},
            buffers={
                "ids": np.array([7, 42], np.int64),
                "scores": np.array([0.5, 0.25], np.float32),
                "embedding": np.ones((2, 3), np.float32),
            },
        )
    )
    msgs.append(Message("run_end", run=run, meta={"n_volumes": 4}))
    return msgs


def _record(tmp_path, msgs: list[Message]) -> RecorderStage:
    rec = RecorderStage.from_spec({"out_dir": str(tmp_path), "print_trials": False})
    for msg in msgs:
        assert list(rec.handle(msg)) == []  # a sink sends nothing on
    return rec


def test_a_session_is_written_incrementally(tmp_path):
    rec = _record(tmp_path, _session())
    # before the end: every row is already on disk
    raw = np.fromfile(tmp_path / "runs" / "run-01_raw.f32", np.float32).reshape(-1, V)
    np.testing.assert_array_equal(raw, np.repeat(np.arange(3.0), V).reshape(3, V))
    tr_rows = (tmp_path / "runs" / "run-01_tr.tsv").read_text().splitlines()
    assert tr_rows[0] == "index\tacquired\trecorded" and len(tr_rows) == 4
    events = (tmp_path / "events.tsv").read_text().splitlines()
    assert events[1].split("\t") == ["run-01", "0", "1.5", "3.0", "42", "1", "test"]
    trials = tmp_path / "trials"
    np.testing.assert_array_equal(np.load(trials / "0001_response.npy"), np.arange(V))
    assert np.load(trials / "0001_embedding.npy").shape == (2, 3)
    with open(tmp_path / "retrievals.tsv", newline="") as fh:
        (row,) = list(csv.DictReader(fh, delimiter="\t"))
    assert list(row) == RETRIEVAL_COLUMNS
    assert (row["n"], row["image_id"], row["top1"], row["rank"]) == ("1", "42", "7", "2")
    assert row["top_ids"] == "7,42" and float(row["latency_ms"]) == pytest.approx(250, abs=0.1)
    gaps = [json.loads(x) for x in (tmp_path / "gaps.jsonl").read_text().splitlines()]
    assert gaps[0]["lost_volumes"] == [3] and gaps[0]["run"] == "run-01"
    timing = [json.loads(x)["kind"] for x in (tmp_path / "timing.jsonl").read_text().splitlines()]
    assert timing == ["tr", "tr", "tr", "retrieval"]
    assert rec.status()["volumes_received"] == 3 and rec.status()["trials"] == 1

    assert list(rec.finish()) == []
    info = json.loads((tmp_path / "recorder.json").read_text())
    assert info["volumes_received"] == 3 and info["volumes_expected"] == 4
    assert info["runs"]["run-01"]["n_voxels"] == V and info["trials"] == 1
    assert info["retrievals"] == 1 and len(info["gaps"]) == 1
    assert not list(tmp_path.rglob("*.partial*"))


def test_an_operators_stop_counts_the_volumes_sent(tmp_path):
    msgs = _session()
    msgs[-1] = Message("run_end", run="run-01", meta={"stopped": True, "n_volumes_sent": 3})
    rec = _record(tmp_path, msgs)
    rec.finish()
    info = json.loads((tmp_path / "recorder.json").read_text())
    assert info["volumes_expected"] == 3 and info["runs"]["run-01"]["stopped"] is True


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (Message("tr", run="run-09", index=0, buffers={"raw": np.zeros(V, "f4")}), "before the"),
        (Message("tr", run="run-01", index=5), "no 'raw' buffer"),
        (Message("trial", run="run-01", index=3, meta={"onset": 1.0}), "no \\['duration'"),
        (Message("retrieval", run="run-01", index=0, buffers={}), "no 'embedding' buffer"),
        (Message("response", run="run-01", index=0), "no 'response' buffer"),
    ],
)
def test_bad_messages_are_refused_and_write_nothing(tmp_path, msg, match):
    rec = _record(tmp_path, _session()[:1])
    before = {p: p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(MessageError, match=match):
        rec.handle(msg)
    after = {p: p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert rec.n_retrievals == 0
    rec.handle(_session()[-2])  # the next good trial is still trial 1
    assert (tmp_path / "trials" / "0001_embedding.npy").exists()


@pytest.mark.parametrize("run", ["../escape", "/etc/x", ".hidden", "a b", "r" * 65, ""])
def test_a_run_name_that_is_not_a_safe_file_name_is_refused(tmp_path, run):
    rec = _record(tmp_path / "session", [])
    msg = Message("run_start", run=run, meta={"tr": 1.5, "n_volumes": 4, "n_trials": 1})
    with pytest.raises(MessageError, match="a run name must be"):
        rec.handle(msg)
    outside = [p for p in tmp_path.rglob("*") if "session" not in p.parts]
    assert outside == [] and rec.runs == {}
