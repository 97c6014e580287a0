"""The console's smaller panels (:mod:`gui.panels`): the health strip's chips."""

from __future__ import annotations

from gui.model import SessionModel
from gui.panels import HealthStrip
from rt_base.names import OPTIONAL_STAGES, STAGE_NAMES
from rt_wire.message import Message


def test_the_health_strip_has_a_chip_per_stage_an_optional_one_only_while_it_reports(qtbot):
    strip = HealthStrip()
    qtbot.addWidget(strip)
    assert list(strip.chips) == list(STAGE_NAMES)
    model = SessionModel(dataset_loader=None)
    strip.update_from(model.snapshot())
    assert set(strip.states) == set(STAGE_NAMES) - OPTIONAL_STAGES
    assert set(strip.states.values()) == {"waiting"}
    model.feed(Message("status", meta={"stage": "reconstruct", "errors": 1}))
    strip.update_from(model.snapshot())
    assert (
        strip.states["reconstruct"] == "ok" and "1 error(s)" in strip.chips["reconstruct"].toolTip()
    )
