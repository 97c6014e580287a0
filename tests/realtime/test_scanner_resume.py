"""A restarted scanner source (issue 11 item 4): it reads its export folder again from the start
and sends only what comes after the last run its downstream released; a first start sends all.

Here the downstream's answer (``Recovery.resume_point``) is given; the kill -9 of a scanner
source in a whole session is in tests/realtime/test_e2e_restarts.py.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from realtime.export_folder import ExportFolder
from realtime.stages.scanner_runs import skip_released
from realtime.stages.scanner_source import ScannerSource
from replay_data.scanner_export import export_volume
from replay_data.scanner_files import volume_file_name
from rt_wire.message import Message

SHAPE = (8, 8, 6)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
N = 4  # volumes a series


def _export(folder, series: tuple[int, ...]) -> None:
    for s in series:
        for index in range(1, N + 1):
            data = np.full(SHAPE, 100 * s + index, np.float32)
            export_volume(
                folder / volume_file_name("nifti", s, index), data, AFFINE, fmt="nifti",
                series=s, index=index, tr=1.0, acquisition_time=36000.0 + index,
            )  # fmt: skip


def _stream(folder, released: str | None, **options) -> tuple[list[Message], ScannerSource]:
    """Everything a scanner source sends from ``folder`` when its downstream says it released
    run ``released`` (None: a first start)."""
    spec = {"folder": str(folder), "settle_s": 0.01, "run_volumes": N, "idle_timeout_s": 0.5}
    source = ScannerSource.from_spec({**spec, **options})
    source.recovery.resume_point = lambda stopped, pub, runs=None: released
    return list(source.produce()), source


def _runs(msgs) -> list[tuple[str, str | None, int | None]]:
    return [(m.kind, m.run, m.index) for m in msgs if m.kind in ("run_start", "run_end", "end")]


def _volumes(msgs) -> list[tuple[str, int, float]]:
    return [
        (m.run, m.index, float(m.buffers["volume"][0, 0, 0])) for m in msgs if m.kind == "volume"
    ]


def test_a_restarted_scanner_source_sends_only_the_runs_after_the_released_one(tmp_path):
    _export(tmp_path, (3, 5, 8))
    first, _ = _stream(tmp_path, None)
    assert [r for k, r, _ in _runs(first) if k == "run_start"] == [
        "series-003",
        "series-005",
        "series-008",
    ]
    again, source = _stream(tmp_path, "series-005")
    assert _runs(again) == [
        ("run_start", "series-008", None),
        ("run_end", "series-008", None),
        ("end", None, None),
    ]
    assert _volumes(again) == [v for v in _volumes(first) if v[0] == "series-008"]
    assert [v[2] for v in _volumes(again)] == [801, 802, 803, 804]  # series 8's files
    assert again[-1].meta["runs"] == first[-1].meta["runs"]  # every run of the session
    assert source.counts["runs_skipped"] == 2 and source.counts["volumes_skipped"] == 2 * N


def test_the_design_names_the_runs_again_in_order(tmp_path, tiny_dataset):
    """With a design, the folder's runs take the design's run names in order, as before."""
    shape = tuple(tiny_dataset.meta.shape)
    runs = list(tiny_dataset.runs)
    for s, run in zip((2, 4), runs, strict=False):
        data = tiny_dataset.load_run(run)
        for k in range(3):
            export_volume(
                tmp_path / volume_file_name("nifti", s, k + 1), data[..., k],
                tiny_dataset.affine, fmt="nifti", series=s, index=k + 1,
                tr=float(tiny_dataset.meta.tr), acquisition_time=36000.0 + k,
            )  # fmt: skip
    assert data.shape[:3] == shape
    options = {"dataset": str(tiny_dataset.root), "runs": runs[:2], "run_volumes": 3}
    again, _ = _stream(tmp_path, runs[0], **options)
    starts = [m for m in again if m.kind == "run_start"]
    assert [m.run for m in starts] == [runs[1]] and starts[0].meta["series"] == 4
    assert [m.index for m in again if m.kind == "volume"] == [0, 1, 2]


def test_a_released_run_the_folder_does_not_have_sends_nothing_again_but_the_end():
    msgs = [Message("run_start", run="a"), Message("volume", run="a", index=0)]
    msgs += [Message("run_end", run="a"), Message("end")]
    counts: dict = {}
    assert [m.kind for m in skip_released(iter(msgs), "b", counts)] == ["end"]
    assert counts == {"volumes_skipped": 1, "runs_skipped": 1}


@pytest.mark.parametrize("released", ["a", "b"])
def test_the_messages_after_the_released_run_pass_in_order(released):
    msgs = []
    for run in ("a", "b", "c"):
        msgs += [Message("run_start", run=run), Message("volume", run=run, index=0)]
        msgs += [Message("trial", run=run, index=0), Message("run_end", run=run)]
    msgs.append(Message("end"))
    after = msgs[
        msgs.index(next(m for m in msgs if m.kind == "run_end" and m.run == released)) + 1 :
    ]
    assert list(skip_released(iter(msgs), released, {})) == after


@pytest.mark.parametrize("poll", [False, True])
def test_the_files_already_there_are_read_at_the_first_look_in_order(tmp_path, poll):
    """A source started (or restarted) while the console writes: the finished series already in
    the folder are read at the first look, with a newer file closed meanwhile, so the runs start
    in series order (else the newer series started first and the older one was ignored)."""
    _export(tmp_path, (5,))
    old = time.time() - 60
    for path in tmp_path.iterdir():
        os.utime(path, (old, old))
    folder = ExportFolder(tmp_path, poll=poll, poll_interval_s=0.02, settle_s=0.5).start()
    try:
        _export(tmp_path, (6,))  # the console goes on: closed (inotify) while the others settle
        time.sleep(0.1)
        report = folder.check()
    finally:
        folder.stop()
    series = sorted((int(v.series), int(v.index)) for v, _, _ in report.volumes)
    assert series[:N] == [(5, k) for k in range(1, N + 1)]
