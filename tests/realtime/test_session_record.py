"""The session record without a pipeline: names and labels, the volumes written after they are
sent (holes, compression, what a crash leaves), the recorder's BIDS tables, BIDS validity, and
the record read back as a replay dataset."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from realtime.record_dataset import RecordDataset, is_record
from realtime.session_layout import (
    RecordLabels,
    RunNumbers,
    SessionLayout,
    check_label,
    label_from,
    session_labels,
)
from realtime.stages.recorder import RecorderStage
from realtime.volume_record import VolumeRecord
from replay_data.dataset_format import DatasetMeta
from rt_base.errors import ConfigError
from rt_wire.message import Message
from tests.realtime.bids_check import bids_problems

SHAPE = (4, 5, 3)
AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])
AFFINE[:3, 3] = [-3.1, -4.2, -2.3]
TR = 1.5
LABELS = RecordLabels("s01", "a")


def _vol(k: int) -> np.ndarray:
    return (k + 1 + np.arange(np.prod(SHAPE)).reshape(SHAPE) / 100).astype(np.float32)


def _run(name: str, indices, n_volumes: int, trials=()) -> list[Message]:
    meta = {"tr": TR, "n_volumes": n_volumes, "shape": list(SHAPE), "affine": AFFINE.tolist()}
    msgs = [Message("run_start", run=name, meta={**meta, "input": "replay", "dataset": "toy"})]
    for k, onset, image in trials:
        event = {"onset": onset, "duration": 3.0, "image_id": image, "repetition": 1}
        event["before_volume"] = int(np.ceil(onset / TR))  # sent before the volume after it
        msgs.append(Message("trial", run=name, index=k, meta={**event, "split": "test"}))
    for k in indices:
        msgs.append(Message("volume", run=name, index=k, buffers={"volume": _vol(k)}))
    return [*msgs, Message("run_end", run=name, meta={"n_volumes": n_volumes})]


def test_labels_are_checked_and_defaults_made_from_the_dataset():
    assert check_label("sub01A", "subject") == "sub01A"
    for bad in ("sub-01", "a_b", "", " 1", None, 3):
        with pytest.raises(ConfigError, match="letters and digits only"):
            check_label(bad, "subject")
    assert label_from("subj-01_moving") == "subj01moving" and label_from("--") == "01"
    from datetime import datetime

    labels = session_labels(None, None, "subj01", when=datetime(2025, 3, 14, 9, 30))
    assert labels == RecordLabels("subj01", "20250314T0930", "mindeye")
    assert session_labels("7", "b", "subj01").to_dict() == {
        "subject": "7",
        "session": "b",
        "task": "mindeye",
    }
    with pytest.raises(ConfigError, match="unknown"):
        RecordLabels.from_dict({"subject": "1", "session": "1", "acq": "x"})


def test_stream_options_subject_and_session_are_checked():
    from realtime.config import StreamConfig

    assert StreamConfig(subject="07", session="pilot").subject == "07"
    with pytest.raises(ConfigError, match="'session' must be a BIDS label"):
        StreamConfig(session="2025-03-14")


def test_run_numbers_keep_run_nn_and_number_the_others_after_the_highest():
    numbers = RunNumbers()
    got = [numbers.number(n) for n in ("run-02", "series-005", "run-03", "run-02", "run-1", "x")]
    assert got == [2, 3, 4, 2, 1, 5]


def test_volumes_are_written_after_they_are_sent_holes_as_zeros(tmp_path):
    record = VolumeRecord(tmp_path, LABELS)
    layout = record.layout
    msgs = [*_run("run-01", [0, 1, 3], n_volumes=5), Message("end")]
    frames_when_sent = []
    for msg in record.tap(iter(msgs)):
        if msg.kind == "volume":  # the consumer has it before it is on disk
            frames_when_sent.append(nib.load(layout.bold_nii(1)).shape[3] if msg.index else 0)
        if msg.kind == "run_end":  # volume 3 is on record, and the hole before it at once
            sidecar = json.loads(layout.bold_json(1).read_text())
            assert sidecar["MindEyeRT"]["missing_volumes"] == [2]
        if msg.kind == "end":  # end waits for the compression
            assert layout.bold_gz(1).is_file() and not layout.bold_nii(1).exists()
    assert frames_when_sent == [0, 1, 2]
    img = nib.load(layout.bold_gz(1))
    data = np.asarray(img.dataobj)
    assert data.shape == (*SHAPE, 5) and data.dtype == np.float32
    for k in (0, 1, 3):
        np.testing.assert_array_equal(data[..., k], _vol(k))
    assert not data[..., 2].any() and not data[..., 4].any()  # never came: zeros
    sidecar = json.loads(layout.bold_json(1).read_text())
    assert sidecar["RepetitionTime"] == TR and sidecar["TaskName"]
    assert sidecar["MindEyeRT"]["missing_volumes"] == [2, 4]
    assert sidecar["MindEyeRT"]["run"] == "run-01" and sidecar["MindEyeRT"]["source"] == "replay"
    assert sidecar["MindEyeRT"]["affine"] == AFFINE.tolist()  # exact, unlike the header
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-6)
    assert img.header.get_zooms()[3] == pytest.approx(TR)


def test_a_source_stopped_mid_run_leaves_a_readable_nii(tmp_path):
    record = VolumeRecord(tmp_path, LABELS)
    stream = record.tap(iter(_run("run-01", range(6), n_volumes=6)))
    for msg in stream:
        if msg.kind == "volume" and msg.index == 3:
            break
    stream.close()  # the generator ends as a stopped source's does
    img = nib.load(record.layout.bold_nii(1))
    assert img.shape == (*SHAPE, 3)  # volume 3 was sent, never taken: 0, 1, 2 are on record
    assert record.layout.bold_file(1) == record.layout.bold_nii(1)
    assert not record.layout.bold_gz(1).exists()


def test_a_failed_write_is_reported_and_the_stream_goes_on(tmp_path):
    notices = []
    record = VolumeRecord(tmp_path, LABELS, notice=lambda level, text: notices.append(level))
    msgs = _run("run-01", [0, 1], n_volumes=2)
    msgs[1].buffers["volume"] = np.zeros((2, 2, 2), np.float32)  # not the run's grid
    out = list(record.tap(iter(msgs)))
    assert [m.kind for m in out] == [m.kind for m in msgs]
    assert notices and notices[0] == "error" and "volume" in record.failures[0]


def _recorded_session(root, design_name="toy"):
    """Two runs through a VolumeRecord (the source's side) and a recorder (the rest)."""
    trials = [(0, 1.5, 3), (1, 4.5, 7)]
    msgs = [
        *_run("run-02", range(4), 4, trials),
        *_run("series-009", [0, 2], 3, [(0, 0.0, 5)]),
        Message("end"),
    ]
    record = VolumeRecord(root, LABELS)
    recorder = RecorderStage(root, print_trials=False, record_labels=LABELS.to_dict())
    for msg in record.tap(iter(msgs)):
        if msg.kind == "volume":  # the recorder gets the masked TR, with its motion
            motion = {"params": [0.1 * msg.index] * 6, "fd": 0.2}
            meta = {"motion": motion}
            msg = Message(
                "tr", run=msg.run, index=msg.index, meta=meta, buffers={"raw": np.ones(3)}
            )
        if msg.kind == "end":
            recorder.finish()
        else:
            recorder.handle(msg)
    config = {"dataset": "unused", "record_labels": LABELS.to_dict(), "config": {}}
    (root / "config.json").write_text(json.dumps(config))
    return SessionLayout(root, LABELS)


def test_the_record_is_bids_valid(tmp_path):
    layout = _recorded_session(tmp_path)
    assert bids_problems(tmp_path) == []
    assert layout.recorded_runs() == {"run-02": 2, "series-009": 3}
    motion = layout.motion_tsv(3).read_text().splitlines()
    assert motion[0].split("\t")[-1] == "framewise_displacement"
    assert motion[2].split("\t") == ["n/a"] * 7  # volume 1 never came
    events = layout.events_tsv(2).read_text().splitlines()
    assert events == [
        "onset\tduration\ttrial_type\timage_id\trepetition\tsplit\ttrial\tbefore_volume",
        "1.5\t3.0\timage\t3\t1\ttest\t0\t1",
        "4.5\t3.0\timage\t7\t1\ttest\t1\t3",
    ]
    description = json.loads(layout.dataset_description.read_text())
    assert description["Name"].endswith("toy") and description["DatasetType"] == "raw"


def test_the_check_finds_what_breaks_bids(tmp_path):
    layout = _recorded_session(tmp_path)
    (tmp_path / "notes.txt").write_text("x")  # not BIDS, not in .bidsignore
    sidecar = json.loads(layout.bold_json(2).read_text())
    del sidecar["TaskName"]
    layout.bold_json(2).write_text(json.dumps(sidecar))
    layout.events_tsv(3).write_text("image_id\tonset\tduration\n5\t0.0\t3.0\n")
    problems = bids_problems(tmp_path)
    assert any("notes.txt" in p for p in problems)
    assert any("no TaskName" in p for p in problems)
    assert any("must start with ['onset', 'duration']" in p for p in problems)


class _Design:
    """The part of a replay dataset a record borrows."""

    def __init__(self, root):
        self.root = root
        self.affine = np.eye(4)
        self.meta = DatasetMeta("toy", "s01", 9.9, 2.0, SHAPE, 10, True, ["run-01"])


def test_a_record_opens_as_a_replay_dataset(tmp_path):
    layout = _recorded_session(tmp_path)
    assert is_record(tmp_path) and not is_record(tmp_path / "sub-s01")
    ds = RecordDataset(tmp_path, design=_Design(tmp_path / "design"))
    assert ds.runs == ["run-02", "series-009"] and ds.meta.tr == TR
    assert ds.root == tmp_path / "design" and ds.meta.name == "toy"
    np.testing.assert_array_equal(ds.affine, AFFINE)  # exactly as the session had it
    data = ds.load_run("run-02")
    assert data.shape == (*SHAPE, 4) and data.dtype == np.float32 and data.flags.f_contiguous
    np.testing.assert_array_equal(data[..., 3], _vol(3))
    assert ds.missing_volumes("series-009") == [1] and ds.missing_volumes("run-02") == []
    events = ds.events("run-02")
    assert [(e.trial, e.onset, e.image_id, e.split, e.before_volume) for e in events] == [
        (0, 1.5, 3, "test", 1),
        (1, 4.5, 7, "test", 3),
    ]
    path = layout.events_tsv(2)
    lines = path.read_text().splitlines()  # a record from before the column: sent by onset
    path.write_text("\n".join(line.rsplit("\t", 1)[0] for line in lines) + "\n")
    assert [e.before_volume for e in ds.events("run-02")] == [None, None]
