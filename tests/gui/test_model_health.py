"""The session model's status and log handlers and stage health (:mod:`gui.model_health`);
messages fed one by one with a settable clock, no sockets."""

from __future__ import annotations

from gui.model import SessionModel
from rt_base.names import OPTIONAL_STAGES, STAGE_NAMES
from rt_wire.message import Message
from tests.gui.synthetic import FakeClock, recon_status, write_tiny_dataset


def test_stage_health_from_status_recency_errors_and_final_status():
    clock = FakeClock()
    model = SessionModel(dataset_loader=None, clock=clock)
    assert model.health()["decode"].state == "waiting"
    for stage in ("source", "decode", "recorder"):
        model.feed(Message("status", meta={"stage": stage, "errors": 0, "final": False}))
    clock.now += 2.0
    model.feed(Message("status", meta={"stage": "decode", "errors": 1, "final": False}))
    model.feed(Message("status", meta={"stage": "recorder", "errors": 0, "final": True}))
    clock.now += 2.0
    health = model.health()
    assert health["source"].state == "stale" and "no status for 4 s" in health["source"].detail
    assert health["decode"].state == "error" and health["decode"].detail == "1 error(s)"
    assert health["recorder"].state == "stopped"
    assert health["estimate"].state == "waiting"
    clock.now += 20.0  # errors are shown for a while, then the stage is judged by recency
    model.feed(Message("status", meta={"stage": "decode", "errors": 1, "final": False}))
    assert model.health()["decode"].state == "ok"
    model.feed(Message("log", meta={"stage": "decode", "level": "error", "text": "boom"}))
    assert model.health()["decode"].state == "error"


def test_the_reconstruct_stage_backlog_shows_in_its_health():
    model = SessionModel(dataset_loader=None)
    model.feed(recon_status(backlog=3, behind_s=4.24))
    snap = model.snapshot()
    assert snap.recon_stage.behind == "3 trials behind (4.2 s)"
    assert snap.health["reconstruct"].detail == "3 trials behind (4.2 s)"
    model.feed(recon_status(backlog=1, behind_s=None, errors=2))
    snap = model.snapshot()
    assert snap.health["reconstruct"].detail == "2 error(s), 1 trial behind"
    model.feed(recon_status(backlog=0, errors=2))
    assert model.snapshot().recon_stage.behind == ""


def test_a_console_that_joins_late_learns_the_dataset_from_the_source_status(tmp_path):
    ds = write_tiny_dataset(tmp_path / "ds", n_volumes=12)
    model = SessionModel()
    model.feed(
        Message(
            "status",
            meta={"stage": "source", "dataset_path": str(ds.root), "paused": True, "speed": 2.0},
        )
    )
    snap = model.snapshot()
    assert snap.stimuli is not None and snap.session.paused is True and snap.session.speed == 2.0


def test_health_lists_the_pipeline_in_order_then_other_reporters():
    model = SessionModel(dataset_loader=None)
    assert list(model.health()) == [s for s in STAGE_NAMES if s not in OPTIONAL_STAGES]
    for stage in ("zeta", "alpha", "reconstruct"):
        model.feed(Message("status", meta={"stage": stage}))
    model.feed(Message("status", meta={"stage": 3}))  # not a stage name: ignored
    assert list(model.health()) == [*STAGE_NAMES, "alpha", "zeta"]


def test_stages_that_go_quiet_after_the_end_are_stopped_not_stale():
    clock = FakeClock()
    model = SessionModel(dataset_loader=None, clock=clock)
    model.feed(Message("status", meta={"stage": "decode", "errors": 0}))
    model.feed(Message("end", seq=5))
    clock.now += 5.0
    health = model.health()["decode"]
    assert health.state == "stopped" and health.age_s == 5.0


def test_an_error_log_of_an_unknown_stage_is_logged_only():
    clock = FakeClock()
    model = SessionModel(dataset_loader=None, clock=clock)
    model.feed(Message("log", meta={"stage": "estimate", "level": "error", "text": "bad TR"}))
    assert model.health()["estimate"].state == "waiting"  # no status from it yet
    entry = model.snapshot().log[-1]
    assert (entry.stage, entry.level, entry.text) == ("estimate", "error", "bad TR")


def test_the_source_status_carries_pause_and_speed():
    model = SessionModel(dataset_loader=None)
    model.feed(Message("status", meta={"stage": "source", "paused": False, "speed": 0}))
    s = model.snapshot().session
    assert (s.paused, s.speed) == (False, 0.0)
    model.feed(Message("status", meta={"stage": "source"}))  # keeps what it does not say
    s = model.snapshot().session
    assert (s.paused, s.speed) == (False, 0.0)


def test_the_recon_stage_record_reads_its_status_leniently():
    model = SessionModel(dataset_loader=None)
    model.feed(recon_status(backlog=-2, behind_s="x", mode=5, reconstructed=None))
    stage = model.snapshot().recon_stage
    assert (stage.backlog, stage.behind_s, stage.mode, stage.reconstructed) == (0, None, None, 0)


def test_bad_messages_a_stage_dropped_show_in_its_health_without_marking_it_failed():
    model = SessionModel(dataset_loader=None)
    model.feed(Message("status", meta={"stage": "estimate", "errors": 0, "bad": 2}))
    health = model.health()["estimate"]
    assert health.state == "ok" and health.detail == "2 bad message(s) dropped"
    model.feed(Message("status", meta={"stage": "estimate", "errors": 1, "bad": 3}))
    assert model.health()["estimate"].detail == "1 error(s), 3 bad message(s) dropped"
