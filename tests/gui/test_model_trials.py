"""The session model's trial handlers (:mod:`gui.model_trials`): trial, response, retrieval
and recon; messages fed one by one, no sockets."""

from __future__ import annotations

import numpy as np

from gui.model import SessionModel
from rt_wire.message import Message
from tests.gui.synthetic import fed_model, recon_message, synthetic_stream


def test_reconstruction_is_kept_when_one_arrives():
    model = fed_model(n_volumes=10)
    assert model.snapshot().recon is None
    image = np.zeros((8, 8, 3), np.uint8)
    model.feed(Message("recon", run="run-01", index=1, buffers={"image": image}))
    rec = model.snapshot().recon
    assert rec.trial == 1 and rec.image.shape == (8, 8, 3)
    model.feed(
        Message("recon", run="run-01", index=2, buffers={"image": np.zeros((8, 8), np.float32)})
    )
    assert model.snapshot().recon.trial == 1


def test_malformed_reconstructions_are_dropped_or_trimmed_with_a_warning():
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(n_volumes=12)[:-2])
    model.feed(
        Message("recon", run="run-01", index=1, buffers={"image": np.zeros((8, 8), np.float32)})
    )
    assert model.snapshot().recon is None
    assert (
        "needs buffer 'image' (H, W, 3) uint8, got float32 (8, 8)" in model.snapshot().log[-1].text
    )
    msg = recon_message(1, mode="full")
    msg.buffers["blurry"] = np.zeros((4, 4, 4), np.uint8)
    model.feed(msg)
    snap = model.snapshot()
    assert snap.recon.trial == 1 and snap.recon.blurry is None
    assert "'blurry' image of trial 1" in snap.log[-1].text and snap.log[-1].level == "warning"


def test_a_late_reconstruction_does_not_bring_back_a_trial_of_an_earlier_run():
    model = SessionModel(dataset_loader=None)
    model.feed_many(synthetic_stream(n_volumes=12, run="run-01")[:-2])
    model.feed_many(synthetic_stream(n_volumes=12, run="run-02", seq0=100)[:-2])
    model.feed(synthetic_stream(n_volumes=12, run="run-03", seq0=200)[0])
    model.feed(recon_message(0, run="run-01"))  # run-01's trials were dropped at run-03's start
    assert model.snapshot().recon.run == "run-01"
    assert ("run-01", 0) not in model._trials


def _retrieval(index: int, rank: int | None, ids=(4, 5), run: str = "run-01", **meta) -> Message:
    return Message(
        "retrieval",
        run=run,
        index=index,
        meta={"image_id": 4, "rank": rank, "ways": 8, **meta},
        buffers={"ids": np.array(ids), "scores": np.linspace(0.9, 0.1, len(ids), dtype=np.float32)},
    )


def _started(tr: float = 2.0) -> SessionModel:
    model = SessionModel(dataset_loader=None)
    model.feed(Message("run_start", seq=1, run="run-01", meta={"tr": tr}))
    return model


def test_a_trial_event_is_recorded_once():
    model = _started()
    event = Message("trial", run="run-01", index=0, meta={"onset": 4, "duration": 2, "image_id": 7})
    model.feed(event)
    version = model.snapshot().versions["trials"]
    model.feed(Message("trial", run="run-01", index=0, meta={"onset": 99}))  # republished
    snap = model.snapshot()
    assert snap.versions["trials"] == version
    assert [(t.index, t.onset, t.duration, t.image_id) for t in snap.trials] == [(0, 4, 2, 7)]


def test_a_response_sets_the_decode_time_from_the_tr():
    model = _started(tr=2.0)
    model.feed(Message("response", run="run-01", index=1,
                       meta={"onset": 3, "decode_index": 5, "truncated": True}))  # fmt: skip
    (trial,) = model.snapshot().trials
    assert (trial.index, trial.onset, trial.decode_time, trial.truncated) == (1, 3, 10.0, True)
    assert not trial.decoded


def test_retrievals_score_the_running_accuracy_and_mark_their_trials():
    model = _started()
    model.feed(_retrieval(0, rank=1, decode_index=3))  # joined late: no trial event seen
    model.feed(_retrieval(1, rank=2, ids=(5, 4, 6)))
    model.feed(_retrieval(2, rank=None, ids=()))  # not in the bank: decoded, not scored
    snap = model.snapshot()
    a = snap.accuracy
    assert (a.decoded, a.scored, a.top1, a.topk, a.k, a.ways, a.rank_sum) == (3, 2, 1, 2, 3, 8, 3)
    assert snap.accuracy_history.tolist() == [1.0, 0.5]
    assert [(t.decoded, t.rank, t.top1, t.correct) for t in snap.trials] == [
        (True, 1, 4, True), (True, 2, 5, False), (True, None, None, None)
    ]  # fmt: skip
    assert snap.trials[0].decode_time == 6.0
    r = snap.retrieval
    assert (r.trial, r.rank, r.true_id, r.ids.size) == (2, None, 4, 0)


def test_the_timeline_keeps_the_newest_trials_only():
    model = SessionModel(dataset_loader=None, trial_len=3)
    model.feed(Message("run_start", seq=1, run="run-01"))
    for i in range(5):
        model.feed(Message("trial", run="run-01", index=i, meta={"onset": i}))
    assert [t.index for t in model.snapshot().trials] == [2, 3, 4]


def test_a_reconstruction_copies_its_images_and_marks_its_trial():
    model = fed_model(n_volumes=12)
    msg = recon_message(1, mode="full", generator=3, compute_ms="fast")
    msg.buffers["blurry"] = np.full((4, 4, 3), 9, np.uint8)
    model.feed(msg)
    snap = model.snapshot()
    rec = snap.recon
    assert rec.image is not msg.buffers["image"] and rec.blurry.max() == 9
    assert (rec.mode, rec.generator, rec.compute_ms) == ("full", None, None)
    assert [t.reconstructed for t in snap.trials] == [False, True, False]
