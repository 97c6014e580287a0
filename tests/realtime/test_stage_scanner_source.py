"""The scanner source on a live export folder: files written while it watches, in pieces, out
of order, broken, of another series, not volumes at all; inotify and polling; the record."""

from __future__ import annotations

import logging
import threading
import time

import nibabel as nib
import numpy as np
import pytest

from realtime.stages.scanner_source import ScannerSource
from replay_data.scanner_export import export_volume
from replay_data.scanner_files import volume_file_name
from rt_base.errors import ConfigError
from rt_wire.volume import volume_values

SHAPE = (12, 14, 10)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
TR = 1.0


def _vol(k: int, shape=SHAPE) -> np.ndarray:
    return (np.arange(np.prod(shape)).reshape(shape) % 97 + 100 * k).astype(np.float32)


def _write(folder, series, index, fmt="mosaic", shape=SHAPE, pieces=3, pause=0.0):
    path = folder / volume_file_name(fmt, series, index)
    export_volume(
        path, _vol(index - 1, shape), AFFINE, fmt=fmt, series=series, index=index, tr=TR,
        acquisition_time=36000.0 + index, pieces=pieces, pause_s=pause,
    )  # fmt: skip
    return path


class _Running:
    """A scanner source producing on a thread, its messages collected."""

    def __init__(self, folder, **options):
        spec = {"folder": str(folder), "settle_s": 0.02, "gap_wait_s": 0.3, **options}
        self.source = ScannerSource.from_spec(spec)
        self.msgs: list = []
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self):
        for msg in self.source.produce():
            self.msgs.append(msg)

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.msgs):
                return self.msgs
            time.sleep(0.02)
        raise AssertionError(f"timed out; got {[(m.kind, m.run, m.index) for m in self.msgs]}")

    def stop(self):
        self.source.command({"cmd": "stop"})
        self.thread.join(10)
        return self.msgs


def _volumes(msgs, run=None):
    return [m.index for m in msgs if m.kind == "volume" and (run is None or m.run == run)]


def test_files_written_in_pieces_out_of_order_are_sent_in_order(tmp_path):
    live = _Running(tmp_path, run_name="loc", run_volumes=5)
    for index in (1, 3, 2, 4, 5):  # the console finished 3 before 2
        _write(tmp_path, 7, index, pieces=4, pause=0.02)
    msgs = live.wait_for(lambda m: any(x.kind == "run_end" for x in m))
    assert msgs[0].kind == "run_start" and msgs[0].run == "loc" and msgs[0].meta["series"] == 7
    assert _volumes(msgs) == [0, 1, 2, 3, 4]
    for m in msgs:
        if m.kind == "volume":
            np.testing.assert_array_equal(volume_values(m.buffers["volume"], m.meta), _vol(m.index))
            assert m.t["source.acquired"] <= time.time()
    live.stop()


@pytest.mark.parametrize("poll", [False, True])
def test_a_broken_file_is_named_and_its_volume_reported_missing(tmp_path, poll, caplog):
    caplog.set_level(logging.INFO, logger="mindeye_rt.source")
    folder, staging = tmp_path / "export", tmp_path / "staging"
    folder.mkdir(), staging.mkdir()
    live = _Running(folder, run_volumes=4, broken_after_s=0.3, poll=poll, poll_interval_s=0.05)
    _write(folder, 3, 1)
    whole = _write(staging, 3, 2)
    broken = folder / whole.name
    broken.write_bytes(whole.read_bytes()[:-500])  # the console died while writing it
    _write(folder, 3, 3)
    _write(folder, 3, 4)
    msgs = live.wait_for(lambda m: any(x.kind == "run_end" for x in m))
    assert _volumes(msgs) == [0, 2, 3]
    assert msgs[-1].meta["n_volumes"] == 4  # so preprocess reports volume 1 as lost
    src = live.source
    live.wait_for(lambda m: src.counts["files_broken"] == 1 and not src._notices)
    live.stop()
    assert src.counts["volumes_missing"] == 1
    assert f"file {broken.name} stayed incomplete" in caplog.text


