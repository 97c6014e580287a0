"""A restarted recorder (incarnation > 0) picks up its record: killed after any message, sent
again everything from the start of an unreleased run, it ends with the same files as a recorder
that was never killed, apart from the timing columns (issue 11 item 4)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from realtime.stages.recorder import RecorderStage
from rt_wire.message import Message

V = 6
T0 = time.time()  # recent: the recorder would warn that it is far behind
RUNS = ("run-01", "run-02")


def _run(run: str, r: int) -> list[Message]:
    """run_start, 4 TRs (motion; one bad), 2 trials with response, retrieval and recon, a gap,
    run_end."""
    meta = {"tr": 1.5, "n_volumes": 5, "n_trials": 2, "dataset": "tiny"}
    msgs = [Message("run_start", run=run, meta=meta)]
    for k in range(4):
        m = {"motion": {"params": [0.01 * k, 0, 0, 0, 0, 0.1 * r], "fd": 0.02 * k}}
        if k == 2:
            m["bad_volume"] = {"reasons": ["spike"], "details": {"z": 9.5}}
        t = {"source.acquired": T0 + 1.5 * k}
        raw = np.full(V, 10 * r + k, "f4")
        msgs.append(Message("tr", run=run, index=k, meta=m, t=t, buffers={"raw": raw}))
        if k == 1:
            msgs.append(Message("gap", run=run, meta={"stage": "preprocess", "lost_volumes": [4]}))
    for i in range(2):
        event = {"onset": 3.0 * i, "duration": 3.0, "image_id": 40 + i + r, "split": "test"}
        t = {"source.acquired": T0 + 3 * i, "decode.done": T0 + 3 * i + 0.25}
        msgs.append(Message("trial", run=run, index=i, meta=event))
        resp = np.arange(V, dtype="f4") + r + i
        msgs.append(Message("response", run=run, index=i, buffers={"response": resp}))
        buffers = {
            "ids": np.array([7, 40 + i + r], np.int64),
            "scores": np.array([0.5, 0.25], np.float32),
            "embedding": np.full((2, 3), i + r, np.float32),
        }
        meta = {**event, "rank": 2, "ways": 10}
        msgs.append(Message("retrieval", run=run, index=i, meta=meta, t=t, buffers=buffers))
        image = np.full((4, 4, 3), 30 * i + r, np.uint8)
        recon_meta = {**meta, "mode": "lowlevel", "compute_ms": 1.5, "backlog": 0}
        t = {**t, "reconstruct.done": T0 + 3 * i + 0.5}
        recon = Message("recon", run=run, index=i, meta=recon_meta, t=t, buffers={"image": image})
        msgs.append(recon)
    msgs.append(Message("run_end", run=run, meta={"n_volumes": 5}))
    return msgs


def _session() -> list[Message]:
    return [m for r, run in enumerate(RUNS) for m in _run(run, r)]


def _recorder(out, incarnation: int = 0) -> RecorderStage:
    return RecorderStage(out, print_trials=False, incarnation=incarnation)


def _feed(rec: RecorderStage, msgs: list[Message]) -> None:
    for msg in msgs:
        rec.handle(msg)


def _files(out) -> dict[str, bytes]:
    files = {}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if path.is_file() and name != "recorder.json":
            files[name] = path.read_bytes()
    return files


def _without_timing(name: str, data: bytes):
    """A file's content less its timestamps (when the recorder wrote a row)."""
    if name.endswith((".f32", ".npy", ".png")):
        return data
    lines = data.decode().splitlines()
    if name.endswith("_scans.tsv"):  # acq_time: when the run's first message came
        return [line.split("\t")[::2] for line in lines]
    if name.endswith("_tr.tsv"):  # acquired (the same here) and recorded
        return [line.split("\t")[:2] for line in lines]
    if name == "gaps.jsonl":
        return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]
    if name.endswith("_info.json"):
        return {k: v for k, v in json.loads(data).items() if k not in ("started", "ended")}
    return data


def _summary(out) -> dict:
    info = json.loads((out / "recorder.json").read_text())
    runs = {
        name: {k: v for k, v in r.items() if k not in ("started", "ended")}
        for name, r in info["runs"].items()
    }
    keys = ("trials", "retrievals", "reconstructions", "volumes_received", "volumes_expected")
    gaps = [{k: v for k, v in g.items() if k != "time"} for g in info["gaps"]]
    return {"runs": runs, "gaps": gaps, **{k: info[k] for k in keys}}


@pytest.fixture(scope="module")
def unkilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("unkilled")
    rec = _recorder(out)
    _feed(rec, _session())
    rec.finish()
    return out


