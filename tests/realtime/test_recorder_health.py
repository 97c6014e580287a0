"""A full, failing or slow disk under the recorder: reported, counted, and decoding goes on."""

from __future__ import annotations

import errno
import json

import numpy as np

from realtime.stages import recorder as recorder_module
from realtime.stages.recorder import RecorderStage
from realtime.stages.recorder_health import RecorderHealth, describe_write_error
from rt_wire.message import Message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _msg(kind="retrieval", index=0, t=None) -> Message:
    return Message(kind, run="run-01", index=index, t=t or {})


def test_a_failure_is_reported_once_and_its_end_counted():
    reports: list[tuple[str, str]] = []
    clock = Clock()
    health = RecorderHealth(lambda *r: reports.append(r), clock=clock)
    full = OSError(errno.ENOSPC, "No space left on device", "/data/s/trials/0003.npy")
    health.failed(_msg(index=3), full)
    assert reports == [("error", reports[0][1])]
    assert "retrieval run-01 #3 on: the disk is full (/data/s/trials/0003.npy)" in reports[0][1]
    for index in (4, 5, 6):
        clock.now += 1
        health.failed(_msg(index=index), full)  # still full: no second report
    assert len(reports) == 1
    health.written(_msg(index=7))
    assert reports[-1][0] == "warning" and "4 message(s) were not recorded" in reports[-1][1]
    assert "after 3 s" in reports[-1][1]
    assert health.status() == {"not_recorded": 4, "write_failures": 1, "max_lag_s": 0.0}


def test_falling_behind_is_warned_about_at_most_every_warn_period():
    reports: list[tuple[str, str]] = []
    clock = Clock()
    health = RecorderHealth(
        lambda *r: reports.append(r), behind_s=2.0, warn_every_s=10.0, clock=clock
    )
    health.written(_msg(t={"decode.done": clock.now - 0.5}))
    assert reports == []
    health.written(_msg(t={"source.acquired": clock.now - 9, "decode.done": clock.now - 3.2}))
    assert len(reports) == 1 and "3.2 s behind" in reports[0][1]
    clock.now += 1
    health.written(_msg(t={"decode.done": clock.now - 4}))
    assert len(reports) == 1  # within the warning period
    assert health.status()["max_lag_s"] == 4.0


def test_errors_are_named_for_an_operator():
    assert describe_write_error(OSError(errno.EROFS, "x")) == "the file system is read-only"
    assert describe_write_error(OSError(errno.EPERM, "Operation not permitted")).startswith(
        "Operation not permitted"
    )


def _retrieval(index: int) -> Message:
    meta = {"image_id": 4, "split": "test", "repetition": 1, "rank": 1, "ways": 3}
    return Message(
        "retrieval",
        run="run-01",
        index=index,
        meta=meta,
        buffers={
            "ids": np.array([4, 2], np.int64),
            "scores": np.array([0.5, 0.2], np.float32),
            "embedding": np.ones((2, 3), np.float32),
        },
    )


def test_a_full_disk_never_stops_the_recorder_and_recording_resumes(tmp_path, monkeypatch):
    rec = RecorderStage(tmp_path / "s", print_trials=False)
    reports: list[tuple[str, str]] = []
    monkeypatch.setattr(rec, "report", lambda *r: reports.append(r))
    rec.health.report = rec.report
    rec.handle(Message("run_start", run="run-01", meta={"tr": 1.5, "n_volumes": 4}))
    real_save = recorder_module.save_npy

    def full(path, array):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(recorder_module, "save_npy", full)
    assert list(rec.handle(_retrieval(0))) == []  # no exception: the stage lives on
    assert rec.status()["not_recorded"] == 1 and reports[0][0] == "error"
    assert "the disk is full" in reports[0][1]
    monkeypatch.setattr(recorder_module, "save_npy", real_save)
    rec.handle(_retrieval(1))
    assert "recording resumed" in reports[-1][1]
    assert (tmp_path / "s" / "trials" / "0002_embedding.npy").exists()
    rec.finish()
    info = json.loads((tmp_path / "s" / "recorder.json").read_text())
    assert info["not_recorded"] == 1 and info["retrievals"] == 2


def _session_config(dataset, model, tmp_path, base_port):
    from tests.realtime.test_e2e import _thread_config

    return _thread_config(dataset, model, tmp_path, base_port)


def test_a_session_whose_disk_fills_decodes_every_trial_and_says_what_is_missing(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home, monkeypatch
):
    from realtime.pipeline import run_stream

    real_save, calls = recorder_module.save_npy, []

    def filling(path, array):  # the disk fills after ten trial files
        calls.append(path)
        if len(calls) > 10:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(path, array)

    monkeypatch.setattr(recorder_module, "save_npy", filling)
    s = run_stream(_session_config(tiny_dataset, tiny_model, tmp_path, base_port), log=print)
    n_events = sum(len(tiny_dataset.events(r)) for r in tiny_dataset.runs)
    info = json.loads((tmp_path / "s" / "recorder.json").read_text())
    assert info["retrievals"] == n_events  # every trial was decoded and reached the recorder
    assert s["not_recorded"] and s["not_recorded"] > 0
    assert s["volumes_lost"] == 0


def test_a_slow_recorder_falls_behind_without_holding_decoding_back(
    tiny_dataset, tiny_model, tmp_path, base_port, data_home, monkeypatch
):
    import time

    from realtime.pipeline import run_stream

    real_on_tr = RecorderStage._on_tr

    def slow_disk(self, msg):
        time.sleep(0.03)
        real_on_tr(self, msg)

    monkeypatch.setattr(RecorderStage, "_on_tr", slow_disk)
    s = run_stream(_session_config(tiny_dataset, tiny_model, tmp_path, base_port), log=print)
    assert s["complete"] and s["volumes_lost"] == 0
    assert s["recorder_max_lag_s"] > 1.0  # it fell behind...
    # ... while each trial was decoded as soon as its volume came (the queue held the rest)
    assert s["end_to_end_ms"]["p95"] < 1e3 * s["recorder_max_lag_s"] / 2, s["end_to_end_ms"]