def test_other_series_wrong_matrix_and_non_volumes_are_skipped_by_name(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mindeye_rt.source")
    live = _Running(tmp_path, run_volumes=3, gap_wait_s=5.0)
    # without a design the run's grid is its volume 1's, whichever file is read first
    _write(tmp_path, 4, 2, shape=(12, 14, 9))  # wrong matrix: held for volume 1, then ignored
    live.wait_for(lambda m: live.source.early.held)
    (tmp_path / "notes.txt").write_text("not a volume")
    (tmp_path / "junk.dcm").write_bytes(np.random.default_rng(0).bytes(3000))
    _write(tmp_path, 4, 1)
    live.wait_for(lambda m: len(_volumes(m)) == 1 and live.source.counts["files_ignored"] == 1)
    assert live.msgs[0].kind == "run_start" and live.msgs[0].meta["shape"] == list(SHAPE)
    _write(tmp_path, 4, 2)  # the console re-exports it right
    _write(tmp_path, 4, 3)
    msgs = live.wait_for(lambda m: any(x.kind == "run_end" for x in m))
    assert _volumes(msgs) == [0, 1, 2]
    _write(tmp_path, 4, 4)  # a straggler of the ended series
    deadline = time.monotonic() + 10  # its log line, however busy the machine
    while "has ended" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    src = live.source
    live.stop()
    texts = caplog.text
    assert src.counts["files_rejected"] == 2 and "notes.txt" in texts and "junk.dcm" in texts
    assert "not the session's grid" in texts and "has ended" in texts


def test_without_volume_1_the_held_volumes_start_the_run_after_the_gap_wait(tmp_path):
    live = _Running(tmp_path, run_volumes=3)  # gap wait 0.3 s
    _write(tmp_path, 8, 3)
    _write(tmp_path, 8, 2)
    msgs = live.wait_for(lambda m: any(x.kind == "run_end" for x in m))
    assert _volumes(msgs) == [1, 2] and live.source.counts["volumes_missing"] == 1
    assert msgs[0].kind == "run_start" and msgs[0].meta["shape"] == list(SHAPE)
    assert not live.source.early.held
    live.stop()


def test_a_new_series_starts_the_next_run_and_the_session_ends_when_idle(tmp_path):
    live = _Running(tmp_path, idle_timeout_s=0.5)
    for k in (1, 2, 3):
        _write(tmp_path, 5, k, fmt="nifti")
    live.wait_for(lambda m: len(_volumes(m)) == 3)
    for k in (1, 2):
        _write(tmp_path, 6, k, fmt="nifti")
    live.thread.join(15)
    msgs = live.msgs
    kinds = [(m.kind, m.run) for m in msgs if m.kind in ("run_start", "run_end", "end")]
    assert kinds == [
        ("run_start", "series-005"), ("run_end", "series-005"),
        ("run_start", "series-006"), ("run_end", "series-006"), ("end", None),
    ]  # fmt: skip
    assert next(m for m in msgs if m.kind == "run_end").meta["n_volumes"] == 3


def test_received_volumes_are_recorded_as_they_come(tmp_path):
    from realtime.session_layout import RecordLabels, SessionLayout

    folder, record = tmp_path / "export", tmp_path / "session"
    folder.mkdir()
    labels = {"subject": "01", "session": "a"}
    live = _Running(
        folder, run_volumes=3, run_name="run-01", record_dir=str(record), record_labels=labels
    )
    layout = SessionLayout(record, RecordLabels(**labels))
    for k in (1, 2):
        _write(folder, 9, k, fmt="enhanced")
    live.wait_for(lambda m: len(_volumes(m)) == 2)
    time.sleep(0.1)
    img = nib.load(layout.bold_nii(1))  # during the run: the growing .nii
    assert img.shape[3] >= 1
    _write(folder, 9, 3, fmt="enhanced")
    live.wait_for(lambda m: any(x.kind == "run_end" for x in m))
    live.stop()  # the session's end waits for the compression
    assert not layout.bold_nii(1).exists()
    img = nib.load(layout.bold_gz(1))
    assert img.shape == (*SHAPE, 3)
    for k in range(3):
        np.testing.assert_array_equal(np.asarray(img.dataobj)[..., k], _vol(k))
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-4)


def test_control_pause_holds_and_speed_is_refused(tmp_path):
    live = _Running(tmp_path, run_volumes=3)
    assert live.source.command({"cmd": "pause"})["ok"]
    _write(tmp_path, 2, 1)
    _write(tmp_path, 2, 2)
    time.sleep(0.4)
    assert _volumes(live.msgs) == []  # held, not lost
    reply = live.source.command({"cmd": "speed", "value": 2})
    assert not reply["ok"] and "scanner sets the pace" in reply["error"]
    live.source.command({"cmd": "resume"})
    live.wait_for(lambda m: len(_volumes(m)) == 2)
    msgs = live.stop()
    assert msgs[-1].kind == "end" and msgs[-1].meta["stopped"]


def test_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="'scanner' must be an existing folder"):
        ScannerSource(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="design dataset"):
        ScannerSource(str(tmp_path), runs=["run-01"])
    with pytest.raises(ConfigError, match="run_volumes"):
        ScannerSource(str(tmp_path), run_volumes=0)
    with pytest.raises(ConfigError, match="'run' must be"):
        ScannerSource(str(tmp_path), run_name=" ")
    with pytest.raises(ConfigError, match="does not take option"):
        ScannerSource.from_spec({"folder": str(tmp_path), "speed": 2})