def _compare(out, reference) -> None:
    got, want = _files(out), _files(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        assert _without_timing(name, got[name]) == _without_timing(name, want[name]), name
    assert _summary(out) == _summary(reference)


def _resend_from(msgs: list[Message], killed_after: int, back: int) -> int:
    """Where the upstream's resend starts: the run_start of the run of message
    ``killed_after``, or ``back`` runs before it (its run_end handled, not yet released)."""
    starts = [i for i, m in enumerate(msgs[: killed_after + 1]) if m.kind == "run_start"]
    return starts[max(0, len(starts) - 1 - back)]


@pytest.mark.parametrize("back", [0, 1])
def test_a_recorder_killed_after_any_message_ends_with_the_same_record(tmp_path, unkilled, back):
    msgs = _session()
    for killed_after in range(len(msgs)):
        out = tmp_path / f"k{killed_after}"
        _feed(_recorder(out), msgs[: killed_after + 1])  # then killed: no finish()
        again = _recorder(out, incarnation=1)
        _feed(again, msgs[_resend_from(msgs, killed_after, back) :])
        again.finish()
        _compare(out, unkilled)


def test_a_message_written_in_part_is_completed_once(tmp_path, unkilled):
    """Killed between two writes of a message: a raw row without its _tr.tsv line, and lines cut
    in the middle; the restarted recorder cuts them off and writes them whole, once."""
    msgs = _session()
    second_run = next(i for i, m in enumerate(msgs) if m.kind == "run_start" and m.run == RUNS[1])
    third_tr = next(
        i for i, m in enumerate(msgs) if m.kind == "tr" and m.run == RUNS[1] and m.index == 2
    )
    _feed(_recorder(tmp_path), msgs[:third_tr])
    with open(tmp_path / "runs" / f"{RUNS[1]}_raw.f32", "ab") as fh:  # its raw row only
        fh.write(np.full(V, 99, "f4").tobytes())
    for name in ("retrievals.tsv", "timing.jsonl", "events.tsv"):
        with open(tmp_path / name, "a") as fh:
            fh.write("cut in the mid")
    again = _recorder(tmp_path, incarnation=2)
    assert again.status()["volumes_received"] == 4 + 2 and again.n_retrievals == 2
    _feed(again, msgs[second_run:])
    again.finish()
    _compare(tmp_path, unkilled)
    raw = np.fromfile(tmp_path / "runs" / f"{RUNS[1]}_raw.f32", np.float32).reshape(-1, V)
    np.testing.assert_array_equal(raw[:, 0], [10, 11, 12, 13])


def test_a_first_recorder_process_does_not_read_an_old_record(tmp_path):
    """Incarnation 0 is a new session: nothing is taken from the folder (counts start at 0)."""
    msgs = _session()
    _feed(_recorder(tmp_path), msgs)
    fresh = _recorder(tmp_path / "new")
    assert fresh.status()["volumes_received"] == 0 and fresh.n_retrievals == 0
    resumed = _recorder(tmp_path, incarnation=1)
    assert resumed.status()["volumes_received"] == 8 and resumed.n_trials == 4
    assert resumed.n_recons == 4 and len(resumed.gaps) == 2


def test_a_runs_files_are_closed_at_its_end(tmp_path):
    """A long session (thousands of runs in a soak) keeps no file of an ended run open."""
    rec = _recorder(tmp_path)
    msgs = _session()
    _feed(rec, msgs[:-1])  # all but the last run_end
    open_files = sorted(str(k) for k in [*rec._files, *rec.bids._files])
    assert not [f for f in open_files if RUNS[0] in f or "run-1_" in f], open_files
    assert any(RUNS[1] in f for f in open_files)
    _feed(rec, msgs[-1:])
    open_files = sorted(str(k) for k in [*rec._files, *rec.bids._files])
    assert not [f for f in open_files if "run" in f.rsplit("/", 1)[-1]], open_files


def test_the_last_run_on_record_whole_survives_a_restart(tmp_path):
    """What the recorder's acks say it released: a restarted source never resumes before it."""
    msgs = _session()
    second_end = next(i for i, m in enumerate(msgs) if m.kind == "run_end" and m.run == RUNS[1])
    rec = _recorder(tmp_path)
    _feed(rec, msgs[:second_end])
    assert rec.last_complete_run() == RUNS[0]
    _feed(rec, msgs[second_end:])
    assert rec.last_complete_run() == RUNS[1]
    assert _recorder(tmp_path, incarnation=1).last_complete_run() == RUNS[1]  # from its files


def test_a_file_created_without_its_header_gets_it(tmp_path, unkilled):
    """Killed between creating a table and writing its header: the next process writes it."""
    msgs = _session()
    first_tr = next(i for i, m in enumerate(msgs) if m.kind == "tr")
    _feed(_recorder(tmp_path), msgs[:first_tr])  # run_start: the run's tables are open
    for name in ("runs/run-01_tr.tsv", "retrievals.tsv", "events.tsv"):
        (tmp_path / name).write_text("")  # as left by a kill between open and header
    again = _recorder(tmp_path, incarnation=1)
    _feed(again, msgs)
    again.finish()
    _compare(tmp_path, unkilled)
    _recorder(tmp_path, incarnation=2)  # reads its files back (it raised KeyError: 'index')
