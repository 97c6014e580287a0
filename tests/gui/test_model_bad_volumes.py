"""The console's reading of bad volumes: counted per run from the ``tr`` messages the
preprocess stage flagged, the newest kept as a warning, shown on the head-motion panel."""

from __future__ import annotations

from gui.model import SessionModel
from gui.motion_panel import MotionPanel
from tests.gui.synthetic import over_the_wire, synthetic_stream


def _stream(bad: dict[int, object], run: str = "run-01", **options):
    msgs = synthetic_stream(n_volumes=20, run=run, **options)
    for m in msgs:
        if m.kind == "tr" and m.index in bad:
            m.meta["bad_volume"] = bad[m.index]
    return msgs


def _model(*streams) -> SessionModel:
    model = SessionModel(dataset_loader=None)
    for stream in streams:
        model.feed_many(over_the_wire(stream))
    return model


def test_bad_volumes_are_counted_per_run_and_the_newest_is_the_warning():
    flags = {
        4: {"reasons": ["nonfinite"], "details": {"nonfinite": 3}},
        9: {"reasons": ["spike"], "details": {}},
    }
    bad = _model(_stream(flags)).snapshot().bad_volumes
    assert bad.per_run == {"run-01": 2} and bad.total == 2
    assert bad.last == ("run-01", 9, ["spike"])
    assert bad.warning == "2 bad volume(s) censored; last run-01 TR 10 (spike)"


def test_a_clean_session_has_no_warning_and_malformed_flags_count_without_reasons():
    clean = _model(_stream({})).snapshot().bad_volumes
    assert clean.per_run == {} and clean.last is None and clean.warning is None
    odd = _model(_stream({3: {"reasons": "spike"}, 5: "yes"})).snapshot().bad_volumes
    assert odd.per_run == {"run-01": 1}  # a non-dict flag is not one
    assert odd.warning.endswith("(reason not given)")


def test_a_new_session_forgets_the_bad_volumes():
    first = _stream({2: {"reasons": ["dropout"]}})
    second = _stream({}, seq0=0)
    assert _model(first, second).snapshot().bad_volumes.per_run == {}


def test_the_motion_panel_shows_the_warning(qtbot):
    model = _model(_stream({6: {"reasons": ["dropped_slice"]}}))
    panel = MotionPanel()
    qtbot.addWidget(panel)
    panel.update_from(model.snapshot())
    assert "1 bad volume(s) censored; last run-01 TR 7 (dropped_slice)" in panel.counts.text()
