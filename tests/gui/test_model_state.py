"""The session model's state (:mod:`gui.model_state`): argument checks, the dataset, the
receiver's notes, the reset of an optional stage between sessions."""

from __future__ import annotations

import numpy as np
import pytest

from gui.model import SessionModel
from rt_base.errors import ConfigError
from rt_wire.message import Message
from tests.gui.synthetic import (
    FakeClock,
    recon_status,
    synthetic_stream,
    tiny_mask,
    write_tiny_dataset,
)


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="'trace_len' must be an integer >= 1, got 0"):
        SessionModel(trace_len=0)


def test_dataset_gives_roi_outline_slices_and_thumbnails(tmp_path):
    ds = write_tiny_dataset(tmp_path / "ds", n_volumes=12)
    model = SessionModel()
    model.feed_many(synthetic_stream(n_volumes=12, dataset_path=str(ds.root)))
    snap = model.snapshot()
    np.testing.assert_array_equal(snap.roi_mask, tiny_mask())
    x, y, z = snap.slice_pos
    assert snap.roi_mask[x].any() and snap.roi_mask[:, y].any() and snap.roi_mask[:, :, z].any()
    assert snap.stimuli.shape == (8, 16, 16, 3)
    model.feed(
        Message("run_start", seq=0, run="run-01", meta={"dataset_path": str(tmp_path / "nope")})
    )
    assert any("cannot open dataset" in e.text for e in model.snapshot().log)


def test_the_optional_stage_is_forgotten_by_a_new_session_unless_it_still_reports():
    clock = FakeClock()
    model = SessionModel(dataset_loader=None, clock=clock)
    model.feed_many(synthetic_stream(n_volumes=10, recon="lowlevel"))
    assert model.snapshot().recon_stage is not None
    model.feed(recon_status(final=True))  # the session's stages exit
    model.feed(synthetic_stream(n_volumes=10)[0])  # a new session, without a reconstruct stage
    snap = model.snapshot()
    assert snap.recon_stage is None and "reconstruct" not in snap.health and snap.recon is None
    # the next session's reconstruct stage reported just before its source started
    model.feed(recon_status())
    clock.now += 1.0
    model.feed(synthetic_stream(n_volumes=10, recon="lowlevel")[0])
    assert model.snapshot().recon_stage is not None
    # an old session's stage that went silent is forgotten too
    clock.now += 60.0
    model.feed(synthetic_stream(n_volumes=10)[0])
    assert model.snapshot().recon_stage is None


def test_receiver_notes_are_counted_and_a_bad_frame_logged():
    model = SessionModel(dataset_loader=None)
    model.note_skipped(3)
    model.note_skipped(2)
    model.note_bad_frame(ValueError("no header"))
    snap = model.snapshot()
    assert (snap.skipped_volumes, snap.bad_frames) == (5, 1)
    assert snap.log[-1].level == "warning" and "no header" in snap.log[-1].text


def test_a_dataset_is_loaded_once_and_a_failing_one_tried_once():
    calls = []

    class Dataset:
        def roi_mask(self):
            return tiny_mask()

        def stimuli(self):
            return np.zeros((2, 4, 4, 3), np.uint8)

    def loader(path: str):
        calls.append(path)
        if path == "bad":
            raise OSError("gone")
        return Dataset()

    model = SessionModel(dataset_loader=loader)
    for path in ("good", "good", "bad", "bad"):
        model.set_dataset(path)
    assert calls == ["good", "bad"]
    snap = model.snapshot()
    assert snap.session.dataset_path == "bad" and snap.stimuli.shape == (2, 4, 4, 3)
    assert [e.text for e in snap.log] == ["cannot open dataset 'bad': gone"]


def test_without_a_loader_only_the_path_is_kept():
    model = SessionModel(dataset_loader=None)
    model.set_dataset("/somewhere")
    snap = model.snapshot()
    assert snap.session.dataset_path == "/somewhere" and snap.roi_mask is None
